"""Row-level security and tenant transactions, against the real PostgreSQL as the application role."""

import asyncio
import random
import uuid

import asyncpg
import pytest
from databases import Database

from db import documents as document_queries
from db.tenancy import TenantMismatch, tenant_transaction
from server.database import init_connection

TENANT_TABLES = ("tenants", "users", "documents", "document_contents", "chunks", "chat_sessions", "chat_messages",
                 "usage_events")


class FailedMidway(Exception):
    """Raised by a test request between two of its queries."""


async def _seed_tenants(admin_url: str, documents_each: int) -> list[uuid.UUID]:
    """Give two tenants `documents_each` documents (with bytes), a user and a chat message each."""
    connection = await asyncpg.connect(admin_url)
    tenants = [uuid.uuid4(), uuid.uuid4()]
    try:
        for tenant in tenants:
            await connection.execute("INSERT INTO tenants (id, name) VALUES ($1, 'seeded')", tenant)
            user = await connection.fetchval(
                "INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, 'x', 'admin') RETURNING id",
                tenant, f"{tenant}@example.com")
            session = await connection.fetchval(
                "INSERT INTO chat_sessions (tenant_id, user_id, session_key) VALUES ($1, $2, 's') RETURNING id",
                tenant, user)
            await connection.execute(
                "INSERT INTO chat_messages (tenant_id, session_id, role, content) VALUES ($1, $2, 'user', 'hi')",
                tenant, session)
            await connection.execute("INSERT INTO usage_events (tenant_id, kind) VALUES ($1, 'search')", tenant)
            for n in range(documents_each):
                document = await connection.fetchval(
                    "INSERT INTO documents (tenant_id, title, content_type, bytes, content_sha256)"
                    " VALUES ($1, $2, 'text/plain', 1, $3) RETURNING id", tenant, f"doc {n}", uuid.uuid4().hex)
                await connection.execute(
                    "INSERT INTO document_contents (document_id, tenant_id, data) VALUES ($1, $2, 'x')", document, tenant)
                await connection.execute(
                    "INSERT INTO chunks (tenant_id, document_id, ordinal, content, token_count, embedding)"
                    " VALUES ($1, $2, 0, 'text', 1, array_fill(0.1, ARRAY[384])::vector)", tenant, document)
    finally:
        await connection.close()
    return tenants


def test_app_role_without_tenant_sees_no_rows(service_urls):
    async def run():
        await _seed_tenants(service_urls["database_url"], documents_each=2)
        connection = await asyncpg.connect(service_urls["app_database_url"])
        try:
            return {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in TENANT_TABLES}
        finally:
            await connection.close()

    counts = asyncio.run(run())
    assert counts == {table: 0 for table in TENANT_TABLES}


def test_app_role_without_tenant_cannot_insert(service_urls):
    async def run():
        tenant, _ = await _seed_tenants(service_urls["database_url"], documents_each=0)
        connection = await asyncpg.connect(service_urls["app_database_url"])
        try:
            await connection.execute(
                "INSERT INTO documents (tenant_id, title, content_type, bytes, content_sha256)"
                " VALUES ($1, 't', 'text/plain', 1, 'abc')", tenant)
        finally:
            await connection.close()

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(run())


def test_app_role_cannot_write_another_tenants_rows(service_urls):
    async def run():
        mine, theirs = await _seed_tenants(service_urls["database_url"], documents_each=1)
        connection = await asyncpg.connect(service_urls["app_database_url"])
        try:
            async with connection.transaction():
                await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(mine))
                # No tenant filter here: only the policy stands between this and the other tenant.
                status = await connection.execute("UPDATE documents SET title = 'taken' WHERE tenant_id = $1", theirs)
        finally:
            await connection.close()
        return status

    assert asyncio.run(run()) == "UPDATE 0"


def test_app_role_escapes_no_policy(service_urls):
    """The application role is no superuser, has no BYPASSRLS and owns no table."""
    from db.roles import describe_app_role

    async def run():
        connection = await asyncpg.connect(service_urls["app_database_url"])
        try:
            return await describe_app_role(connection)
        finally:
            await connection.close()

    assert asyncio.run(run()) == []


