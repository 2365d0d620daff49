"""Demo that ingests the Python standard library documentation through the HTTP API."""
