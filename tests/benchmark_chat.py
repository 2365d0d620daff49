"""Streamed chat figures: `python -m tests.benchmark_chat`.

It starts one web server with one worker on the embedded services under var/bench, with the
`openai` provider pointed at tests/fake_openai.py in this process, and measures:

- time to the first event of POST /chat, against the latency of GET /users/me;
- the worker's memory (RSS) with many idle open streams, against as many idle keep-alive
  connections, while the fake provider holds every answer before its first chunk;
- event throughput of one long streamed answer, against reading the fake provider directly.

Server logs go to var/test/logs/bench-chat.log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psutil

from tests.conftest import _free_port, _start, _stop, wait_until_ready
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA_DIR = ROOT / "var" / "bench"
# Seconds the fake provider holds idle answers; the benchmark closes them well before.
IDLE_HOLD_SECONDS = 300
# Streams not open by then are counted as failed to open.
OPEN_TIMEOUT_SECONDS = 60
OPEN_BATCH = 50
QUESTION = "What is the boiling point of water?"


def register(base_url: str) -> dict:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    response = httpx.post(f"{base_url}/auth/register", timeout=60,
                          json={"tenant": "Chat benchmark", "email": email, "password": "benchmark-password"})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def sanic_worker(server: psutil.Process) -> psutil.Process:
    """Return the Sanic worker: the child process with the most memory, as it holds the embedding model."""
    children = server.children(recursive=True)
    if not children:
        raise SystemExit("the server has no worker process")
    return max(children, key=lambda child: child.memory_info().rss)


async def first_event_seconds(client: httpx.AsyncClient, headers: dict) -> float:
    started = time.perf_counter()
    async with client.stream("POST", "/chat", headers=headers, json={"message": QUESTION, "stream": True}) as response:
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: "):
                elapsed = time.perf_counter() - started
                break
        async for _line in lines:
            pass
    return elapsed


async def measure_first_event(base_url: str, headers: dict, requests: int) -> tuple[float, float]:
    """Return the median seconds to the first chat event and the median GET /users/me latency."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        first_events, baseline = [], []
        for _ in range(requests):
            first_events.append(await first_event_seconds(client, headers))
            started = time.perf_counter()
            (await client.get("/users/me", headers=headers)).raise_for_status()
            baseline.append(time.perf_counter() - started)
    return statistics.median(first_events), statistics.median(baseline)


async def hold_streams(base_url: str, headers: dict, count: int, worker: psutil.Process,
                       chat: bool) -> tuple[int, int, Counter]:
    """Open `count` idle chat streams (or idle keep-alive connections) for a while.

    Returns how many opened within OPEN_TIMEOUT_SECONDS, the worker's RSS growth with them open,
    and the errors of those that failed, by type.
    """
    before = worker.memory_info().rss
    release = asyncio.Event()
    opened = 0
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        async def hold_one() -> None:
            nonlocal opened
            if chat:
                async with client.stream("POST", "/chat", headers=headers,
                                         json={"message": QUESTION, "stream": True}) as response:
                    if response.status_code != 200:
                        raise SystemExit(f"stream refused with {response.status_code}")
                    # The iterator is kept: a discarded one is finalized and closes the connection.
                    lines = response.aiter_lines()
                    async for line in lines:
                        if line.startswith("data: "):
                            break
                    opened += 1
                    await release.wait()
            else:
                async with client.stream("GET", "/users/me", headers=headers) as response:
                    await response.aread()
                    opened += 1
                    await release.wait()

        # Streams open in batches, each once the one before is open, because a burst of 500
        # connections overflowed the listen backlog (100) of the single worker and some were reset.
        tasks = []
        deadline = time.monotonic() + OPEN_TIMEOUT_SECONDS
        for index in range(count):
            tasks.append(asyncio.create_task(hold_one()))
            if index % OPEN_BATCH == OPEN_BATCH - 1:
                while opened + sum(task.done() for task in tasks) <= index and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        while opened < count and time.monotonic() < deadline and not all(task.done() for task in tasks):
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        after = worker.memory_info().rss
        held = opened
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = Counter(type(result).__name__ for result in results if isinstance(result, BaseException))
    return held, after - before, errors


