-- Read-only views of the current tenant's chunks and documents, for full-text search.
--
-- Under row-level security PostgreSQL evaluates the policy before any condition whose function is
-- not LEAKPROOF, and the full-text match (tsvector @@ tsquery) is not. So when a search reads the
-- tables, the match cannot use the (tenant_id, tsv) GIN index and is checked row by row on every
-- chunk of the tenant. These views run as their owner, which the policies exempt, and apply the
-- policies' own condition themselves, so the match becomes an index condition again.
-- They are not security barriers: that is safe because the application's SQL is fixed and
-- never calls user-defined functions, and the application role may only SELECT from them.
CREATE VIEW tenant_chunks AS
    SELECT * FROM chunks WHERE tenant_id = app_current_tenant();

CREATE VIEW tenant_documents AS
    SELECT * FROM documents WHERE tenant_id = app_current_tenant();
