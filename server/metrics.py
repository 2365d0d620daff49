"""Metrics sent to statsd over UDP, from the web workers and from the RQ workers.

`configure` builds one client per process. It resolves STATSD_HOST once, so sending never
waits on DNS, and its socket is non-blocking, so a full send buffer drops a packet instead of
stalling the event loop. While a batch is open in the current context (one per request, see
`start_batch`), metrics collect in it and leave as a few datagrams of newline-joined lines
when it is flushed; outside a batch each metric is sent at once. With ENABLE_METRICS=false
every call returns without doing anything. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import re
import sys
import time
from contextlib import contextmanager

from statsd import StatsClient
from statsd.client.udp import Pipeline

logger = logging.getLogger(__name__)

# Datagrams stay under this size, so one fits an Ethernet frame (1500-byte MTU minus the IP and
# UDP headers, with room for IP options) and is never fragmented.
MAX_PACKET_BYTES = 1432
UNMATCHED_ROUTE = "unmatched"
ROUTE_PARAMETER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")
# Dots separate levels in statsd names and `:|@` are protocol characters, so they never appear in one part.
UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")


class NonBlockingStatsClient(StatsClient):
    """The UDP client of the statsd package with a non-blocking socket; statsd 4.0.1 drops a send that fails."""

    def __init__(self, host: str, port: int, prefix: str):
        super().__init__(host, port, prefix=prefix, maxudpsize=MAX_PACKET_BYTES, ipv6=":" in host)
        self._sock.setblocking(False)


class Metrics:
    """The process's metrics sink: a statsd client, or nothing when metrics are disabled."""

    def __init__(self, client: StatsClient | None = None):
        self.client = client
        self._batch: contextvars.ContextVar[Pipeline | None] = contextvars.ContextVar("metrics_batch", default=None)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def _target(self):
        return self._batch.get() or self.client

    def increment(self, name: str, count: int = 1) -> None:
        if self.client is not None:
            self._target().incr(name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        if self.client is not None:
            self._target().timing(name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        if self.client is not None:
            self._target().gauge(name, value)

    def start_batch(self) -> None:
        """Collect the metrics of the current context (a request, a job) until `flush_batch`."""
        if self.client is not None:
            self._batch.set(self.client.pipeline())

    def flush_batch(self) -> None:
        """Send the open batch; metrics recorded later in this context go out one by one."""
        batch = self._batch.get()
        if batch is not None:
            self._batch.set(None)
            batch.send()

    @contextmanager
    def timed(self, name: str):
        """Time the block as `name`, in milliseconds, whether it returns or raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timing(name, (time.perf_counter() - started) * 1000)

    @contextmanager
    def batch(self):
        self.start_batch()
        try:
            yield
        finally:
            self.flush_batch()


_metrics = Metrics()


def configure(settings) -> Metrics:
    """Build this process's client from ENABLE_METRICS and the STATSD_* settings, and return it."""
    global _metrics
    if not settings.enable_metrics:
        _metrics = Metrics()
        return _metrics
    client = NonBlockingStatsClient(settings.statsd_host, settings.statsd_port, settings.statsd_prefix)
    _metrics = Metrics(client)
    logger.info("metrics enabled statsd_host=%s statsd_port=%d prefix=%s", settings.statsd_host,
                settings.statsd_port, settings.statsd_prefix)
    return _metrics


def metrics() -> Metrics:
    return _metrics


def increment(name: str, count: int = 1) -> None:
    _metrics.increment(name, count)


def timing(name: str, milliseconds: float) -> None:
    _metrics.timing(name, milliseconds)


def gauge(name: str, value: float) -> None:
    _metrics.gauge(name, value)


def timed(name: str):
    return _metrics.timed(name)


def start_batch() -> None:
    _metrics.start_batch()


def flush_batch() -> None:
    _metrics.flush_batch()


def name_part(text: str) -> str:
    """Turn free text into one level of a metric name."""
    return UNSAFE_NAME_CHARACTERS.sub("_", text) or "_"


@functools.lru_cache(maxsize=1024)
def route_name(template: str | None) -> str:
    """Name a route by its URI template: `/documents/<document_id:str>` becomes `documents_document_id`."""
    if template is None:
        return UNMATCHED_ROUTE
    path = ROUTE_PARAMETER.sub(r"\1", template.strip("/"))
    return name_part(path.replace("/", "_")) if path else "root"


def worker_name() -> str:
    """Name this process among its siblings; Sanic numbers its workers, others fall back to the pid."""
    identifier = os.environ.get("SANIC_WORKER_IDENTIFIER")
    return name_part(identifier.lower()) if identifier else f"pid_{os.getpid()}"


# Sources: the calls that the request middleware, the pool, the cache, the limiter and the
# streams make. Each is one line at its call site.

def record_request(request, status: int, seconds: float) -> None:
    """Count the request and time it under its route template, method and status class."""
    route = route_name(request.route.path if request.route else None)
    suffix = f"{route}.{name_part(request.method.upper())}.{status // 100}xx"
    _metrics.increment(f"http.requests.{suffix}")
    _metrics.timing(f"http.duration.{suffix}", seconds * 1000)


def record_ingestion(chunks: int, seconds: float) -> None:
    """Count a finished document's chunks, and send its rate and duration."""
    _metrics.increment("ingestion.chunks", chunks)
    _metrics.timing("ingestion.duration", seconds * 1000)
    if seconds > 0:
        _metrics.gauge("ingestion.chunks_per_second", round(chunks / seconds, 3))


def record_cache_lookup(kind: str, hit: bool) -> None:
    _metrics.increment(f"cache.{name_part(kind)}.{'hit' if hit else 'miss'}")


def record_rate_limit(decision) -> None:
    """Count a limiter decision per bucket scope: `allowed` for each, or `limited` for each empty bucket."""
    for state in decision.states:
        if decision.allowed:
            _metrics.increment(f"ratelimit.{name_part(state.bucket.name)}.allowed")
        elif state.retry_after > 0:
            _metrics.increment(f"ratelimit.{name_part(state.bucket.name)}.limited")


def query_name(frame) -> str:
    """Name a query by the function that runs it, e.g. `documents.get_document` for db/documents.py."""
    module = frame.f_globals.get("__name__", "unknown").rpartition(".")[2]
    return f"{name_part(module)}.{name_part(frame.f_code.co_name)}"


class TimedDatabase:
    """A `databases.Database` whose queries are timed as `db.query.<module>.<function>`.

    The name comes from the calling frame, so the query functions in db/ need no change. A
    function that runs several statements reports one timing per statement under its name.
    Everything other than the four query methods passes straight through.
    """

    def __init__(self, database):
        self.database = database

    def __getattr__(self, name):
        return getattr(self.database, name)

    async def _timed(self, name: str, query):
        started = time.perf_counter()
        try:
            return await query
        finally:
            _metrics.timing(f"db.query.{name}", (time.perf_counter() - started) * 1000)

    # Plain methods returning a coroutine, so that the caller's frame is still the one below.
    def fetch_all(self, query, values=None):
        return self._timed(query_name(sys._getframe(1)), self.database.fetch_all(query, values))

    def fetch_one(self, query, values=None):
        return self._timed(query_name(sys._getframe(1)), self.database.fetch_one(query, values))

    def fetch_val(self, query, values=None, column=0):
        return self._timed(query_name(sys._getframe(1)), self.database.fetch_val(query, values, column))

    def execute(self, query, values=None):
        return self._timed(query_name(sys._getframe(1)), self.database.execute(query, values))

    def execute_many(self, query, values):
        return self._timed(query_name(sys._getframe(1)), self.database.execute_many(query, values))


_open_streams = 0


def counts_open_stream(handler):
    """Count the route's event streams in the `sse.open_streams` gauge while they are open.

    A stream counts from the moment its handler responds with `text/event-stream` (see
    `note_response`) until the handler returns, raises or is cancelled by a client that left.
    """

    @functools.wraps(handler)
    async def counting_handler(request, *args, **kwargs):
        request.ctx.counts_open_stream = True
        try:
            return await handler(request, *args, **kwargs)
        finally:
            if getattr(request.ctx, "stream_counted", False):
                _change_open_streams(-1)

    return counting_handler


def note_response(request, response) -> None:
    """Count an event stream of a `counts_open_stream` route once its response starts."""
    if not getattr(request.ctx, "counts_open_stream", False) or getattr(request.ctx, "stream_counted", False):
        return
    if (response.content_type or "").startswith("text/event-stream"):
        request.ctx.stream_counted = True
        _change_open_streams(1)


def _change_open_streams(change: int) -> None:
    global _open_streams
    _open_streams += change
    _metrics.gauge(f"sse.open_streams.{worker_name()}", _open_streams)


def pool_state(database) -> tuple[int, int, int] | None:
    """Return (size, in use, waiting) of the asyncpg pool under a `databases.Database`, or None.

    NOTE: this reads private attributes of `databases` 0.9.0 and asyncpg 0.32.0: the backend's
    `_pool`, and the waiters of the pool's internal queue. A version that renames them turns
    the pool gauges off (None) instead of failing.
    """
    if isinstance(database, TimedDatabase):
        database = database.database
    pool = getattr(getattr(database, "_backend", None), "_pool", None)
    if pool is None:
        return None
    try:
        size = pool.get_size()
        in_use = size - pool.get_idle_size()
        waiting = sum(1 for waiter in pool._queue._getters if not waiter.done())
    except AttributeError:
        return None
    return size, in_use, waiting


async def sample_gauges(app, interval_seconds: float) -> None:
    """Send the gauges that are read rather than counted, every `interval_seconds`, until cancelled."""
    from jobs.queues import WORKER_QUEUES

    failing = False
    worker = worker_name()
    while True:
        await asyncio.sleep(interval_seconds)
        if not _metrics.enabled:
            continue
        try:
            with _metrics.batch():
                state = pool_state(app.ctx.db)
                if state is not None:
                    for name, value in zip(("size", "in_use", "waiting"), state):
                        _metrics.gauge(f"db.pool.{name}.{worker}", value)
                _metrics.gauge(f"sse.open_streams.{worker}", _open_streams)
                for queue in WORKER_QUEUES:
                    _metrics.gauge(f"queue.depth.{name_part(queue)}", await app.ctx.redis.llen(f"rq:queue:{queue}"))
        except Exception as error:  # noqa: BLE001 - a failed sample must not end the sampling
            if not failing:
                logger.warning("metrics sample failed error=%s", type(error).__name__)
            failing = True
        else:
            failing = False
