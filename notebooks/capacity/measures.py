"""Per-step measures of a load test: throughput, latency percentiles, errors, Little's law, the SLO.

Input is the per-request table that both generators write (see loadtest/workload.py): one row
with the phase (a stage of users, or an arrival rate), the due, start and end times, the latency
from the due time and the service time from the send time, the status and whether it succeeded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

# Seconds left out at the start of each phase, while users are still being started and the
# server's caches and pools fill.
DEFAULT_WARMUP_SECONDS = 3.0
PERCENTILES = (50, 95, 99)

# Mean think time of the closed workload: Locust's between(1, 3) waits uniformly 1 to 3 s.
CLOSED_THINK_TIME_SECONDS = 2.0


def read_requests(path: str | Path) -> pd.DataFrame:
    """Read one generator's CSV; an empty frame with the columns when the file is missing."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["model", "phase", "target", "name", "kind", "scheduled", "start", "end",
                                     "latency_ms", "service_ms", "status", "ok", "error"])
    frame = pd.read_csv(path, keep_default_na=False)
    frame["error"] = frame["error"].astype(str)
    return frame


def percentile(values, q: float) -> float:
    """Return the q-th percentile with linear interpolation, or NaN for no values."""
    values = np.asarray(values, dtype=float)
    return float(np.percentile(values, q)) if values.size else math.nan


