-- Lets the maintenance sweep find documents not yet ingested without scanning every document.
CREATE INDEX documents_unfinished_idx ON documents (updated_at) WHERE status IN ('queued', 'processing');

-- The sweep looks across tenants, which row-level security forbids the application role. This
-- function returns only the ids, status and job id of documents left unfinished for a while.
CREATE FUNCTION app_unfinished_documents(idle_seconds double precision, max_documents integer)
    RETURNS TABLE (id uuid, tenant_id uuid, status text, job_id text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT d.id, d.tenant_id, d.status, d.job_id FROM public.documents d
        WHERE d.status IN ('queued', 'processing') AND d.updated_at < now() - make_interval(secs => idle_seconds)
        ORDER BY d.updated_at LIMIT max_documents
    $$;
REVOKE ALL ON FUNCTION app_unfinished_documents(double precision, integer) FROM PUBLIC;
