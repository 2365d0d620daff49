-- Row-level security on every tenant table, as a second line behind the tenant filters that
-- every query writes itself.
--
-- The application role sets the tenant per transaction with
-- set_config('app.tenant_id', <uuid>, true). Without that setting app_current_tenant() is NULL,
-- so the policies match no row: a query sees nothing and can write nothing. Table owners and
-- roles with BYPASSRLS are exempt, which is why the application must connect as another role.

CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant()) WITH CHECK (id = app_current_tenant());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON documents
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE document_contents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON document_contents
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chunks
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE chat_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chat_sessions
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chat_messages
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

-- Login looks a user up by email before any tenant is known. This function runs as its owner,
-- which row-level security exempts, and returns at most the one user with that email (emails are
-- unique platform-wide). EXECUTE is granted to the application role by db/migrate.py.
CREATE FUNCTION app_find_login(login_email text)
    RETURNS TABLE (id uuid, tenant_id uuid, email text, role text, password_hash text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT u.id, u.tenant_id, u.email, u.role, u.password_hash
        FROM public.users u WHERE lower(u.email) = lower(login_email)
    $$;
REVOKE ALL ON FUNCTION app_find_login(text) FROM PUBLIC;
