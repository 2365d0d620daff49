"""statsd metrics: packet batching, metric names, and what a live server sends to a real UDP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import socket
import threading
import time
import uuid

import asyncpg
import httpx
import pytest

from jobs import ingest
from server import metrics
from server.settings import Settings
from tests.conftest import running_server, without_rq_worker

PREFIX = "testplat"
RECEIVE_TIMEOUT_SECONDS = 30
LINE = re.compile(r"^(?P<name>[^:]+):(?P<value>[-+]?[0-9.]+)\|(?P<kind>c|ms|g)$")


class StatsdReceiver:
    """A UDP socket on 127.0.0.1 that keeps every datagram it receives, like a statsd server."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.datagrams: list[bytes] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._receive, name="statsd-receiver", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                datagram = self.socket.recv(65535)
            except TimeoutError:
                continue
            with self._lock:
                self.datagrams.append(datagram)

    def lines(self) -> list[str]:
        with self._lock:
            return [line for datagram in self.datagrams for line in datagram.decode().split("\n")]

    def clear(self) -> None:
        with self._lock:
            self.datagrams.clear()

    def wait_for(self, predicate, description: str) -> list[str]:
        """Return the lines once `predicate(lines)` is true, or fail naming `description`."""
        deadline = time.monotonic() + RECEIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            lines = self.lines()
            if predicate(lines):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"no {description} within {RECEIVE_TIMEOUT_SECONDS} s; received: {self.lines()[-40:]}")

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.socket.close()


def parse(line: str) -> tuple[str, float, str]:
    match = LINE.match(line)
    assert match, f"not a statsd line: {line!r}"
    return match["name"], float(match["value"]), match["kind"]


def values(lines: list[str], name: str, kind: str) -> list[float]:
    parsed = [parse(line) for line in lines]
    return [value for line_name, value, line_kind in parsed if line_name == name and line_kind == kind]


def has(name: str, kind: str):
    return lambda lines: bool(values(lines, name, kind))


@pytest.fixture
def receiver():
    receiver = StatsdReceiver()
    yield receiver
    receiver.close()


def enabled_settings(port: int) -> Settings:
    return Settings(enable_metrics=True, statsd_host="127.0.0.1", statsd_port=port, statsd_prefix=PREFIX)


# Batching and naming, in this process.

def test_batch_joins_lines_into_packets_under_limit(receiver):
    sink = metrics.Metrics(metrics.NonBlockingStatsClient("127.0.0.1", receiver.port, PREFIX))
    with sink.batch():
        for index in range(300):
            sink.increment(f"batch.counter_{index}")
    expected = {f"{PREFIX}.batch.counter_{index}:1|c" for index in range(300)}
    lines = receiver.wait_for(lambda lines: expected <= set(lines), "batched counters")
    assert len(lines) == 300
    assert all(len(datagram) < metrics.MAX_PACKET_BYTES for datagram in receiver.datagrams)
    # 300 lines of about 30 bytes fit in a handful of datagrams, not one each.
    assert len(receiver.datagrams) < 20


def test_metric_outside_batch_sent_at_once(receiver):
    sink = metrics.Metrics(metrics.NonBlockingStatsClient("127.0.0.1", receiver.port, PREFIX))
    sink.start_batch()
    sink.flush_batch()
    sink.timing("after.flush", 12.5)
    lines = receiver.wait_for(has(f"{PREFIX}.after.flush", "ms"), "timing sent after the flush")
    assert values(lines, f"{PREFIX}.after.flush", "ms") == [12.5]


def test_disabled_metrics_send_nothing(receiver):
    disabled = metrics.configure(Settings(enable_metrics=False, statsd_port=receiver.port))
    disabled.increment("never.sent")
    with disabled.batch():
        disabled.timing("never.sent", 1.0)
    # A datagram from an enabled client marks the end: UDP on loopback keeps the order.
    metrics.configure(enabled_settings(receiver.port)).increment("sentinel")
    lines = receiver.wait_for(has(f"{PREFIX}.sentinel", "c"), "sentinel counter")
    metrics.configure(Settings(enable_metrics=False))
    assert lines == [f"{PREFIX}.sentinel:1|c"]


