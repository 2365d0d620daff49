"""Bring up the whole platform on one machine and run the demo: `python -m server.launch`.

It starts the embedded PostgreSQL and Redis unless DATABASE_URL and REDIS_URL are set, and
applies the migrations once. Then it starts every process of the Procfile, with their output in
DATA_DIR/logs, waits until the API is ready, runs the demo, and keeps serving until interrupted.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from db import embedded
from db.migrate import MigrationsNotPermitted, apply_migrations
from db.roles import role_of
from jobs.dashboard import dashboard_url
from server.launch_arguments import build_parser
from server.logs import configure_logging
from server.services import (ServiceUnreachable, admin_url_variable, export_service_urls,
                             resolve_admin_database_url, stop_when_postgres_unreachable)
from server.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 300


def read_procfile(path: Path) -> dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        name, separator, command = line.partition(":")
        if separator and name.strip() and not name.startswith("#"):
            processes[name.strip()] = command.strip()
    return processes


def start_processes(processes: dict[str, str], log_dir: Path) -> dict[str, subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    started = {}
    for name, command in processes.items():
        argv = shlex.split(command)
        if argv[0] == "python":
            argv[0] = sys.executable
        log = open(log_dir / f"{name}.log", "ab")
        started[name] = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        print(f"started {name}: {command} (log: {log_dir / (name + '.log')})")
    return started


def stop_processes(started: dict[str, subprocess.Popen], timeout: float) -> None:
    for process in started.values():
        if process.poll() is None:
            # Only the main process gets SIGTERM; it shuts its own children down gracefully.
            process.terminate()
    deadline = time.monotonic() + timeout
    for name, process in started.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        print(f"stopped {name}")


def wait_until_ready(url: str, started: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for name, process in started.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with status {process.returncode}; see its log.")
        try:
            response = httpx.get(f"{url}/health/ready", timeout=2)
            if response.status_code == 200 and response.json()["checks"]["queue"].get("workers"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"The platform was not ready within {READY_TIMEOUT_SECONDS} s.")


def stop_embedded_services(settings, postgres: bool, redis: bool) -> None:
    """Stop the embedded servers this launcher started; configured ones are left alone."""
    if postgres:
        embedded.stop_postgres(settings.data_dir)
        print("stopped PostgreSQL")
    if redis:
        embedded.stop_redis(settings.data_dir)
        print("stopped Redis")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def watch(started: dict[str, subprocess.Popen]) -> None:
    """Block until interrupted, or until a process exits on its own."""
    signal.signal(signal.SIGTERM, _interrupt)
    while True:
        for name, process in started.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with status {process.returncode}; see its log.")
        time.sleep(1)


def main() -> None:
    args = build_parser().parse_args()

    settings = get_settings()
    configure_logging(settings)
    os.environ.setdefault("BACKEND_WORKERS", "2")
    embedded_services = settings.database_url is None, settings.redis_url is None
    database_url, redis_url = export_service_urls(settings)
    print(f"PostgreSQL: {database_url.split('@')[-1]}  Redis: {redis_url.split('@')[-1]}")
    admin_url = resolve_admin_database_url(settings, database_url)
    try:
        with stop_when_postgres_unreachable(admin_url_variable(settings), admin_url):
            asyncio.run(apply_migrations(admin_url, role_of(database_url)))
    except (MigrationsNotPermitted, ServiceUnreachable) as error:
        raise SystemExit(str(error)) from None

    started = start_processes(read_procfile(ROOT / "Procfile"), Path(settings.data_dir) / "logs")
    url = f"http://127.0.0.1:{settings.backend_port}"
    status = 0
    try:
        wait_until_ready(url, started)
        print(f"API ready at {url} (OpenAPI at {url}/docs); dashboard at {dashboard_url()}")
        if not args.no_demo:
            from server.demo.client import run_demo

            demo_args = {} if args.demo_modules is None else {"modules": args.demo_modules}
            if args.demo_max_bytes is not None:
                demo_args["max_bytes_per_module"] = args.demo_max_bytes
            if args.demo_timeout is not None:
                demo_args["timeout"] = args.demo_timeout
            status = run_demo(url, **demo_args)
        if not args.exit_after_demo:
            print("The platform keeps running; press Ctrl-C to stop it.")
            watch(started)
    except KeyboardInterrupt:
        pass
    finally:
        stop_processes(started, settings.graceful_shutdown_timeout + 5)
        stop_embedded_services(settings, *embedded_services)
    sys.exit(status)


if __name__ == "__main__":
    main()
