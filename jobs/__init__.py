"""Background jobs run by the RQ workers: ingestion and maintenance."""
