"""CPU cost of a request's metrics: `python -m tests.benchmark_metrics`.

A simulated request records what a search records on the server: the request counter and
timing, three query timings, a cache lookup and two limiter decisions. The benchmark times
many such requests in one process with metrics disabled, enabled and batched (as the server
sends them), and enabled without a batch (one datagram per metric). The datagrams go to a UDP
socket on 127.0.0.1 that a thread drains and counts. It prints microseconds per request and
datagrams received per request for each case, and the ratio of each case's time to the
batched one's.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

from server import metrics

METRICS_PER_REQUEST = 8


def record_one_request(sink: metrics.Metrics) -> None:
    sink.increment("http.requests.search.POST.2xx")
    sink.timing("http.duration.search.POST.2xx", 12.5)
    for name in ("search.vector_hits", "search.keyword_hits", "users.get_tenant_settings"):
        sink.timing(f"db.query.{name}", 1.25)
    sink.increment("cache.search.miss")
    sink.increment("ratelimit.user.allowed")
    sink.increment("ratelimit.tenant.allowed")


def time_requests(sink: metrics.Metrics, requests: int, batched: bool) -> float:
    """Return the seconds taken to record `requests` requests."""
    started = time.perf_counter()
    for _ in range(requests):
        if batched:
            with sink.batch():
                record_one_request(sink)
        else:
            record_one_request(sink)
    return time.perf_counter() - started


class Receiver:
    """A UDP socket on 127.0.0.1 whose thread reads and counts datagrams until stopped."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.datagrams = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.socket.recv(65535)
            except socket.timeout:
                continue
            self.datagrams += 1

    def settle(self) -> int:
        """Wait until no datagram has arrived for 0.3 s, then return the count so far."""
        while True:
            before = self.datagrams
            time.sleep(0.3)
            if self.datagrams == before:
                return before

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="simulated requests per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per case (default 10)")
    args = parser.parse_args()

    receiver = Receiver()
    enabled = metrics.Metrics(metrics.NonBlockingStatsClient("127.0.0.1", receiver.port, "bench"))
    cases = {"disabled": (metrics.Metrics(), True), "enabled, batched": (enabled, True),
             "enabled, unbatched": (enabled, False)}
    seconds = dict.fromkeys(cases, 0.0)
    datagrams = dict.fromkeys(cases, 0)
    try:
        for _ in range(args.rounds):
            for name, (sink, batched) in cases.items():
                before = receiver.settle()
                seconds[name] += time_requests(sink, args.requests, batched)
                datagrams[name] += receiver.settle() - before
    finally:
        receiver.close()

    count = args.requests * args.rounds
    print(f"{count} simulated requests per case, {METRICS_PER_REQUEST} metrics each")
    for name in cases:
        ratio = seconds[name] / seconds["enabled, batched"]
        print(f"  {name:20s} {seconds[name] / count * 1e6:7.2f} us per request  "
              f"{datagrams[name] / count:5.2f} datagrams per request  ({ratio:.2f}x batched time)")


if __name__ == "__main__":
    main()