def test_one_connection_pool_interleaved_tenants(service_urls):
    """Two tenants' requests share one pooled connection, some failing midway; each sees only its rows."""
    request_count = 60

    async def request(db: Database, tenant: uuid.UUID, number: int, seen: list, listed: list) -> None:
        async with tenant_transaction(db, tenant):
            # No tenant filter: the rows come back only through the row-level security policy.
            rows = await db.fetch_all("SELECT tenant_id FROM documents")
            seen.append((tenant, [row._mapping["tenant_id"] for row in rows]))
            await asyncio.sleep(random.random() / 100)
            if number % 3 == 0:
                raise FailedMidway(number)
            if number % 3 == 1:
                await db.execute("SELECT 1 / 0")  # an SQL error aborts the transaction midway
            rows = await document_queries.list_documents(db, tenant_id=tenant, limit=50, status=None, after=None)
            listed.append((tenant, {row["id"] for row in rows}))

    async def run():
        tenants = await _seed_tenants(service_urls["database_url"], documents_each=5)
        db = Database(service_urls["app_database_url"], min_size=1, max_size=1, init=init_connection)
        await db.connect()
        seen: list = []
        listed: list = []
        try:
            outcomes = await asyncio.gather(
                *(request(db, tenants[number % 2], number, seen, listed) for number in range(request_count)),
                return_exceptions=True)
            leftover = await db.fetch_val("SELECT count(*) FROM documents")
            setting = await db.fetch_val("SELECT current_setting('app.tenant_id', true)")
        finally:
            await db.disconnect()
        owned = await _document_ids_by_tenant(service_urls["database_url"], tenants)
        return seen, listed, owned, outcomes, leftover, setting

    seen, listed, owned, outcomes, leftover, setting = asyncio.run(run())
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 2 * request_count // 3
    assert all(isinstance(failure, (FailedMidway, asyncpg.DivisionByZeroError)) for failure in failures)
    assert len(seen) == request_count
    for caller, row_tenants in seen:
        assert row_tenants == [caller] * 5
    assert len(listed) == request_count // 3
    for caller, ids in listed:
        assert ids == owned[caller]
    assert leftover == 0
    assert setting in (None, "")


async def _document_ids_by_tenant(admin_url: str, tenants: list[uuid.UUID]) -> dict:
    connection = await asyncpg.connect(admin_url)
    try:
        return {tenant: {row["id"] for row in await connection.fetch("SELECT id FROM documents WHERE tenant_id = $1",
                                                                     tenant)}
                for tenant in tenants}
    finally:
        await connection.close()


def test_one_connection_pool_list_queries_filter_by_tenant(service_urls):
    """The query functions return the caller's rows with their own tenant filter, RLS aside."""

    async def run():
        tenants = await _seed_tenants(service_urls["database_url"], documents_each=3)
        db = Database(service_urls["app_database_url"], min_size=1, max_size=1, init=init_connection)
        await db.connect()
        try:
            results = await asyncio.gather(*(
                document_queries.list_documents(db, tenant_id=tenants[n % 2], limit=10, status=None, after=None)
                for n in range(20)))
        finally:
            await db.disconnect()
        return tenants, results

    tenants, results = asyncio.run(run())
    owned = asyncio.run(_document_ids_by_tenant(service_urls["database_url"], tenants))
    for n, rows in enumerate(results):
        assert {row["id"] for row in rows} == owned[tenants[n % 2]]


def test_query_for_other_tenant_inside_transaction_raises(service_urls):
    async def run():
        mine, theirs = await _seed_tenants(service_urls["database_url"], documents_each=1)
        db = Database(service_urls["app_database_url"], min_size=1, max_size=1, init=init_connection)
        await db.connect()
        try:
            async with tenant_transaction(db, mine):
                await document_queries.list_documents(db, tenant_id=theirs, limit=5, status=None, after=None)
        finally:
            await db.disconnect()

    with pytest.raises(TenantMismatch):
        asyncio.run(run())


def test_login_lookup_finds_one_user_without_tenant(service_urls):
    """The SECURITY DEFINER lookup returns the user of that email, while the table shows nothing."""

    async def run():
        tenant, _ = await _seed_tenants(service_urls["database_url"], documents_each=0)
        connection = await asyncpg.connect(service_urls["app_database_url"])
        try:
            found = await connection.fetch("SELECT tenant_id, email FROM app_find_login($1)",
                                           f"{str(tenant).upper()}@EXAMPLE.COM")
            visible = await connection.fetchval("SELECT count(*) FROM users")
        finally:
            await connection.close()
        return tenant, found, visible

    tenant, found, visible = asyncio.run(run())
    assert [(row["tenant_id"], row["email"]) for row in found] == [(tenant, f"{tenant}@example.com")]
    assert visible == 0
