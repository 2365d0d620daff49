"""LOG_FORMAT: JSON or key=value lines from the web server, the RQ worker and its clock."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import redis
from rq import Queue

from jobs.queues import INGESTION_QUEUE
from server.settings import Settings
from tests.conftest import LOG_DIR, ROOT, _start, _stop, running_server, without_rq_worker

LOG_WAIT_SECONDS = 240
# A Redis database of its own, so that the JSON worker takes only this module's job.
WORKER_REDIS_DATABASE = 11


def appended_lines(path, offset: int) -> list[str]:
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


def log_size(name: str) -> int:
    path = LOG_DIR / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def wait_for_entry(path, offset: int, matches) -> dict:
    """Parse the lines written after `offset` as JSON until one entry satisfies `matches`."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        for line in appended_lines(path, offset):
            entry = json.loads(line)
            if matches(entry):
                return entry
        time.sleep(0.5)
    raise AssertionError(f"no matching entry in {path} within {LOG_WAIT_SECONDS} s")


@pytest.mark.parametrize(("environment", "log_format", "expected"), [
    ("production", None, "json"),
    ("development", None, "text"),
    ("test", None, "text"),
    ("production", "text", "text"),
    ("development", "JSON", "json"),
])
def test_log_format_default_and_override(monkeypatch, environment, log_format, expected):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    if log_format is not None:
        monkeypatch.setenv("LOG_FORMAT", log_format)
    settings = Settings(_env_file=None, environment=environment, jwt_secret="x" * 40)
    assert settings.log_format == expected


def test_invalid_log_format_stops_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "server"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "xml", "DATA_DIR": str(tmp_path)}, cwd=ROOT)
    assert result.returncode != 0
    assert "LOG_FORMAT" in result.stderr
    assert "'xml'" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_server_lines_carry_request_id(server_env):
    path = LOG_DIR / "web-json.log"
    offset = log_size("web-json")
    request_id = f"jsonlog-{uuid.uuid4().hex}"
    with running_server(server_env, "web-json", LOG_FORMAT="json", BACKEND_WORKERS="1") as base_url:
        response = httpx.get(f"{base_url}/health", headers={"X-Request-ID": request_id}, timeout=30)
        assert response.status_code == 200
        entry = wait_for_entry(path, offset, lambda entry: entry.get("request_id") == request_id)
    assert entry["event"] == "request done"
    assert entry["route"] == "/health"
    assert entry["status"] == 200
    # Every line the process wrote, Sanic's own included, is one JSON object.
    for line in appended_lines(path, offset):
        assert isinstance(json.loads(line), dict), line


@pytest.fixture(scope="module")
def json_worker(server_env):
    """A real RQ worker logging JSON lines, listening on a Redis database of its own."""
    env = {**server_env, "LOG_FORMAT": "json", **without_rq_worker(server_env, database=WORKER_REDIS_DATABASE)}
    offset = log_size("worker-json")
    process = _start("worker-json", ["-m", "jobs.worker"], env)
    yield env, LOG_DIR / "worker-json.log", offset
    _stop(process)


def test_json_worker_lines_carry_job_id(json_worker):
    env, path, offset = json_worker
    document_id = str(uuid.uuid4())
    with redis.Redis.from_url(env["REDIS_URL"]) as connection:
        # A document that does not exist: the job logs that it skipped it, and succeeds.
        job = Queue(INGESTION_QUEUE, connection=connection).enqueue(
            "jobs.ingest.ingest_document", document_id, str(uuid.uuid4()))
    entry = wait_for_entry(path, offset, lambda entry: entry.get("document_id") == document_id)
    assert entry["message"].startswith("ingestion skipped reason=document_deleted")
    assert entry["job_id"] == job.id
    assert entry["level"] == "INFO"


def test_json_worker_clock_lines(json_worker):
    _, path, offset = json_worker
    entry = wait_for_entry(path, offset, lambda entry: entry.get("event") == "maintenance clock start")
    assert entry["logger"] == "jobs.maintenance"
    assert entry["jobs"] == "sweep-stuck-documents,refresh-usage-view"
