"""A statsd receiver for the duration of a load test, and the parser of the server's HTTP metrics.

The server sends, per request, a counter `{prefix}.http.requests.{route}.{METHOD}.{status_class}`
and a timing in milliseconds `{prefix}.http.duration.{route}.{METHOD}.{status_class}`. The route
is the URI template without its leading slash, with `/` turned into `_` and `<param>` into the
parameter's name (`documents_document_id`, `health_ready`, `search`). Lines follow the statsd
text protocol, `name:value|type` with an optional `|@rate`, several per datagram.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

MAX_DATAGRAM_BYTES = 65535


class StatsdReceiver:
    """Listens on a UDP port of 127.0.0.1 in a thread and appends `receive_time<TAB>line` to a file.

    Use as a context manager; `port` is chosen by the system unless given.
    """

    def __init__(self, path: str | Path, port: int = 0, host: str = "127.0.0.1"):
        self.path = Path(path)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((host, port))
        self.socket.settimeout(0.2)
        self.host, self.port = self.socket.getsockname()
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-receiver", daemon=True)

    def __enter__(self) -> "StatsdReceiver":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()

    def _receive(self) -> None:
        with open(self.path, "a", encoding="utf-8") as output:
            while not self._stop.is_set():
                try:
                    datagram = self.socket.recv(MAX_DATAGRAM_BYTES)
                except socket.timeout:
                    continue
                except OSError as error:
                    logger.warning("statsd receive failed error=%s", error)
                    return
                received = time.time()
                for line in datagram.decode("utf-8", errors="replace").splitlines():
                    if line.strip():
                        output.write(f"{received:.6f}\t{line.strip()}\n")
                        self.lines += 1
                output.flush()


def parse_line(line: str) -> dict | None:
    """Parse one statsd line into {"metric", "value", "type", "rate"}; None when malformed."""
    name, colon, rest = line.partition(":")
    if not colon or not name:
        return None
    fields = rest.split("|")
    if len(fields) < 2:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    rate = 1.0
    for extra in fields[2:]:
        if extra.startswith("@"):
            try:
                rate = float(extra[1:])
            except ValueError:
                return None
    return {"metric": name, "value": value, "type": fields[1], "rate": rate}


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read a receiver's file into a frame of time, metric, value, type and rate; empty if none."""
    rows = []
    path = Path(path)
    if path.exists():
        for text in path.read_text(encoding="utf-8").splitlines():
            received, tab, line = text.partition("\t")
            parsed = parse_line(line) if tab else None
            if parsed is not None:
                rows.append({"time": float(received), **parsed})
    return pd.DataFrame(rows, columns=["time", "metric", "value", "type", "rate"])


def http_metrics(metrics: pd.DataFrame, prefix: str = "ragplatform") -> pd.DataFrame:
    """Select the HTTP timings and counters and split their names into route, method and status class.

    Returns columns time, series ("duration" or "requests"), route, method, status_class, value
    and rate.
    """
    columns = ["time", "series", "route", "method", "status_class", "value", "rate"]
    if metrics.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    head = f"{prefix}.http."
    for row in metrics.itertuples(index=False):
        if not row.metric.startswith(head):
            continue
        series, _, rest = row.metric[len(head):].partition(".")
        # The route may contain dots only if a template did, so split from the right.
        parts = rest.rsplit(".", 2)
        if series not in ("duration", "requests") or len(parts) != 3:
            continue
        route, method, status_class = parts
        rows.append((row.time, series, route, method, status_class, row.value, row.rate))
    return pd.DataFrame(rows, columns=columns)
