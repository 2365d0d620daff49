"""The pool under pressure: acquisition timeouts, killed connections and the connection budget."""

import asyncio
import subprocess
import sys
import threading
import uuid

import asyncpg
import httpx
import pytest
from databases import Database

from db import documents as document_queries
from db import embedded
from db.migrate import apply_migrations
from db.roles import ensure_app_role, role_of
from db.tenancy import DatabaseUnavailable, tenant_read, tenant_transaction, tenant_write
from server.database import check_connection_budget, init_connection
from server.settings import Settings
from tests.conftest import ROOT, running_server

# Bounds the tests' own waiting, so a hang fails the test instead of stalling the run.
TEST_GUARD_SECONDS = 30


async def _seed_tenant(admin_url: str, documents: int = 3) -> uuid.UUID:
    tenant = uuid.uuid4()
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute("INSERT INTO tenants (id, name) VALUES ($1, 'pool test')", tenant)
        for n in range(documents):
            await connection.execute(
                "INSERT INTO documents (tenant_id, title, content_type, bytes, content_sha256)"
                " VALUES ($1, $2, 'text/plain', 1, $3)", tenant, f"doc {n}", uuid.uuid4().hex)
    finally:
        await connection.close()
    return tenant


async def _app_pool(service_urls: dict, size: int, pool_timeout: float = 5.0) -> Database:
    db = Database(service_urls["app_database_url"], min_size=1, max_size=size, init=init_connection)
    db.pool_timeout = pool_timeout
    await db.connect()
    return db


async def _terminate_app_backends(admin_url: str, app_role: str, only_active: bool = False) -> int:
    connection = await asyncpg.connect(admin_url)
    try:
        return await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = $1 AND pid <> pg_backend_pid() AND ($2 = false OR state = 'active')",
            app_role, only_active)
    finally:
        await connection.close()


def test_pool_timeout_raises_database_unavailable(service_urls):
    async def run():
        tenant = await _seed_tenant(service_urls["database_url"])
        db = await _app_pool(service_urls, size=1, pool_timeout=0.3)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_only_connection():
            async with tenant_transaction(db, tenant):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_only_connection())
        await holding.wait()
        try:
            await asyncio.wait_for(
                document_queries.list_documents(db, tenant_id=tenant, limit=5, status=None, after=None),
                TEST_GUARD_SECONDS)
        finally:
            release.set()
            await holder
            await db.disconnect()

    with pytest.raises(DatabaseUnavailable):
        asyncio.run(run())


def test_pool_serves_again_after_timeout(service_urls):
    """A timed-out wait leaves the pool whole: the next request gets the connection back."""

    async def run():
        tenant = await _seed_tenant(service_urls["database_url"])
        db = await _app_pool(service_urls, size=1, pool_timeout=0.3)
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold():
            async with tenant_transaction(db, tenant):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(DatabaseUnavailable):
            await document_queries.list_documents(db, tenant_id=tenant, limit=5, status=None, after=None)
        release.set()
        await holder
        try:
            return await asyncio.wait_for(
                document_queries.list_documents(db, tenant_id=tenant, limit=5, status=None, after=None),
                TEST_GUARD_SECONDS)
        finally:
            await db.disconnect()

    assert len(asyncio.run(run())) == 3


@pytest.fixture
def tiny_pool_server(server_env):
    # The cache is off, so that /users/me needs the pool and cannot be served from Redis.
    with running_server(server_env, "web-tiny-pool", BACKEND_WORKERS="1", DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0",
                        DB_POOL_TIMEOUT="0.5", CACHE_ENABLED="false") as base_url:
        yield base_url