@pytest.mark.parametrize(("template", "expected"), [
    ("documents/<document_id:str>", "documents_document_id"),
    ("/documents/<document_id>/events", "documents_document_id_events"),
    ("health/ready", "health_ready"),
    ("search", "search"),
    ("chat/sessions/<session_id:str>/messages", "chat_sessions_session_id_messages"),
    ("openapi.json", "openapi_json"),
    ("", "root"),
    (None, "unmatched"),
])
def test_route_name_from_template(template, expected):
    assert metrics.route_name(template) == expected


async def insert_document(database_url: str, text: str) -> tuple[uuid.UUID, uuid.UUID]:
    """Store a queued text document as an upload would, without enqueueing a job; return (tenant, document)."""
    connection = await asyncpg.connect(database_url)
    try:
        tenant_id = await connection.fetchval("INSERT INTO tenants (name) VALUES ('Metrics ingestion') RETURNING id")
        data = text.encode()
        document_id = await connection.fetchval(
            "INSERT INTO documents (tenant_id, title, content_type, bytes, content_sha256)"
            " VALUES ($1, 'Metrics probe', 'text/plain', $2, $3) RETURNING id",
            tenant_id, len(data), hashlib.sha256(data).hexdigest())
        await connection.execute("INSERT INTO document_contents (document_id, tenant_id, data) VALUES ($1, $2, $3)",
                                 document_id, tenant_id, data)
    finally:
        await connection.close()
    return tenant_id, document_id


def test_ingestion_sends_chunk_and_batch_metrics(receiver, db_url, monkeypatch):
    text = " ".join(f"Sentence {index} explains how the platform measures ingestion." for index in range(150))
    tenant_id, document_id = asyncio.run(insert_document(db_url, text))
    monkeypatch.setenv("DATABASE_URL", db_url)
    metrics.configure(enabled_settings(receiver.port))
    try:
        # The job body as a work horse runs it, in this process; job=None skips the RQ bookkeeping.
        summary = asyncio.run(ingest._ingest(None, document_id, tenant_id))
    finally:
        metrics.configure(Settings(enable_metrics=False))
    assert summary["status"] == "ready"
    lines = receiver.wait_for(has(f"{PREFIX}.ingestion.chunks", "c"), "ingested chunks counter")
    assert values(lines, f"{PREFIX}.ingestion.chunks", "c") == [summary["chunks"]]
    batch_timings = values(lines, f"{PREFIX}.ingestion.embedding_batch", "ms")
    assert len(batch_timings) == math.ceil(summary["chunks"] / Settings().embedding_batch_size)
    assert all(value > 0 for value in batch_timings)
    assert values(lines, f"{PREFIX}.ingestion.chunks_per_second", "g")[0] > 0


# A live two-worker server sending to the receiver.

@pytest.fixture(scope="module")
def module_receiver():
    receiver = StatsdReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def metrics_server(server_env, module_receiver):
    with running_server(server_env, "web-metrics", BACKEND_WORKERS="2", ENABLE_METRICS="true",
                        STATSD_HOST="127.0.0.1", STATSD_PORT=str(module_receiver.port), STATSD_PREFIX=PREFIX,
                        METRICS_SAMPLE_SECONDS="1", SSE_HEARTBEAT_SECONDS="1",
                        **without_rq_worker(server_env, database=2)) as base_url:
        yield base_url


@pytest.fixture
def client(metrics_server, module_receiver, service_urls):
    module_receiver.clear()
    http = httpx.Client(base_url=metrics_server, timeout=60)
    yield http
    http.close()


