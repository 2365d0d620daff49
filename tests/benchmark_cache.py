"""Search latency with a cache hit against a miss: `python -m tests.benchmark_cache`.

It starts a one-worker web server and an RQ worker on the embedded services under var/bench,
ingests a small document of standard-library documentation, then for each of `--queries`
distinct queries sends three POST /search requests one after the other:

- cold: a query never seen, so its embedding and its results are computed;
- invalidated: the same query after the tenant's generation was bumped (as a document change
  does), so the results are computed again from the cached embedding;
- hit: the same query again, served from the cache.

It prints the median and 95th percentile client-side latency of each and the ratios to the cold
miss. Server logs go to var/bench/logs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import httpx
import redis

from tests.benchmark_ingestion import BENCH_DATA_DIR, ROOT, build_document, start
from tests.conftest import _free_port, wait_until_ready

QUESTIONS = ["parse command-line options", "read a CSV file", "run a subprocess and capture output",
             "join filesystem paths", "log to a file with a format", "decode JSON from a string",
             "create a named tuple", "schedule coroutines concurrently", "write a unit test with setUp"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ingest(http: httpx.Client, headers: dict, size: int) -> int:
    title, text = build_document(size)
    response = http.post("/documents", headers=headers, json={"title": title, "text": text})
    response.raise_for_status()
    document_id = response.json()["document"]["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        document = http.get(f"/documents/{document_id}", headers=headers).json()
        if document["status"] in ("ready", "failed"):
            if document["status"] == "failed":
                raise SystemExit(f"ingestion failed: {document['error']}")
            return document["chunk_count"]
        time.sleep(0.5)
    raise SystemExit("the document was not ready within 300 s")


def timed_search(http: httpx.Client, headers: dict, query: str, expected_cache: str) -> float:
    started = time.perf_counter()
    response = http.post("/search", headers=headers, json={"query": query})
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.headers.get("X-Cache") != expected_cache:
        raise SystemExit(f"POST /search returned {response.status_code} X-Cache={response.headers.get('X-Cache')}, "
                         f"expected 200 and {expected_cache}: {response.text[:200]}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100, help="distinct queries (default 100)")
    parser.add_argument("--bytes", type=int, default=20_000, help="size of the ingested document (default 20 KB)")
    args = parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.cache import generation_key
    from server.services import export_service_urls
    from server.settings import get_settings

    _, redis_url = export_service_urls(get_settings())
    port = _free_port()
    env = {**os.environ, "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1", "BACKEND_WORKERS": "1",
           "ENVIRONMENT": "test", "JWT_SECRET": "bench-secret-" + uuid.uuid4().hex, "PYTHONPATH": str(ROOT),
           "RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_PER_HOUR": "100000000"}
    processes = [start("web-cache", ["-m", "server"], env), start("worker-cache", ["-m", "jobs.worker"], env)]
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, processes[0])
        with httpx.Client(base_url=base_url, timeout=60) as http, redis.Redis.from_url(redis_url) as client:
            registered = http.post("/auth/register", json={"tenant": "Cache benchmark", "password": "benchmark-password",
                                                           "email": f"bench-{uuid.uuid4().hex[:12]}@example.com"})
            registered.raise_for_status()
            tenant_id = registered.json()["tenant_id"]
            headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
            chunks = ingest(http, headers, args.bytes)
            # One search loads the model's first batch path in the web worker before timing starts.
            timed_search(http, headers, f"warm up {uuid.uuid4().hex}", "miss")

            latencies = {"cold miss": [], "miss, embedding cached": [], "hit": []}
            for index in range(args.queries):
                query = f"{QUESTIONS[index % len(QUESTIONS)]} {index}"
                latencies["cold miss"].append(timed_search(http, headers, query, "miss"))
                client.incr(generation_key(tenant_id))
                latencies["miss, embedding cached"].append(timed_search(http, headers, query, "miss"))
                latencies["hit"].append(timed_search(http, headers, query, "hit"))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)

    cold = statistics.median(latencies["cold miss"])
    print(f"POST /search, hybrid, limit 10, tenant of {chunks} chunks, {args.queries} queries, one request at a time, "
          f"1 web worker, {os.cpu_count()} CPUs")
    for label, values in latencies.items():
        median = statistics.median(values)
        print(f"{label}: median {median:.1f} ms, p95 {percentile(values, 0.95):.1f} ms, "
              f"median / cold miss {median / cold:.2f}")


if __name__ == "__main__":
    main()