def test_busy_pool_answers_503_with_retry_after(tiny_pool_server, service_urls):
    """The only connection waits on a table lock; the next request gets 503 instead of hanging."""
    http = httpx.Client(base_url=tiny_pool_server, timeout=TEST_GUARD_SECONDS)
    email = f"pool-{uuid.uuid4().hex[:8]}@example.com"
    token = http.post("/auth/register", json={"tenant": "Pool", "email": email, "password": "long-password"}
                      ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/users/me", headers=headers).status_code == 200

    blocked: dict = {}

    async def lock_documents(locked: threading.Event, unlock: threading.Event) -> None:
        connection = await asyncpg.connect(service_urls["database_url"])
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE")
                locked.set()
                while not unlock.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await connection.close()

    locked, unlock = threading.Event(), threading.Event()
    locker = threading.Thread(target=lambda: asyncio.run(lock_documents(locked, unlock)))
    locker.start()
    try:
        assert locked.wait(TEST_GUARD_SECONDS)

        def list_documents():
            blocked["response"] = httpx.get(f"{tiny_pool_server}/documents", headers=headers,
                                            timeout=TEST_GUARD_SECONDS)

        waiting = threading.Thread(target=list_documents)
        waiting.start()
        # The listing holds the pool's only connection while it waits for the lock.
        _wait_for_lock_waiter(service_urls)
        response = http.get("/users/me", headers=headers)
    finally:
        unlock.set()
        locker.join(TEST_GUARD_SECONDS)
    waiting.join(TEST_GUARD_SECONDS)
    http.close()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert blocked["response"].status_code == 200


def _wait_for_lock_waiter(service_urls: dict) -> None:
    async def poll():
        connection = await asyncpg.connect(service_urls["database_url"])
        try:
            for _ in range(TEST_GUARD_SECONDS * 20):
                waiting = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
                    role_of(service_urls["app_database_url"]))
                if waiting:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("no request of the server waited for the lock")
        finally:
            await connection.close()

    asyncio.run(poll())


@tenant_read
async def _slow_count(db: Database, *, tenant_id: uuid.UUID, attempts: list) -> int:
    attempts.append(1)
    if len(attempts) == 1:
        await db.execute("SELECT pg_sleep(5)")
    return await db.fetch_val("SELECT count(*) FROM documents WHERE tenant_id = :tenant_id", {"tenant_id": tenant_id})


@tenant_write
async def _slow_write(db: Database, *, tenant_id: uuid.UUID) -> None:
    await db.execute("SELECT pg_sleep(5)")
    await db.execute("UPDATE documents SET title = 'written' WHERE tenant_id = :tenant_id", {"tenant_id": tenant_id})


async def _kill_while_running(service_urls: dict, work) -> tuple:
    """Run `work` and terminate the application's active backends while it runs; return its outcome."""
    task = asyncio.create_task(work)
    app_role = role_of(service_urls["app_database_url"])
    killed = 0
    for _ in range(TEST_GUARD_SECONDS * 10):
        await asyncio.sleep(0.1)
        killed = await _terminate_app_backends(service_urls["database_url"], app_role, only_active=True)
        if killed:
            break
    outcome = await asyncio.gather(task, return_exceptions=True)
    return killed, outcome[0]


def test_read_killed_midway_is_retried_once(service_urls):
    async def run():
        tenant = await _seed_tenant(service_urls["database_url"], documents=4)
        db = await _app_pool(service_urls, size=2)
        attempts: list = []
        try:
            killed, outcome = await _kill_while_running(service_urls, _slow_count(db, tenant_id=tenant,
                                                                                    attempts=attempts))
        finally:
            await db.disconnect()
        return killed, outcome, attempts

    killed, outcome, attempts = asyncio.run(run())
    assert killed == 1
    assert outcome == 4
    assert len(attempts) == 2


def test_write_killed_midway_is_not_retried(service_urls):
    async def run():
        tenant = await _seed_tenant(service_urls["database_url"])
        db = await _app_pool(service_urls, size=2)
        try:
            return await _kill_while_running(service_urls, _slow_write(db, tenant_id=tenant))
        finally:
            await db.disconnect()

    killed, outcome = asyncio.run(run())
    assert killed == 1
    assert isinstance(outcome, DatabaseUnavailable)


