"""Chat answers built from search hits, with citations."""
