"""Goodput under twice the sustainable load, with load shedding on and off: `python -m tests.benchmark_overload`.

It starts two one-worker web servers on the embedded services under var/bench, one with
MAX_IN_FLIGHT_REQUESTS=`--max-in-flight` and one with shedding off (0), with the cache off so
every request does the same work: a hybrid POST /search whose query is new, which encodes the
query and runs both rankings. For each server, one after the other:

1. peak: `--concurrency` clients send requests back to back for `--seconds`; the rate of
   successful responses is the sustainable load and the peak goodput;
2. overload: requests arrive at twice that rate, each on schedule whatever the server does
   (an open loop), for `--seconds`.

The servers take turns for `--rounds` rounds, so that a change in the machine's load shows as a
difference between rounds instead of between servers.

Goodput counts 200 responses that took at most `--slo` seconds. It prints goodput, the ratio of
overload goodput to peak goodput, the 503 count and the latency of admitted requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field

import httpx

from tests.benchmark_ingestion import BENCH_DATA_DIR, ROOT
from tests.conftest import _free_port, _start, _stop, wait_until_ready

# Requests still running when a phase ends are abandoned after this long.
REQUEST_TIMEOUT_SECONDS = 30
# Seconds between phases, so a backlog left by one does not slow the next.
SETTLE_SECONDS = 5


@dataclass
class Phase:
    """The outcome of one phase: (status, seconds) of each response, and the phase's length."""

    seconds: float
    responses: list[tuple[int, float]] = field(default_factory=list)

    def goodput(self, slo: float) -> float:
        return sum(status == 200 and latency <= slo for status, latency in self.responses) / self.seconds

    def count(self, status: int) -> int:
        return sum(observed == status for observed, _ in self.responses)

    def admitted_latencies_ms(self) -> list[float]:
        return sorted(latency * 1000 for status, latency in self.responses if status == 200)


def search_body() -> dict:
    return {"query": f"parse command-line options {uuid.uuid4().hex[:8]}", "mode": "hybrid"}


async def timed_post(client: httpx.AsyncClient, headers: dict, phase: Phase) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/search", headers=headers, json=search_body())
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    phase.responses.append((status, time.perf_counter() - started))


async def closed_loop(base_url: str, headers: dict, concurrency: int, seconds: float) -> Phase:
    phase = Phase(seconds)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        async def client_loop() -> None:
            while time.perf_counter() < deadline:
                await timed_post(client, headers, phase)

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return phase


async def open_loop(base_url: str, headers: dict, rate: float, seconds: float) -> Phase:
    """Start a request every 1/rate seconds for `seconds`, then wait for all of them."""
    phase = Phase(seconds)
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        tasks = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed_post(client, headers, phase)))
        await asyncio.gather(*tasks)
    return phase


def register(base_url: str) -> dict:
    response = httpx.post(f"{base_url}/auth/register", timeout=60,
                          json={"tenant": "Overload benchmark", "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
                                "password": "benchmark-password"})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def describe(label: str, peak: Phase, overload: Phase, slo: float) -> None:
    latencies = overload.admitted_latencies_ms()
    peak_goodput = peak.goodput(slo)
    print(f"{label}: peak goodput {peak_goodput:.1f}/s; at 2x load goodput {overload.goodput(slo):.1f}/s "
          f"= {overload.goodput(slo) / peak_goodput:.2f} of peak; {overload.count(200)} ok, {overload.count(503)} shed "
          f"(503), {overload.count(0)} timed out or failed")
    if latencies:
        peak_latencies = peak.admitted_latencies_ms()
        print(f"  admitted latency at 2x: median {statistics.median(latencies):.0f} ms, "
              f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.0f} ms "
              f"(at peak: median {statistics.median(peak_latencies):.0f} ms, "
              f"p95 {peak_latencies[int(0.95 * (len(peak_latencies) - 1))]:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each phase (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per server (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in the peak phase (default 4)")
    parser.add_argument("--max-in-flight", type=int, default=4,
                        help="MAX_IN_FLIGHT_REQUESTS of the shedding server (default 4)")
    parser.add_argument("--slo", type=float, default=2.0,
                        help="seconds within which a response counts as goodput (default 2.0)")
    args = parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.services import export_service_urls
    from server.settings import get_settings

    export_service_urls(get_settings())
    common = {**os.environ, "BACKEND_HOST": "127.0.0.1", "BACKEND_WORKERS": "1", "ENVIRONMENT": "test",
              "JWT_SECRET": "bench-secret-" + uuid.uuid4().hex, "PYTHONPATH": str(ROOT), "CACHE_ENABLED": "false",
              "RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_PER_HOUR": "100000000"}
    servers = {}
    for label, maximum in (("shedding on", args.max_in_flight), ("shedding off", 0)):
        port = _free_port()
        process = _start(f"bench-overload-{maximum}", ["-m", "server"],
                         {**common, "BACKEND_PORT": str(port), "MAX_IN_FLIGHT_REQUESTS": str(maximum)})
        servers[label] = (f"http://127.0.0.1:{port}", process)
    try:
        for base_url, process in servers.values():
            wait_until_ready(base_url, process)
        headers = {label: register(base_url) for label, (base_url, _) in servers.items()}
        for label, (base_url, _) in servers.items():
            asyncio.run(closed_loop(base_url, headers[label], args.concurrency, 3))
        for round_number in range(1, args.rounds + 1):
            for label, (base_url, _) in servers.items():
                peak = asyncio.run(closed_loop(base_url, headers[label], args.concurrency, args.seconds))
                time.sleep(SETTLE_SECONDS)
                overload = asyncio.run(open_loop(base_url, headers[label], 2 * peak.count(200) / peak.seconds,
                                                 args.seconds))
                describe(f"round {round_number}, {label}", peak, overload, args.slo)
                time.sleep(SETTLE_SECONDS)
        print(f"(1 worker per server, {os.cpu_count()} CPUs, {args.seconds:.0f} s phases, goodput within "
              f"{args.slo:.1f} s, MAX_IN_FLIGHT_REQUESTS={args.max_in_flight} when shedding)")
    finally:
        for _, process in servers.values():
            _stop(process)


if __name__ == "__main__":
    main()