def test_pool_recovers_after_backends_are_terminated_under_load(service_urls):
    """Readers keep reading while every application backend is killed twice; none of them sees an error."""
    readers, reads_each = 8, 40

    async def run():
        tenant = await _seed_tenant(service_urls["database_url"], documents=5)
        db = await _app_pool(service_urls, size=4)
        app_role = role_of(service_urls["app_database_url"])

        async def reader() -> list:
            counts = []
            for _ in range(reads_each):
                rows = await document_queries.list_documents(db, tenant_id=tenant, limit=10, status=None, after=None)
                counts.append(len(rows))
                await asyncio.sleep(0.01)
            return counts

        tasks = [asyncio.create_task(reader()) for _ in range(readers)]
        killed = []
        for _ in range(2):
            await asyncio.sleep(0.2)
            killed.append(await _terminate_app_backends(service_urls["database_url"], app_role))
        try:
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TEST_GUARD_SECONDS)
            after = await document_queries.list_documents(db, tenant_id=tenant, limit=10, status=None, after=None)
        finally:
            await db.disconnect()
        return killed, results, after

    killed, results, after = asyncio.run(run())
    assert all(count > 0 for count in killed)
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    assert all(counts == [5] * reads_each for counts in results)
    assert len(after) == 5


def _budget_settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_connection_budget_rejects_oversized_pools(service_urls):
    settings = _budget_settings(db_pool_size=50, db_max_overflow=10, db_reserved_connections=10)
    with pytest.raises(SystemExit) as raised:
        asyncio.run(check_connection_budget(service_urls["app_database_url"], settings, processes=4))
    message = str(raised.value)
    assert "4 workers x (DB_POOL_SIZE 50 + DB_MAX_OVERFLOW 10) + 10 reserved = 250 connections" in message
    assert "max_connections 200" in message


def test_connection_budget_accepts_pools_that_fit(service_urls):
    settings = _budget_settings(db_pool_size=10, db_max_overflow=5, db_reserved_connections=10)
    assert asyncio.run(check_connection_budget(service_urls["app_database_url"], settings, processes=4)) is None


def test_server_start_refuses_oversized_pools(server_env):
    env = {**server_env, "BACKEND_WORKERS": "16", "DB_POOL_SIZE": "20", "DB_MAX_OVERFLOW": "0",
           "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": "9"}
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "16 workers x (DB_POOL_SIZE 20 + DB_MAX_OVERFLOW 0) + 10 reserved = 330 connections" in result.stderr


RESTART_DATA_DIR = ROOT / "var" / "test-restart"


def _restart_postgres(data_dir) -> None:
    """Restart the embedded server with its previous options (pg_ctl keeps them in postmaster.opts)."""
    pgdata = data_dir.resolve() / "postgres"
    # The server outlives pg_ctl, so it gets no pipe to hold open, and is not waited for here.
    subprocess.run([str(embedded._postgres_binaries() / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"),
                    "-m", "fast", "-W", "restart"],
                   user=embedded._postgres_run_as(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True, timeout=TEST_GUARD_SECONDS, check=True)


def test_pool_recovers_after_postgres_restart():
    """Reads during a restart fail with DatabaseUnavailable, never hang, and succeed once it is back."""
    admin_url = embedded.ensure_postgres(RESTART_DATA_DIR)
    try:
        app_url = asyncio.run(ensure_app_role(admin_url, RESTART_DATA_DIR / "postgres_app.password"))
        asyncio.run(apply_migrations(admin_url, role_of(app_url)))
        urls = {"database_url": admin_url, "app_database_url": app_url}

        async def run():
            tenant = await _seed_tenant(admin_url, documents=2)
            db = await _app_pool(urls, size=2, pool_timeout=2)
            outcomes: list = []
            restarted_at = None

            async def read() -> None:
                try:
                    rows = await document_queries.list_documents(db, tenant_id=tenant, limit=10, status=None,
                                                                 after=None)
                    outcomes.append(len(rows))
                except DatabaseUnavailable as error:
                    outcomes.append(error)

            try:
                for number in range(TEST_GUARD_SECONDS * 10):
                    if number == 5:
                        await asyncio.to_thread(_restart_postgres, RESTART_DATA_DIR)
                        restarted_at = len(outcomes)
                    await asyncio.wait_for(read(), TEST_GUARD_SECONDS)
                    if restarted_at is not None and outcomes[-5:] == [2] * 5 and len(outcomes) > restarted_at + 5:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await db.disconnect()
            return outcomes, restarted_at

        outcomes, restarted_at = asyncio.run(run())
    finally:
        embedded.stop_postgres(RESTART_DATA_DIR)

    assert outcomes[:restarted_at] == [2] * restarted_at
    assert outcomes[-5:] == [2] * 5
    assert all(outcome == 2 or isinstance(outcome, DatabaseUnavailable) for outcome in outcomes)
