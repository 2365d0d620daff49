"""HTTP API of the RAG platform: app factory, routes, middleware and settings."""
