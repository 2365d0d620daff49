"""Open-model load: requests arrive at fixed rates whatever the server does, and latency is
measured from when each request was due.

A closed-loop generator (Locust's users) waits for a response before it sends the next request,
so a slow server slows the arrivals down and hides its own queue: coordinated omission. Here
every arrival time is drawn in advance (Poisson arrivals at the phase's rate, or evenly spaced
ones). Each request is started at its due time on its own task, and its latency runs from the
due time to the response. When the generator or its connection pool falls behind, that delay
counts against the server as a real client would see it.

    python notebooks/loadtest/openloop.py --url http://127.0.0.1:8000 --accounts accounts.json \
        --rates 5,10,20 --seconds 20 --results open.csv

Bounded: it sends at most sum(rate * seconds) requests and stops by itself; a request that takes
longer than --timeout seconds counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import RESULT_COLUMNS, Workload, load_accounts  # noqa: E402

# Requests in flight beyond this are not sent and count as errors ("overload"), which keeps a
# collapsed server from making the generator open thousands of sockets.
MAX_IN_FLIGHT = 1000


def arrival_times(rate: float, seconds: float, process: str, rng: random.Random) -> list[float]:
    """Return due times in [0, seconds) at `rate` per second: Poisson or evenly spaced."""
    if rate <= 0 or seconds <= 0:
        return []
    if process == "uniform":
        count = int(rate * seconds)
        return [index / rate for index in range(count)]
    times, due = [], rng.expovariate(rate)
    while due < seconds:
        times.append(due)
        due += rng.expovariate(rate)
    return times


class OpenLoop:
    """Sends the workload's requests at scheduled times and writes one CSV row per request."""

    def __init__(self, client: httpx.AsyncClient, accounts: list[dict], workload: Workload, writer, timeout: float):
        self.client = client
        self.accounts = accounts
        self.workload = workload
        self.writer = writer
        self.timeout = timeout
        self.in_flight = 0
        # Chat sessions are per run, so their history does not grow from one run to the next.
        self.run_id = str(int(time.time()))

    async def send(self, phase: int, rate: float, due: float, number: int) -> None:
        account = self.accounts[number % len(self.accounts)]
        request = self.workload.request(session_id=f"open-{self.run_id}-{number % len(self.accounts)}")
        if self.in_flight >= MAX_IN_FLIGHT:
            self._write(phase, rate, request, due, due, time.time(), 0, "overload")
            return
        self.in_flight += 1
        start = time.time()
        status, error = 0, ""
        try:
            response = await self.client.request(request.method, request.path, json=request.body,
                                                 headers={"Authorization": f"Bearer {account['token']}"},
                                                 timeout=self.timeout)
            status = response.status_code
            if status >= 400:
                error = f"HTTP {status}"
        except httpx.HTTPError as exception:
            error = type(exception).__name__
        finally:
            self.in_flight -= 1
        self._write(phase, rate, request, due, start, time.time(), status, error)

    def _write(self, phase, rate, request, due, start, end, status, error) -> None:
        ok = not error and 200 <= status < 400
        self.writer.writerow(("open", phase, rate, request.name, request.kind, f"{due:.6f}", f"{start:.6f}",
                              f"{end:.6f}", f"{(end - due) * 1000:.3f}", f"{(end - start) * 1000:.3f}", status,
                              int(ok), error))

    async def run_phase(self, phase: int, rate: float, seconds: float, process: str,
                        rng: random.Random) -> list[asyncio.Task]:
        """Start each request of one phase at its due time; return their tasks when the phase ends."""
        started = time.time()
        tasks = []
        for number, offset in enumerate(arrival_times(rate, seconds, process, rng)):
            due = started + offset
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(phase, rate, due, number)))
        remaining = started + seconds - time.time()
        if remaining > 0:
            await asyncio.sleep(remaining)
        return tasks


async def run(args: argparse.Namespace) -> int:
    accounts = load_accounts(args.accounts)
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    pending = []
    with open(args.results, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RESULT_COLUMNS)
        async with httpx.AsyncClient(base_url=args.url, limits=limits) as client:
            loop = OpenLoop(client, accounts, Workload(seed=args.seed), writer, args.timeout)
            for phase, rate in enumerate(args.rates):
                print(f"open-loop phase={phase} rate={rate:g}/s seconds={args.seconds:g}", flush=True)
                pending += await loop.run_phase(phase, rate, args.seconds, args.arrivals, rng)
            # Requests still in flight get at most the request timeout to finish.
            await asyncio.gather(*pending)
    return 0


def _rates(value: str) -> list[float]:
    rates = [float(part) for part in value.split(",") if part.strip()]
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"expected positive rates separated by commas, got {value!r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Send the workload at fixed arrival rates (open model).")
    parser.add_argument("--url", required=True, help="base URL of the platform, on loopback")
    parser.add_argument("--accounts", required=True, help="JSON file of seeded accounts with tokens")
    parser.add_argument("--rates", type=_rates, required=True, help="arrival rates in requests per second, e.g. 5,10,20")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds each rate is held (default 20)")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson",
                        help="Poisson arrivals or evenly spaced ones (default poisson)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as failed")
    parser.add_argument("--connections", type=int, default=200, help="maximum open connections (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the arrivals and the request mix")
    parser.add_argument("--results", required=True, help="CSV file for one row per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host = httpx.URL(args.url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url must point at loopback (127.0.0.1, localhost or ::1), got host {host!r}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
