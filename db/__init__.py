"""Database schema, migrations and the embedded data services used when no URL is configured."""
