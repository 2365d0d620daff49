-- Usage counts per tenant and day: documents and chunks created, searches and chats answered.
-- GET /usage reads them from a materialized view that a maintenance job refreshes.

CREATE TABLE usage_events (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('search', 'chat')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_events_tenant_created_idx ON usage_events (tenant_id, created_at);
ALTER TABLE usage_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_events
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

-- Days are UTC dates. The view is built by its owner, which row-level security exempts, so it
-- holds every tenant's rows; the application reads it only through tenant_usage_daily below.
CREATE MATERIALIZED VIEW usage_daily AS
    SELECT tenant_id, day,
           sum(documents)::bigint AS documents, sum(chunks)::bigint AS chunks,
           sum(searches)::bigint AS searches, sum(chats)::bigint AS chats
    FROM (
        SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date AS day,
               count(*) AS documents, 0 AS chunks, 0 AS searches, 0 AS chats
        FROM documents GROUP BY 1, 2
        UNION ALL
        SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, 0, count(*), 0, 0
        FROM chunks GROUP BY 1, 2
        UNION ALL
        SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, 0, 0,
               count(*) FILTER (WHERE kind = 'search'), count(*) FILTER (WHERE kind = 'chat')
        FROM usage_events GROUP BY 1, 2
    ) activity
    GROUP BY tenant_id, day;
-- REFRESH ... CONCURRENTLY needs a unique index; it also serves the per-tenant reads.
CREATE UNIQUE INDEX usage_daily_tenant_day_key ON usage_daily (tenant_id, day);

-- Materialized views cannot have policies, so the application gets this view instead, which
-- shows only the rows of the transaction's tenant.
CREATE VIEW tenant_usage_daily WITH (security_barrier) AS
    SELECT tenant_id, day, documents, chunks, searches, chats
    FROM usage_daily WHERE tenant_id = app_current_tenant();

-- Only the owner of a materialized view may refresh it (before PostgreSQL 17's MAINTAIN
-- privilege), so the application refreshes it through this function, which runs as the owner.
CREATE FUNCTION app_refresh_usage() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$ BEGIN REFRESH MATERIALIZED VIEW CONCURRENTLY public.usage_daily; END $$;
REVOKE ALL ON FUNCTION app_refresh_usage() FROM PUBLIC;
