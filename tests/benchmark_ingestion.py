"""Ingestion throughput against the model's raw encoding speed: `python -m tests.benchmark_ingestion`.

It starts the web server and one RQ worker on the embedded services under var/bench, uploads a
1 MB document of real text (standard-library documentation) and times it from upload to ready.
In the same process it encodes the same chunks with the model directly, so the ratio between
the two compares like with like on a noisy machine. With `--rounds N` it measures both N times,
alternating which goes first, and prints each round's ratio and their median.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA_DIR = ROOT / "var" / "bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_document(size: int) -> tuple[str, str]:
    from server.demo.corpus import render_stdlib_docs

    docs = render_stdlib_docs(min_modules=1, only=["argparse", "asyncio", "collections", "csv", "email", "json",
                                                    "logging", "os", "pathlib", "subprocess", "typing", "unittest"])
    text = "\n\n".join(doc.text for doc in docs)
    while len(text.encode()) < size:
        text += "\n\n" + text
    data = text.encode()[:size].decode("utf-8", errors="ignore")
    return "Standard library excerpts (1 MB benchmark)", data


def measure_raw_encoding(title: str, text: str, settings) -> tuple[int, float]:
    from jobs import embedding
    from jobs.chunking import split_into_chunks

    chunks = split_into_chunks(text, embedding.count_tokens, settings.chunk_tokens, settings.chunk_overlap_tokens)
    inputs = [f"{title}\n\n{chunk.content}" for chunk in chunks]
    embedding.encode(inputs[:8])
    started = time.perf_counter()
    batch = settings.embedding_batch_size
    for start in tqdm(range(0, len(inputs), batch), desc="raw encode", unit="batch"):
        embedding.encode(inputs[start:start + batch], batch_size=batch)
    return len(inputs), time.perf_counter() - started


def start(name: str, args: list[str], env: dict) -> subprocess.Popen:
    log_dir = BENCH_DATA_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=open(log_dir / f"{name}.log", "ab"),
                            stderr=subprocess.STDOUT)


def wait_for_worker(http: httpx.Client) -> None:
    """Wait until the web server is ready and a worker is live, so no start-up is timed as ingestion."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            ready = http.get("/health/ready")
            if ready.status_code == 200 and ready.json()["checks"]["queue"]["workers"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("no live worker within 300 s; see var/bench/logs")


def measure_ingestion(http: httpx.Client, headers: dict, title: str, text: str) -> tuple[int, float]:
    """Upload `text` and return its chunk count and the seconds from upload to `ready`."""
    started = time.perf_counter()
    response = http.post("/documents", headers=headers,
                         files={"file": ("bench.txt", text.encode(), "text/plain")}, data={"title": title})
    response.raise_for_status()
    document_id = response.json()["document"]["id"]
    with tqdm(total=1.0, desc="ingestion", bar_format="{l_bar}{bar}| {n:.2f}/{total:.0f}") as bar:
        while True:
            document = http.get(f"/documents/{document_id}", headers=headers).json()
            job = http.get(f"/jobs/{response.json()['job_id']}", headers=headers).json()
            bar.n = job.get("progress", 0.0)
            bar.refresh()
            if document["status"] in ("ready", "failed"):
                break
            time.sleep(0.5)
    seconds = time.perf_counter() - started
    if document["status"] != "ready":
        raise SystemExit(f"ingestion failed: {document['error']}")
    return document["chunk_count"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1_000_000, help="document size in bytes (default 1 MB)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of raw encoding and ingestion, in alternating order (default 1)")
    args = parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.services import export_service_urls
    from server.settings import get_settings

    settings = get_settings()
    export_service_urls(settings)
    port = _free_port()
    env = {**os.environ, "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1", "BACKEND_WORKERS": "2",
           "RATE_LIMIT_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    processes = [start("web", ["-m", "server"], env), start("worker", ["-m", "jobs.worker"], env)]
    try:
        title, text = build_document(args.bytes)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            wait_for_worker(http)
            email = f"bench-{time.time_ns()}@example.com"
            token = http.post("/auth/register", json={"tenant": "Bench", "email": email,
                                                      "password": "benchmark-password"}).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            ratios = []
            for round_number in range(1, args.rounds + 1):
                # The order alternates, so a machine that speeds up or slows down during the run
                # favours raw encoding in one round and ingestion in the next.
                # Each round's upload differs by its first line, so it is not a duplicate.
                upload = f"Round {round_number} of {time.time_ns()}.\n\n{text}"
                steps = ["raw", "ingestion"] if round_number % 2 else ["ingestion", "raw"]
                rates = {}
                for step in steps:
                    if step == "raw":
                        chunk_count, seconds = measure_raw_encoding(title, text, settings)
                    else:
                        chunk_count, seconds = measure_ingestion(http, headers, title, upload)
                    rates[step] = chunk_count / seconds
                    print(f"round {round_number} {step}: {chunk_count} chunks in {seconds:.1f} s "
                          f"= {rates[step]:.1f} chunks/s")
                ratios.append(rates["ingestion"] / rates["raw"])
                print(f"round {round_number} ingestion / raw encoding: {ratios[-1]:.2f}")
        print(f"document: {len(text.encode()):,} bytes; ingestion / raw encoding per round: "
              + ", ".join(f"{ratio:.2f}" for ratio in ratios) + f"; median {statistics.median(ratios):.2f}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