async def measure_throughput(base_url: str, headers: dict, fake: FakeOpenAI) -> tuple[int, float, float]:
    """Return the events of one long answer and the seconds through the server and straight from the fake."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        started = time.perf_counter()
        events = 0
        async with client.stream("POST", "/chat", headers=headers,
                                 json={"message": QUESTION, "stream": True}) as response:
            async for line in response.aiter_lines():
                events += line.startswith("id: ")
        through_server = time.perf_counter() - started

        body = {"model": "fake-model", "stream": True, "messages": [
            {"role": "user", "content": QUESTION}, {"role": "tool", "content": "No passage matches this query."}]}
        started = time.perf_counter()
        async with client.stream("POST", f"{fake.base_url}/chat/completions", json=body) as response:
            async for _line in response.aiter_lines():
                pass
        direct = time.perf_counter() - started
    return events, through_server, direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests timed for the first event (default 30)")
    parser.add_argument("--streams", type=int, default=500, help="idle streams held open (default 500)")
    parser.add_argument("--words", type=int, default=3000, help="delta events of the throughput answer (default 3000)")
    args = parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.services import export_service_urls
    from server.settings import get_settings

    export_service_urls(get_settings())
    fake = FakeOpenAI().start()
    port = _free_port()
    env = {**os.environ, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port), "BACKEND_WORKERS": "1",
           "ENVIRONMENT": "test", "JWT_SECRET": "bench-secret-" + uuid.uuid4().hex, "PYTHONPATH": str(ROOT),
           "RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_PER_HOUR": "100000000",
           "MAX_CONCURRENT_STREAMS": str(args.streams + 10), "LLM_PROVIDER": "openai",
           "LLM_BASE_URL": fake.base_url, "LLM_MODEL": "fake-model", "LLM_TIMEOUT_SECONDS": str(IDLE_HOLD_SECONDS * 2)}
    process = _start("bench-chat", ["-m", "server"], env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        headers = register(base_url)
        worker = sanic_worker(psutil.Process(process.pid))
        asyncio.run(measure_first_event(base_url, headers, 5))

        first_event, baseline = asyncio.run(measure_first_event(base_url, headers, args.requests))
        print(f"time to first event: median {first_event * 1000:.1f} ms over {args.requests} streams; "
              f"GET /users/me median {baseline * 1000:.1f} ms; ratio {first_event / baseline:.2f}")

        connections, connections_rss, connection_errors = asyncio.run(
            hold_streams(base_url, headers, args.streams, worker, chat=False))
        fake.behaviour.first_chunk_delay = IDLE_HOLD_SECONDS
        streams, streams_rss, stream_errors = asyncio.run(
            hold_streams(base_url, headers, args.streams, worker, chat=True))
        fake.behaviour.first_chunk_delay = 0
        print(f"worker RSS growth: {streams_rss / 2**20:.1f} MiB for {streams} idle chat streams "
              f"({streams_rss / max(streams, 1) / 1024:.1f} KiB each, errors {dict(stream_errors)}); "
              f"{connections_rss / 2**20:.1f} MiB for {connections} idle keep-alive connections "
              f"({connections_rss / max(connections, 1) / 1024:.1f} KiB each, errors {dict(connection_errors)}); "
              f"ratio per stream / per connection "
              f"{(streams_rss / max(streams, 1)) / max(connections_rss / max(connections, 1), 1):.1f}")

        fake.behaviour.padding_words = args.words
        events, through_server, direct = asyncio.run(measure_throughput(base_url, headers, fake))
        print(f"event throughput: {events} events in {through_server:.2f} s = {events / through_server:.0f} "
              f"events/s through the server; the fake provider alone streams its {args.words} chunks in "
              f"{direct:.2f} s = {args.words / direct:.0f} chunks/s; ratio "
              f"{(events / through_server) / (args.words / direct):.2f} ({os.cpu_count()} CPUs)")
    finally:
        _stop(process)
        fake.stop()


if __name__ == "__main__":
    main()
