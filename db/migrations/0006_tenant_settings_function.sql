-- The rate limiter loads every tenant's limits when a web worker starts, before any tenant is
-- known, so row-level security would hide them all. This function returns only the id and the
-- settings object, which hold nothing but limits.
CREATE FUNCTION app_recent_tenant_settings(max_tenants integer)
    RETURNS TABLE (id uuid, settings jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT t.id, t.settings FROM public.tenants t ORDER BY t.created_at DESC LIMIT max_tenants
    $$;
REVOKE ALL ON FUNCTION app_recent_tenant_settings(integer) FROM PUBLIC;
