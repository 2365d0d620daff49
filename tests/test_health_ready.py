"""GET /health/ready returns 200 or 503 with its JSON body, whatever its checks find."""

from __future__ import annotations

import socket
import struct
import time
import uuid

import httpx
import pytest
import redis

from tests.conftest import LOG_DIR, running_server, without_rq_worker

# A Redis database of its own, where the tests write broken worker registrations.
REDIS_DATABASE = 12
LOG_NAME = "web-ready"
LOG_WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def ready_server(server_env):
    env = without_rq_worker(server_env, database=REDIS_DATABASE)
    with running_server(server_env, LOG_NAME, BACKEND_WORKERS="1", **env) as base_url:
        yield base_url, env["REDIS_URL"]


@pytest.fixture
def broken_worker_key(ready_server):
    """Register a worker key in RQ's set of workers, and remove it after the test."""
    connection = redis.Redis.from_url(ready_server[1])
    key = f"rq:worker:broken-{uuid.uuid4().hex}"
    connection.sadd("rq:workers", key)
    yield connection, key
    connection.srem("rq:workers", key)
    connection.delete(key)
    connection.close()


def access_line(request_id: str) -> str:
    path = LOG_DIR / f"{LOG_NAME}.log"
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if f"request_id={request_id}" in line and " request done " in line]
        if lines:
            return lines[0]
        time.sleep(0.2)
    raise AssertionError(f"no access line for request_id={request_id} within {LOG_WAIT_SECONDS} s")


@pytest.mark.parametrize("fields", [{"last_heartbeat": "not-a-date"}, {"birth": "yesterday"}])
def test_ready_with_unreadable_worker_hash(ready_server, broken_worker_key, fields):
    connection, key = broken_worker_key
    connection.hset(key, mapping=fields)
    response = httpx.get(f"{ready_server[0]}/health/ready", timeout=30)
    assert response.status_code in (200, 503)
    queue = response.json()["checks"]["queue"]
    assert queue["unreadable_workers"] == 1
    assert set(queue["depth"]) == {"ingestion", "default", "maintenance"}


def test_ready_with_worker_key_of_wrong_type(ready_server, broken_worker_key):
    connection, key = broken_worker_key
    connection.set(key, "not a hash")
    response = httpx.get(f"{ready_server[0]}/health/ready", timeout=30)
    assert response.status_code in (200, 503)
    queue = response.json()["checks"]["queue"]
    assert queue["unreadable_workers"] == 1
    assert queue["status"] == "degraded"


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_ready_dropped_by_client_not_a_500(ready_server, reset):
    # Regression: a probe that gave up on a starting server and closed its connection was
    # logged, and counted in the metrics, as a 500.
    port = int(ready_server[0].rsplit(":", 1)[1])
    request_id = f"dropped-{uuid.uuid4().hex}"
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {request_id}\r\n\r\n".encode())
        if reset:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    line = access_line(request_id)
    assert "status=499" in line
    assert "status=500" not in line