def phase_bounds(requests: pd.DataFrame, warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Return the steady window of each phase.

    It runs from `warmup_seconds` after the phase's first request was due to the time the next
    phase's first request was due (for the last phase, to when its own last one was due).

    Returns columns phase, begin and end (epoch seconds), indexed by phase.
    """
    requests = requests[requests["phase"] >= 0]
    firsts = requests.groupby("phase")["scheduled"].min().sort_index()
    lasts = requests.groupby("phase")["scheduled"].max().sort_index()
    ends = firsts.shift(-1).fillna(lasts)
    bounds = pd.DataFrame({"begin": firsts + warmup_seconds, "end": ends})
    bounds.index.name = "phase"
    return bounds


def steady_requests(requests: pd.DataFrame, warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Keep the requests due within their phase's steady window (see phase_bounds)."""
    requests = requests[requests["phase"] >= 0]
    if requests.empty:
        return requests
    bounds = phase_bounds(requests, warmup_seconds)
    begin = requests["phase"].map(bounds["begin"])
    end = requests["phase"].map(bounds["end"])
    return requests[(requests["scheduled"] >= begin) & (requests["scheduled"] <= end)]


def step_summary(requests: pd.DataFrame, warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """One row per phase: target, window, requests, throughput, error rate, latency percentiles.

    Throughput counts the requests due in the phase's steady window (see phase_bounds) per
    second of that window, successful or not. `ok_throughput` counts only the successful ones.
    """
    steady = steady_requests(requests, warmup_seconds)
    if steady.empty:
        return pd.DataFrame()
    bounds = phase_bounds(requests, warmup_seconds)
    rows = []
    for phase, group in steady.groupby("phase"):
        window = float(bounds.loc[phase, "end"] - bounds.loc[phase, "begin"])
        if window <= 0:
            continue
        ok = group["ok"].astype(bool)
        row = {
            "phase": int(phase),
            "target": float(group["target"].iloc[0]),
            "window_s": window,
            "requests": len(group),
            "throughput": len(group) / window,
            "ok_throughput": int(ok.sum()) / window,
            "error_rate": 1.0 - ok.mean(),
            "mean_ms": float(group["latency_ms"].mean()),
            "mean_service_ms": float(group["service_ms"].mean()),
        }
        for q in PERCENTILES:
            row[f"p{q}_ms"] = percentile(group["latency_ms"], q)
        rows.append(row)
    return pd.DataFrame(rows)


def route_summary(requests: pd.DataFrame, warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Summarize each phase per request kind: count, error rate and latency percentiles."""
    steady = steady_requests(requests, warmup_seconds)
    rows = []
    for (phase, kind), group in steady.groupby(["phase", "kind"]):
        row = {"phase": int(phase), "target": float(group["target"].iloc[0]), "kind": kind,
               "requests": len(group), "error_rate": 1.0 - group["ok"].astype(bool).mean()}
        for q in PERCENTILES:
            row[f"p{q}_ms"] = percentile(group["latency_ms"], q)
        rows.append(row)
    return pd.DataFrame(rows)


def littles_law_closed(summary: pd.DataFrame, think_time_s: float = CLOSED_THINK_TIME_SECONDS) -> pd.DataFrame:
    """Check N = X * (R + Z) for each stage of a closed run.

    N is the number of users the stage ran, X its throughput, R the mean response time and Z
    the mean think time. A ratio well below 1 means the users did not cycle as fast as they
    should: the generator itself was short of CPU, or requests were lost.
    """
    frame = summary[["phase", "target", "throughput"]].copy()
    frame["response_s"] = summary["mean_ms"] / 1000.0
    frame["think_s"] = think_time_s
    frame["littles_n"] = frame["throughput"] * (frame["response_s"] + frame["think_s"])
    frame["ratio"] = frame["littles_n"] / frame["target"]
    return frame


def littles_law_open(requests: pd.DataFrame, summary: pd.DataFrame,
                     warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Check L = lambda * W for each rate of an open run, with L measured by sampling.

    L is the time-average number of requests in the system, sampled every 50 ms from the due and
    end times. lambda is the arrival rate and W the mean time in the system (from the due time).
    Agreement means the window was steady; a ratio above 1 means the queue was still growing.
    """
    steady = steady_requests(requests, warmup_seconds)
    rows = []
    bounds = phase_bounds(requests, warmup_seconds) if not steady.empty else None
    for phase, group in steady.groupby("phase"):
        begin, end = float(bounds.loc[phase, "begin"]), float(bounds.loc[phase, "end"])
        if end <= begin:
            continue
        samples = np.arange(begin, end, 0.05)
        due = np.sort(group["scheduled"].to_numpy(float))
        done = np.sort(group["end"].to_numpy(float))
        in_system = np.searchsorted(due, samples, side="right") - np.searchsorted(done, samples, side="right")
        rate = summary.loc[summary["phase"] == phase, "throughput"]
        arrival_rate = float(rate.iloc[0]) if len(rate) else math.nan
        wait = float(group["latency_ms"].mean()) / 1000.0
        rows.append({"phase": int(phase), "target": float(group["target"].iloc[0]), "arrival_rate": arrival_rate,
                     "mean_time_s": wait, "littles_l": arrival_rate * wait,
                     "sampled_l": float(in_system.mean()), "ratio": float(in_system.mean()) / (arrival_rate * wait)
                     if arrival_rate * wait > 0 else math.nan})
    return pd.DataFrame(rows)


def max_target_meeting_slo(summary: pd.DataFrame, p95_ms: float = 300.0, max_error_rate: float = 0.001) -> float | None:
    """Return the largest target (users or rate) whose p95 and error rate meet the SLO, or None."""
    meeting = summary[(summary["p95_ms"] < p95_ms) & (summary["error_rate"] < max_error_rate)]
    return float(meeting["target"].max()) if not meeting.empty else None


def interpolated_slo_target(summary: pd.DataFrame, p95_ms: float = 300.0,
                            max_error_rate: float = 0.001) -> float | None:
    """Estimate where p95 crosses `p95_ms`, linearly between the last step meeting the SLO and the next.

    Returns the largest measured target when every step meets the SLO or when the next step
    fails on errors rather than latency, and None when no step meets it. An estimate between
    two measurements, not a measurement.
    """
    ordered = summary.sort_values("target").reset_index(drop=True)
    meets = (ordered["p95_ms"] < p95_ms) & (ordered["error_rate"] < max_error_rate)
    if not meets.any():
        return None
    last = int(meets[meets].index.max())
    if last == len(ordered) - 1 or ordered.loc[last + 1, "error_rate"] >= max_error_rate:
        return float(ordered.loc[last, "target"])
    low, high = ordered.loc[last], ordered.loc[last + 1]
    fraction = (p95_ms - low["p95_ms"]) / (high["p95_ms"] - low["p95_ms"])
    return float(low["target"] + fraction * (high["target"] - low["target"]))


def phase_windows(requests: pd.DataFrame, warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Return the steady time window of each phase: phase, target, begin and end (epoch seconds)."""
    steady = steady_requests(requests, warmup_seconds)
    if steady.empty:
        return pd.DataFrame(columns=["phase", "target", "begin", "end"])
    grouped = steady.groupby("phase")
    return pd.DataFrame({"target": grouped["target"].first(), "begin": grouped["scheduled"].min(),
                         "end": grouped["end"].max()}).reset_index()


def server_vs_client(requests: pd.DataFrame, http: pd.DataFrame,
                     warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> pd.DataFrame:
    """Per phase and route: the server's timing percentiles against the client's; the gap is queueing.

    `http` is statsd.http_metrics(...). Server timings are matched to a phase by receive time
    and to a request kind by route. Returns an empty frame when the server sent no timings.
    """
    columns = ["phase", "target", "kind", "client_p50_ms", "server_p50_ms", "client_p95_ms", "server_p95_ms",
               "queueing_p50_ms", "server_requests"]
    durations = http[http["series"] == "duration"] if not http.empty else http
    if durations.empty:
        return pd.DataFrame(columns=columns)
    durations = durations.assign(kind=durations["route"].str.rstrip("_"))
    steady = steady_requests(requests, warmup_seconds)
    rows = []
    for window in phase_windows(requests, warmup_seconds).itertuples(index=False):
        in_window = durations[(durations["time"] >= window.begin) & (durations["time"] <= window.end)]
        client_phase = steady[steady["phase"] == window.phase]
        for kind, client in client_phase.groupby("kind"):
            server = in_window.loc[in_window["kind"] == kind, "value"]
            if server.empty:
                continue
            client_p50 = percentile(client["latency_ms"], 50)
            server_p50 = percentile(server, 50)
            rows.append({"phase": int(window.phase), "target": float(window.target), "kind": kind,
                         "client_p50_ms": client_p50, "server_p50_ms": server_p50,
                         "client_p95_ms": percentile(client["latency_ms"], 95), "server_p95_ms": percentile(server, 95),
                         "queueing_p50_ms": client_p50 - server_p50, "server_requests": len(server)})
    return pd.DataFrame(rows, columns=columns)
