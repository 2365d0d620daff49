"""Start the platform with a given configuration for a load test, on loopback, and stop it.

The embedded PostgreSQL and Redis live under their own data folder (var/loadtest by default),
apart from the development data in var/, so the seeded tenants and their ingested documents
are kept from one load test to the next. Web servers and RQ workers are started as the
Procfile starts them, `python -m server` and `python -m jobs.worker`, with the configuration
passed as environment variables.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = ROOT / "var" / "loadtest"
READY_TIMEOUT_SECONDS = 240
STOP_TIMEOUT_SECONDS = 40
WEB_START_ATTEMPTS = 3

# Limits that no load test reaches, so the limiter runs (and costs what it costs) without
# rejecting; the notebook compares against the defaults separately.
HIGH_RATE_LIMIT_PER_MINUTE = 100_000_000
HIGH_RATE_LIMIT_PER_HOUR = 100_000_000


class WebExited(RuntimeError):
    """Raised when a web server process exits before it is ready."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_coroutine(coroutine):
    """Run a coroutine to completion, also from a Jupyter kernel, whose event loop is already running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


def start_services(data_dir: Path) -> tuple[str, str]:
    """Start (or find running) the embedded PostgreSQL and Redis, migrate, and return their URLs.

    The database URL is the application role's, as in a deployment, so row-level security
    applies to the measured requests; `admin_database_url` gives the owner's.
    """
    from db import embedded
    from db.migrate import apply_migrations
    from db.roles import ensure_app_role, role_of
    from server.services import APP_ROLE_PASSWORD_FILE

    admin_url = embedded.ensure_postgres(data_dir)
    redis_url = embedded.ensure_redis(data_dir)
    database_url = run_coroutine(ensure_app_role(admin_url, data_dir / APP_ROLE_PASSWORD_FILE))
    run_coroutine(apply_migrations(admin_url, role_of(database_url)))
    return database_url, redis_url


def admin_database_url(data_dir: Path) -> str:
    from db import embedded

    return embedded.ensure_postgres(data_dir)


def stop_services(data_dir: Path) -> None:
    from db import embedded

    embedded.stop_postgres(data_dir)
    embedded.stop_redis(data_dir)


def postgres_max_connections(database_url: str) -> int:
    import asyncpg

    async def read() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            return int(await connection.fetchval("SHOW max_connections"))
        finally:
            await connection.close()

    return run_coroutine(read())


def jwt_secret(data_dir: Path) -> str:
    """Return the JWT secret kept in the data folder, so seeded users' tokens stay valid across restarts."""
    path = data_dir / "loadtest-jwt.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass
class Platform:
    """Web servers and RQ workers started with one configuration on shared PostgreSQL and Redis.

    `config` contains environment variables of the platform (BACKEND_WORKERS, CACHE_ENABLED, ...).
    """

    config: dict
    data_dir: Path = DEFAULT_DATA_DIR
    instances: int = 1
    rq_workers: int = 1
    statsd_port: int | None = None
    urls: list[str] = field(default_factory=list)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def environment(self, database_url: str, redis_url: str) -> dict:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_"))}
        env.update({
            "DATABASE_URL": database_url,
            "DATABASE_ADMIN_URL": admin_database_url(self.data_dir),
            "REDIS_URL": redis_url,
            "DATA_DIR": str(self.data_dir),
            "ENVIRONMENT": "test",
            "JWT_SECRET": jwt_secret(self.data_dir),
            # Tokens are handed out once per notebook run, so they must outlive it.
            "JWT_EXPIRES_SECONDS": "86400",
            "BACKEND_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "TOKENIZERS_PARALLELISM": "false",
        })
        if self.statsd_port:
            env.update({"ENABLE_METRICS": "true", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(self.statsd_port)})
        env.update({key: str(value) for key, value in self.config.items()})
        return env

    def start(self) -> "Platform":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database_url, redis_url = start_services(self.data_dir)
        self.database_url, self.redis_url = database_url, redis_url
        env = self.environment(database_url, redis_url)
        try:
            for index in range(self.rq_workers):
                self._spawn(f"worker-{index + 1}", ["-m", "jobs.worker"], env)
            for index in range(self.instances):
                self.urls.append(self._start_web(f"web-{index + 1}", env))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_web(self, name: str, env: dict) -> str:
        """Start one web server on a free port and wait until it is ready; return its URL.

        Sanic stops when a worker has not acknowledged its start within 30 s (a fixed threshold
        in sanic.worker.process), which happens on a loaded machine, so a web server that exits
        while starting is started again, up to WEB_START_ATTEMPTS times.
        """
        for attempt in range(1, WEB_START_ATTEMPTS + 1):
            port = free_port()
            process = self._spawn(name, ["-m", "server"], {**env, "BACKEND_PORT": str(port)})
            url = f"http://127.0.0.1:{port}"
            try:
                self._wait_until_ready(url)
                return url
            except WebExited:
                logger.warning("web server exited while starting name=%s attempt=%d status=%s", name, attempt,
                               process.returncode)
                self.processes.remove((name, process))
        raise RuntimeError(f"{name} exited while starting {WEB_START_ATTEMPTS} times; "
                           f"see {self.data_dir / 'logs' / (name + '.log')}")

    def _spawn(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def _wait_until_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None and name.startswith("web-"):
                    raise WebExited(name)
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {process.returncode}; "
                                       f"see {self.data_dir / 'logs' / (name + '.log')}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{url} was not ready within {READY_TIMEOUT_SECONDS} s; see {self.data_dir / 'logs'}")

    def stop(self) -> None:
        """Stop the processes this object started (gracefully, then by SIGKILL of their group)."""
        for _, process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("process did not stop in time name=%s pid=%d", name, process.pid)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        self.urls.clear()

    def __enter__(self) -> "Platform":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
