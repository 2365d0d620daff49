"""Fixtures: real PostgreSQL and Redis, a live multi-worker server and a real RQ worker.

The embedded servers run under var/test, apart from the development data in var/. Each test
starts from empty tables and an empty cache, so no test sees another's rows.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis

from db import embedded
from db.migrate import apply_migrations
from db.roles import ensure_app_role, role_of

# tox runs the suite with ENVIRONMENT=test, where the placeholder JWT secret is refused, so the
# Settings that tests build in this process need a real one.
os.environ.setdefault("JWT_SECRET", "test-process-" + uuid.uuid4().hex)

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = ROOT / "var" / "test"
LOG_DIR = TEST_DATA_DIR / "logs"
STARTUP_TIMEOUT_SECONDS = 180
TEST_MAX_UPLOAD_BYTES = 2 * 1024 * 1024
# Redis keys that belong to tests' data; RQ's worker registrations are kept.
VOLATILE_KEY_PATTERNS = ("cache:*", "document:*", "rq:job:*", "rq:queue:*", "rq:results:*", "rq:wip:*",
                         "rq:finished:*", "rq:failed:*", "rq:scheduled:*", "rq:deferred:*", "rq:canceled:*",
                         "ratelimit:*", "ingestion:*", "maintenance:*")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def service_urls() -> dict:
    """URLs of the test PostgreSQL and Redis; embedded ones are stopped when the session ends.

    `database_url` is the owner's, for fixtures that seed or inspect any tenant's rows;
    `app_database_url` is the application role's, which row-level security applies to.
    """
    database_url = os.environ.get("TEST_DATABASE_URL") or embedded.ensure_postgres(TEST_DATA_DIR)
    redis_url = os.environ.get("TEST_REDIS_URL") or embedded.ensure_redis(TEST_DATA_DIR)
    app_database_url = asyncio.run(ensure_app_role(database_url, TEST_DATA_DIR / "postgres_app.password"))
    asyncio.run(apply_migrations(database_url, role_of(app_database_url)))
    yield {"database_url": database_url, "app_database_url": app_database_url, "redis_url": redis_url}
    try:
        if not os.environ.get("TEST_DATABASE_URL"):
            embedded.stop_postgres(TEST_DATA_DIR)
        if not os.environ.get("TEST_REDIS_URL"):
            embedded.stop_redis(TEST_DATA_DIR)
    except OSError as error:
        # The servers stay up until the machine stops; the next session reuses them.
        warnings.warn(f"embedded test servers not stopped: {error}", stacklevel=1)


@pytest.fixture(scope="session")
def server_env(service_urls) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_"))}
    env.update({
        "DATABASE_URL": service_urls["app_database_url"],
        "DATABASE_ADMIN_URL": service_urls["database_url"],
        "REDIS_URL": service_urls["redis_url"],
        "ENVIRONMENT": "test",
        "JWT_SECRET": "test-secret-" + uuid.uuid4().hex,
        "MAX_UPLOAD_BYTES": str(TEST_MAX_UPLOAD_BYTES),
        "DATA_DIR": str(TEST_DATA_DIR),
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
        # Tests register many users from 127.0.0.1, so the shared server gets generous limits.
        # tests/test_rate_limit.py runs its own server with low ones.
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_PER_HOUR": "1000000",
    })
    return env


def _start(name: str, args: list[str], env: dict) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        # Only the main process gets SIGTERM; it shuts its own children down gracefully.
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {LOG_DIR}/web.log")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready within {timeout} s; see {LOG_DIR}")


def without_rq_worker(server_env: dict, database: int) -> dict:
    """Variables that point a server at Redis database `database`, where no RQ worker listens.

    The session's `rq_worker` ingests every document enqueued in the shared database within a
    second, so a test that needs a document to stay queued gives its server its own database.
    """
    url = urlsplit(server_env["REDIS_URL"])._replace(path=f"/{database}").geturl()
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return {"REDIS_URL": url}


@contextmanager
def running_server(server_env: dict, name: str, **overrides: str):
    """Start `python -m server` on a free loopback port with the given variables; yield its URL."""
    port = _free_port()
    env = {**server_env, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port), **overrides}
    process = _start(name, ["-m", "server"], env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        yield base_url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def live_server(server_env) -> str:
    """Base URL of `python -m server` with two workers on a free loopback port."""
    with running_server(server_env, "web", BACKEND_WORKERS="2") as base_url:
        yield base_url


@pytest.fixture(scope="session")
def rq_worker(server_env) -> subprocess.Popen:
    """A real RQ worker process on the ingestion, default and maintenance queues."""
    process = _start("worker", ["-m", "jobs.worker"], server_env)
    yield process
    _stop(process)


def reset_state(service_urls: dict) -> None:
    """Empty every table, and delete the Redis keys of tests' data."""

    async def truncate() -> None:
        connection = await asyncpg.connect(service_urls["database_url"])
        try:
            await connection.execute("TRUNCATE tenants CASCADE")
        finally:
            await connection.close()

    asyncio.run(truncate())
    client = redis.Redis.from_url(service_urls["redis_url"])
    for pattern in VOLATILE_KEY_PATTERNS:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def clean_state(request):
    """Start each test that touches the data services from empty tables.

    Tests marked `shared_data` read data that a module-scoped fixture ingested once (and reset
    the state itself before doing so).
    """
    touches_data = {"service_urls", "live_server", "api", "db_url"} & set(request.fixturenames)
    if touches_data and request.node.get_closest_marker("shared_data") is None:
        reset_state(request.getfixturevalue("service_urls"))
    yield


@pytest.fixture
def db_url(service_urls) -> str:
    return service_urls["database_url"]


class Api:
    """An HTTP client of the live server with helpers to make tenants and wait for ingestion."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def register(self, tenant: str | None = None, password: str = "correct-horse-battery") -> dict:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        response = self.http.post("/auth/register", json={"tenant": tenant or f"Tenant {email}", "email": email,
                                                          "password": password})
        assert response.status_code == 201, response.text
        body = response.json()
        return {**body, "email": email, "password": password,
                "headers": {"Authorization": f"Bearer {body['access_token']}"}}

    def upload_text(self, user: dict, title: str, text: str, metadata: dict | None = None) -> httpx.Response:
        return self.http.post("/documents", headers=user["headers"],
                              json={"title": title, "text": text, "metadata": metadata or {}})

    def wait_for_document(self, user: dict, document_id: str, timeout: float = 240) -> dict:
        return self._poll(f"/documents/{document_id}", user, ("ready", "failed"), timeout)

    def wait_for_job(self, user: dict, job_id: str, timeout: float = 60) -> dict:
        """Poll GET /jobs/{id} until the job finished or failed; the document may settle first."""
        return self._poll(f"/jobs/{job_id}", user, ("finished", "failed"), timeout)

    def _poll(self, path: str, user: dict, final_statuses: tuple[str, ...], timeout: float) -> dict:
        """GET `path` until its `status` is one of `final_statuses`, and return that body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.http.get(path, headers=user["headers"]).json()
            if body["status"] in final_statuses:
                return body
            time.sleep(0.2)
        raise AssertionError(f"{path} did not reach {' or '.join(final_statuses)} within {timeout} s")


@pytest.fixture
def api(live_server) -> Api:
    client = Api(live_server)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def module_api(live_server, service_urls) -> Api:
    """An Api for a module of `shared_data` tests; the state is reset once, before the module."""
    reset_state(service_urls)
    client = Api(live_server)
    yield client
    client.http.close()