def register(client: httpx.Client) -> dict:
    email = f"metrics-{uuid.uuid4().hex[:12]}@example.com"
    response = client.post("/auth/register", json={"tenant": f"Metrics {email}", "email": email,
                                                   "password": "correct-horse-battery"})
    assert response.status_code == 201, response.text
    body = response.json()
    return {**body, "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def test_request_counted_by_route_template(client, module_receiver):
    user = register(client)
    document_id = str(uuid.uuid4())
    assert client.get(f"/documents/{document_id}", headers=user["headers"]).status_code == 404
    name = f"{PREFIX}.http.requests.documents_document_id.GET.4xx"
    lines = module_receiver.wait_for(has(name, "c"), name)
    assert values(lines, name, "c") == [1.0]
    assert not [line for line in lines if document_id in line]


def test_request_timing_is_positive_milliseconds(client, module_receiver):
    assert client.get("/health").status_code == 200
    name = f"{PREFIX}.http.duration.health.GET.2xx"
    lines = module_receiver.wait_for(has(name, "ms"), name)
    assert all(value > 0 for value in values(lines, name, "ms"))


def test_unmatched_route_counted_as_unmatched(client, module_receiver):
    # Without a token the status is 401, because authentication runs before routing. Both are 4xx.
    assert client.get(f"/no-such-path/{uuid.uuid4()}").status_code in (401, 404)
    name = f"{PREFIX}.http.requests.unmatched.GET.4xx"
    lines = module_receiver.wait_for(has(name, "c"), name)
    assert values(lines, name, "c") == [1.0]


def test_repeated_search_counts_cache_hit(client, module_receiver):
    user = register(client)
    body = {"query": "metrics cache probe", "mode": "keyword"}
    first = client.post("/search", headers=user["headers"], json=body)
    second = client.post("/search", headers=user["headers"], json=body)
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    lines = module_receiver.wait_for(has(f"{PREFIX}.cache.search.hit", "c"), "cache hit counter")
    assert values(lines, f"{PREFIX}.cache.search.miss", "c") == [1.0]
    assert values(lines, f"{PREFIX}.cache.search.hit", "c") == [1.0]


def test_query_timed_by_function_name(client, module_receiver):
    register(client)
    name = f"{PREFIX}.db.query.users.create_user"
    lines = module_receiver.wait_for(has(name, "ms"), name)
    assert all(value > 0 for value in values(lines, name, "ms"))


def test_rate_limit_decision_counted_per_scope(client, module_receiver):
    user = register(client)
    assert client.get("/users/me", headers=user["headers"]).status_code == 200
    names = [f"{PREFIX}.ratelimit.user.allowed", f"{PREFIX}.ratelimit.tenant.allowed"]
    module_receiver.wait_for(lambda lines: all(values(lines, name, "c") for name in names), "limiter decisions")


def test_pool_and_queue_gauges_sampled(client, module_receiver):
    pool_size = re.compile(rf"^{PREFIX}\.db\.pool\.size\.[\w-]+:(\d+)\|g$")
    lines = module_receiver.wait_for(
        lambda lines: any(pool_size.match(line) for line in lines)
        and has(f"{PREFIX}.queue.depth.ingestion", "g")(lines), "pool and queue gauges")
    sizes = [int(match[1]) for match in map(pool_size.match, lines) if match]
    assert all(size >= 1 for size in sizes)
    in_use = [line for line in lines if line.startswith(f"{PREFIX}.db.pool.in_use.")]
    waiting = [line for line in lines if line.startswith(f"{PREFIX}.db.pool.waiting.")]
    assert in_use
    assert waiting


def test_open_event_stream_gauge_rises_and_falls(client, module_receiver):
    user = register(client)
    upload = client.post("/documents", headers=user["headers"],
                         json={"title": "Stream probe", "text": "Text that no worker ingests in this module."})
    assert upload.status_code == 202, upload.text
    document_id = upload.json()["document"]["id"]
    stream_gauge = re.compile(rf"^{PREFIX}\.sse\.open_streams\.([\w-]+):(\d+)\|g$")

    def latest(lines: list[str]) -> dict[str, int]:
        per_worker = {}
        for match in filter(None, map(stream_gauge.match, lines)):
            per_worker[match[1]] = int(match[2])
        return per_worker

    with client.stream("GET", f"/documents/{document_id}/events", headers=user["headers"]) as response:
        assert response.status_code == 200
        next(response.iter_lines())
        module_receiver.wait_for(lambda lines: 1 in latest(lines).values(), "open stream gauge of 1")
    module_receiver.clear()
    # The next heartbeat, within a second, finds the connection closed. Then every worker samples 0.
    module_receiver.wait_for(lambda lines: len(latest(lines)) == 2 and set(latest(lines).values()) == {0},
                             "open stream gauge back at 0")
