"""Request throughput with the rate limiter on and off: `python -m tests.benchmark_rate_limit`.

It starts two web servers on the embedded services under var/bench, one with the limiter on
(limits high enough never to reject) and one with RATE_LIMIT_ENABLED=false, and sends GET
/users/me to both in alternating rounds, so load from other processes hits both alike. It prints
requests per second for each and the ratio. Server logs go to var/test/logs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import _free_port, _start, _stop, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA_DIR = ROOT / "var" / "bench"


def register(base_url: str) -> dict:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    response = httpx.post(f"{base_url}/auth/register", timeout=60,
                          json={"tenant": "Rate limit benchmark", "email": email, "password": "benchmark-password"})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def send_round(base_url: str, headers: dict, requests: int, concurrency: int) -> float:
    """Send `requests` GET /users/me with `concurrency` in flight; return the seconds taken."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        async def send_until_empty() -> None:
            while not queue.empty():
                queue.get_nowait()
                response = await client.get("/users/me")
                if response.status_code != 200:
                    raise SystemExit(f"GET /users/me on {base_url} returned {response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(send_until_empty() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per server (default 4000)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per server (default 4)")
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="BACKEND_WORKERS of each server (default 2)")
    args = parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.services import export_service_urls
    from server.settings import get_settings

    export_service_urls(get_settings())
    common = {**os.environ, "BACKEND_HOST": "127.0.0.1", "BACKEND_WORKERS": str(args.workers),
              "ENVIRONMENT": "test", "JWT_SECRET": "bench-secret-" + uuid.uuid4().hex, "PYTHONPATH": str(ROOT),
              "RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_PER_HOUR": "100000000"}
    servers = {}
    for label, enabled in (("limiter on", "true"), ("limiter off", "false")):
        port = _free_port()
        process = _start(f"bench-{label.replace(' ', '-')}", ["-m", "server"],
                         {**common, "BACKEND_PORT": str(port), "RATE_LIMIT_ENABLED": enabled})
        servers[label] = (f"http://127.0.0.1:{port}", process)
    try:
        for base_url, process in servers.values():
            wait_until_ready(base_url, process)
        headers = {label: register(base_url) for label, (base_url, _) in servers.items()}
        for label, (base_url, _) in servers.items():
            asyncio.run(send_round(base_url, headers[label], 200, args.concurrency))

        per_round = args.requests // args.rounds
        seconds = {label: 0.0 for label in servers}
        for _ in range(args.rounds):
            for label, (base_url, _) in servers.items():
                seconds[label] += asyncio.run(send_round(base_url, headers[label], per_round, args.concurrency))

        rates = {label: per_round * args.rounds / seconds[label] for label in servers}
        for label, rate in rates.items():
            print(f"{label}: {per_round * args.rounds} requests in {seconds[label]:.2f} s = {rate:.0f} requests/s")
        print(f"limiter on / limiter off: {rates['limiter on'] / rates['limiter off']:.2f} "
              f"({args.workers} workers per server, concurrency {args.concurrency}, {os.cpu_count()} CPUs)")
    finally:
        for _, process in servers.values():
            _stop(process)


if __name__ == "__main__":
    main()
