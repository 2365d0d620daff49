"""Scale-out demonstration: two web servers and two RQ workers on one PostgreSQL and one Redis.

    python notebooks/scaleout.py [--requests 400] [--per-minute 40]

It starts the embedded PostgreSQL and Redis under var/loadtest, two `python -m server`
instances on different loopback ports and two `python -m jobs.worker` processes, all with the
same DATABASE_URL and REDIS_URL, which is all that makes them one deployment. Then it

1. checks that each instance reports both RQ workers in GET /health/ready (they register in
   the shared Redis);
2. spreads the workload's requests, as the load test's seeded users, round-robin over both
   instances (what a load balancer does) and prints each instance's share, statuses and latency;
3. sends one user's requests alternately to both instances with RATE_LIMIT_PER_MINUTE set low,
   and shows that the two instances together grant about one bucket's worth, not one each:
   the token buckets live in Redis, so the limit is global.

It prints what it measured and stops every process it started. The request counts are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notebooks.capacity.platform import HIGH_RATE_LIMIT_PER_HOUR, Platform, stop_services  # noqa: E402
from notebooks.capacity.seeding import seed  # noqa: E402
from notebooks.loadtest.workload import Workload, load_accounts  # noqa: E402


def register(url: str) -> dict:
    email = f"scaleout-{uuid.uuid4().hex[:12]}@example.com"
    response = httpx.post(f"{url}/auth/register", timeout=60,
                          json={"tenant": f"Scale-out {email}", "email": email, "password": uuid.uuid4().hex})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def show_workers(urls: list[str]) -> None:
    for url in urls:
        checks = httpx.get(f"{url}/health/ready", timeout=10).json()["checks"]
        print(f"{url}: database {checks['database']['status']}, redis {checks['redis']['status']}, "
              f"RQ workers seen {checks['queue'].get('workers')}")


async def spread_load(urls: list[str], accounts: list[dict], requests: int, concurrency: int) -> None:
    """Send `requests` workload requests round-robin over the instances; print each one's share.

    The requests rotate over the seeded users, so with enough users no one reaches the low
    per-user limit of this demonstration.
    """
    workload = Workload(seed=7)
    statuses = {url: Counter() for url in urls}
    latencies = {url: [] for url in urls}
    numbers = iter(range(requests))

    async with httpx.AsyncClient(timeout=30) as client:
        async def send_until_done() -> None:
            for number in numbers:
                url = urls[number % len(urls)]
                account = accounts[number % len(accounts)]
                request = workload.request(session_id=f"scaleout-{number % len(accounts)}")
                started = time.perf_counter()
                try:
                    response = await client.request(request.method, url + request.path, json=request.body,
                                                    headers={"Authorization": f"Bearer {account['token']}"})
                    statuses[url][response.status_code] += 1
                except httpx.HTTPError as error:
                    statuses[url][type(error).__name__] += 1
                latencies[url].append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(send_until_done() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    print(f"{requests} requests in {elapsed:.1f} s ({requests / elapsed:.1f} per second), {concurrency} in flight")
    for url in urls:
        values = sorted(latencies[url])
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"  {url}: {len(values)} requests, statuses {dict(statuses[url])}, "
              f"median {statistics.median(values):.0f} ms, p95 {p95:.0f} ms")


def show_global_limit(urls: list[str], headers: dict, per_minute: int) -> None:
    """Send one user's requests alternately to both instances until both return 429."""
    granted = Counter()
    limited = Counter()
    with httpx.Client(timeout=30) as client:
        for number in range(per_minute * 3):
            url = urls[number % len(urls)]
            response = client.get(f"{url}/users/me", headers=headers)
            if response.status_code == 200:
                granted[url] += 1
            elif response.status_code == 429:
                limited[url] += 1
            if sum(limited.values()) >= 2 * len(urls):
                break
    total = sum(granted.values())
    print(f"RATE_LIMIT_PER_MINUTE={per_minute}: the instances granted {total} requests together "
          f"({', '.join(f'{url}: {granted[url]}' for url in urls)}), then answered 429 "
          f"({', '.join(f'{url}: {limited[url]}' for url in urls)}).")
    verdict = "global" if total <= per_minute + 2 else "NOT global"
    print(f"The bucket is {verdict}: per-instance buckets would have granted about {per_minute * len(urls)}.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="workload requests spread over both instances")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--per-minute", type=int, default=40, help="RATE_LIMIT_PER_MINUTE of the instances")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the load is spread over (default 4)")
    parser.add_argument("--users-per-tenant", type=int, default=10, help="users per tenant (default 10)")
    parser.add_argument("--stop-services", action="store_true", help="stop the embedded PostgreSQL and Redis at the end")
    args = parser.parse_args()

    config = {"BACKEND_WORKERS": 1, "RATE_LIMIT_PER_MINUTE": args.per_minute, "RATE_LIMIT_PER_HOUR": HIGH_RATE_LIMIT_PER_HOUR}
    platform = Platform(config, instances=2, rq_workers=2)
    try:
        platform.start()
        print(f"PostgreSQL and Redis shared by all: {platform.database_url.split('@')[-1]}, "
              f"{platform.redis_url.split('@')[-1]}")
        show_workers(platform.urls)
        accounts = load_accounts(seed(platform.urls[0], platform.data_dir, args.tenants, args.users_per_tenant))
        print("\nLoad spread round-robin over both instances:")
        asyncio.run(spread_load(platform.urls, accounts, args.requests, args.concurrency))
        print("\nOne user's requests alternated over both instances:")
        show_global_limit(platform.urls, register(platform.urls[1]), args.per_minute)
    finally:
        platform.stop()
        if args.stop_services:
            stop_services(platform.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
