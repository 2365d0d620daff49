"""The capacity notebooks' analysis code: USL fit, step measures, Little's law, statsd, sizing."""

from __future__ import annotations

import math
import random
import socket
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from notebooks.capacity import measures, planning, statsd, usl

# SPEC SDM91 on a 16-CPU Sun SPARCcenter 2000 (October 1994): simulated users against script
# executions per hour. From N. J. Gunther, "Guerrilla Capacity Planning" (Springer, 2007), as
# shipped in the `usl` R package by S. Moeding (dataset specsdm91), whose nonlinear fit gives
# sigma = 0.0277, kappa = 0.000104 and peak.scalability 97 (its tests/peak-scalability.Rout.save).
SPECSDM91_LOAD = [1, 18, 36, 72, 108, 144, 216]
SPECSDM91_THROUGHPUT = [64.9, 995.9, 1652.4, 1853.2, 1828.9, 1775.0, 1702.2]

# Ray tracer (BRL-CAD) on an SGI Origin 2000 with 64 R12000 processors: processors against
# ray-geometry intersections per second, same book and R package (dataset raytracer). The
# package's tests/confint.Rout.save fits sigma 0.0578, kappa 0 and lambda 21.85.
RAYTRACER_PROCESSORS = [1, 4, 8, 12, 16, 20, 24, 28, 32, 48, 64]
RAYTRACER_THROUGHPUT = [20, 78, 130, 170, 190, 200, 210, 230, 260, 280, 310]


def test_usl_fit_specsdm91_coefficients():
    fit = usl.fit_usl(SPECSDM91_LOAD, SPECSDM91_THROUGHPUT, bootstrap_samples=0)
    assert fit.converged
    assert fit.sigma == pytest.approx(0.0277, rel=0.02)
    assert fit.kappa == pytest.approx(0.000104, rel=0.02)


def test_usl_fit_specsdm91_peak():
    fit = usl.fit_usl(SPECSDM91_LOAD, SPECSDM91_THROUGHPUT, bootstrap_samples=0)
    assert round(fit.peak_n) == 97


def test_usl_fit_raytracer_has_no_coherency():
    fit = usl.fit_usl(RAYTRACER_PROCESSORS, RAYTRACER_THROUGHPUT, bootstrap_samples=0)
    assert fit.sigma == pytest.approx(0.0578, rel=0.02)
    assert fit.kappa == pytest.approx(0.0, abs=1e-6)
    assert fit.lam == pytest.approx(21.85, rel=0.01)


def test_usl_fit_recovers_synthetic_coefficients():
    n = np.array([1, 2, 4, 8, 16, 32, 64])
    x = usl.usl_throughput(n, 0.05, 0.002, 10.0)
    fit = usl.fit_usl(n, x, bootstrap_samples=0)
    assert fit.sigma == pytest.approx(0.05, rel=1e-3)
    assert fit.kappa == pytest.approx(0.002, rel=1e-3)
    assert fit.peak_n == pytest.approx(math.sqrt(0.95 / 0.002), rel=1e-3)


def test_usl_peak_interval_contains_estimate():
    fit = usl.fit_usl(SPECSDM91_LOAD, SPECSDM91_THROUGHPUT, bootstrap_samples=200)
    low, high = fit.peak_n_interval
    assert low <= fit.peak_n <= high
    assert math.isfinite(fit.peak_n_stderr)


def test_usl_fit_rejects_two_levels():
    with pytest.raises(ValueError, match="at least 3 distinct"):
        usl.fit_usl([1, 1, 2], [10, 11, 19])


def test_usl_peak_infinite_without_coherency():
    assert usl.peak_concurrency(0.1, 0.0) == math.inf


def _requests(phase: int, target: float, latencies_ms: list[float], start: float, spacing: float,
              ok: list[bool] | None = None) -> pd.DataFrame:
    count = len(latencies_ms)
    due = start + spacing * np.arange(count)
    return pd.DataFrame({
        "model": "closed", "phase": phase, "target": target, "name": "GET /documents", "kind": "documents",
        "scheduled": due, "start": due, "end": due + np.array(latencies_ms) / 1000.0,
        "latency_ms": latencies_ms, "service_ms": latencies_ms, "status": 200,
        "ok": ok if ok is not None else [True] * count, "error": "",
    })


def test_step_summary_percentiles_and_throughput():
    requests = _requests(0, 10, list(range(1, 102)), start=1000.0, spacing=0.1)
    summary = measures.step_summary(requests, warmup_seconds=0)
    row = summary.iloc[0]
    assert row["throughput"] == pytest.approx(101 / 10.0)
    assert row["p50_ms"] == pytest.approx(51.0)
    assert row["p99_ms"] == pytest.approx(100.0)


def test_step_summary_drops_warmup():
    requests = _requests(0, 10, [1000.0] * 10 + [10.0] * 90, start=0.0, spacing=0.1)
    summary = measures.step_summary(requests, warmup_seconds=1.0)
    assert summary.iloc[0]["p99_ms"] == pytest.approx(10.0)


def test_step_summary_error_rate():
    requests = _requests(0, 5, [10.0] * 100, start=0.0, spacing=0.1, ok=[True] * 98 + [False] * 2)
    summary = measures.step_summary(requests, warmup_seconds=0)
    assert summary.iloc[0]["error_rate"] == pytest.approx(0.02)


def test_littles_law_closed_matches_consistent_run():
    # 20 users, 0.5 s response, 2 s think time: each cycles every 2.5 s, so X = 8 per second.
    summary = pd.DataFrame({"phase": [0], "target": [20.0], "throughput": [8.0], "mean_ms": [500.0]})
    check = measures.littles_law_closed(summary, think_time_s=2.0)
    assert check.iloc[0]["ratio"] == pytest.approx(1.0)


def test_littles_law_open_sampled_matches_product():
    # Arrivals every 0.1 s, each in the system 0.35 s: 3.5 in flight on average.
    requests = _requests(0, 10, [350.0] * 400, start=0.0, spacing=0.1)
    requests["model"] = "open"
    summary = measures.step_summary(requests, warmup_seconds=0)
    check = measures.littles_law_open(requests, summary, warmup_seconds=0)
    assert check.iloc[0]["sampled_l"] == pytest.approx(3.5, rel=0.03)
    assert check.iloc[0]["ratio"] == pytest.approx(1.0, rel=0.03)


def test_slo_picks_largest_meeting_target():
    summary = pd.DataFrame({"target": [10.0, 20.0, 40.0, 80.0], "p95_ms": [50.0, 120.0, 280.0, 900.0],
                            "error_rate": [0.0, 0.0, 0.0005, 0.0]})
    assert measures.max_target_meeting_slo(summary) == 40.0


def test_slo_rejects_errors_over_limit():
    summary = pd.DataFrame({"target": [10.0, 20.0], "p95_ms": [50.0, 60.0], "error_rate": [0.0, 0.002]})
    assert measures.max_target_meeting_slo(summary) == 10.0


def test_slo_none_when_nothing_meets():
    summary = pd.DataFrame({"target": [10.0], "p95_ms": [500.0], "error_rate": [0.0]})
    assert measures.max_target_meeting_slo(summary) is None


def test_statsd_parse_timing_with_rate():
    assert statsd.parse_line("ragplatform.http.duration.search.POST.2xx:12.5|ms|@0.5") == {
        "metric": "ragplatform.http.duration.search.POST.2xx", "value": 12.5, "type": "ms", "rate": 0.5}


def test_statsd_parse_rejects_malformed():
    assert statsd.parse_line("no-colon-here") is None
    assert statsd.parse_line("name:abc|c") is None
    assert statsd.parse_line("name:1") is None


def test_statsd_http_metrics_split_route():
    metrics = pd.DataFrame([
        {"time": 1.0, "metric": "ragplatform.http.duration.documents_document_id.GET.2xx", "value": 3.0,
         "type": "ms", "rate": 1.0},
        {"time": 1.0, "metric": "ragplatform.http.requests.health_ready.GET.5xx", "value": 1.0, "type": "c",
         "rate": 1.0},
        {"time": 1.0, "metric": "ragplatform.db.pool.size", "value": 4.0, "type": "g", "rate": 1.0},
    ])
    http = statsd.http_metrics(metrics)
    assert list(http["route"]) == ["documents_document_id", "health_ready"]
    assert list(http["series"]) == ["duration", "requests"]
    assert list(http["status_class"]) == ["2xx", "5xx"]


def test_statsd_receiver_writes_datagram_lines(tmp_path):
    path = tmp_path / "statsd.txt"
    with statsd.StatsdReceiver(path) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"ragplatform.http.requests.search.POST.2xx:1|c\nragplatform.x:2|ms", ("127.0.0.1", receiver.port))
        deadline = time.monotonic() + 5
        while receiver.lines < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    frame = statsd.read_metrics(path)
    assert list(frame["metric"]) == ["ragplatform.http.requests.search.POST.2xx", "ragplatform.x"]


def test_server_vs_client_empty_without_metrics():
    requests = _requests(0, 10, [10.0] * 50, start=0.0, spacing=0.1)
    empty = statsd.http_metrics(statsd.read_metrics("/nonexistent/statsd.txt"))
    assert measures.server_vs_client(requests, empty).empty


def test_server_vs_client_queueing_gap():
    requests = _requests(0, 10, [50.0] * 50, start=100.0, spacing=0.1)
    http = pd.DataFrame({"time": 100.0 + 0.1 * np.arange(50), "series": "duration", "route": "documents",
                         "method": "GET", "status_class": "2xx", "value": 20.0, "rate": 1.0})
    comparison = measures.server_vs_client(requests, http, warmup_seconds=0)
    assert comparison.iloc[0]["queueing_p50_ms"] == pytest.approx(30.0)


def _measured(**changes) -> planning.MeasuredCapacity:
    values = {"users_per_instance": 100, "workers_per_instance": 2, "requests_per_user_per_s": 0.45,
              "mean_server_time_s": 0.05, "max_connections": 100, "reserved_connections": 10}
    values.update(changes)
    return planning.MeasuredCapacity(**values)


def test_recommend_instances_cover_users_with_headroom():
    row = planning.recommend(500, _measured(), headroom=0.7)
    assert row["instances"] == 8  # 500 / (100 * 0.7) = 7.1


def test_recommend_flags_connection_budget():
    row = planning.recommend(5000, _measured(max_connections=100))
    assert row["postgres_connections"] > 100
    assert "PgBouncer" in row["postgres"]


def test_recommend_rejects_no_capacity():
    with pytest.raises(ValueError, match="no measured step met the SLO"):
        planning.recommend(100, _measured(users_per_instance=0))


def test_step_summary_window_ends_at_next_phase():
    # Phase 0 runs 0-10 s with its last request due at 5 s; phase 1 starts at 10 s.
    first = _requests(0, 2, [10.0] * 6, start=0.0, spacing=1.0)
    second = _requests(1, 4, [10.0] * 10, start=10.0, spacing=1.0)
    summary = measures.step_summary(pd.concat([first, second], ignore_index=True), warmup_seconds=0)
    assert summary.iloc[0]["throughput"] == pytest.approx(6 / 10.0)


def test_interpolated_slo_between_steps():
    summary = pd.DataFrame({"target": [10.0, 20.0, 40.0], "p95_ms": [100.0, 200.0, 400.0],
                            "error_rate": [0.0, 0.0, 0.0]})
    assert measures.interpolated_slo_target(summary) == pytest.approx(30.0)


def test_interpolated_slo_stops_at_error_step():
    summary = pd.DataFrame({"target": [10.0, 20.0], "p95_ms": [100.0, 200.0], "error_rate": [0.0, 0.01]})
    assert measures.interpolated_slo_target(summary) == 10.0


def test_uniform_arrivals_evenly_spaced():
    from notebooks.loadtest.openloop import arrival_times

    times = arrival_times(4.0, 2.0, "uniform", random.Random(1))
    assert times == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_poisson_arrivals_match_rate():
    from notebooks.loadtest.openloop import arrival_times

    times = arrival_times(20.0, 500.0, "poisson", random.Random(1))
    assert len(times) == pytest.approx(10_000, rel=0.03)
    assert all(0 <= due < 500.0 for due in times)
    assert times == sorted(times)


def test_workload_mix_ratio():
    from notebooks.loadtest.workload import Workload

    workload = Workload(seed=3)
    kinds = Counter(workload.request().kind for _ in range(14_000))
    assert kinds["documents"] / kinds["health"] == pytest.approx(3.0, rel=0.1)
    assert kinds["search"] / kinds["chat"] == pytest.approx(2.0, rel=0.1)
    assert kinds["chat"] / kinds["health"] == pytest.approx(1.0, rel=0.1)


def test_workload_questions_skewed():
    from notebooks.loadtest.workload import QUESTIONS, Workload

    workload = Workload(seed=3)
    asked = Counter(workload.question() for _ in range(10_000))
    assert asked[QUESTIONS[0]] > 5 * asked[QUESTIONS[-1]]
    assert asked[QUESTIONS[0]] / 10_000 == pytest.approx(0.287, abs=0.02)


def test_workload_rejects_unknown_kind():
    from notebooks.loadtest.workload import Workload

    with pytest.raises(ValueError, match="unknown request kind"):
        Workload(seed=1).request("upload")


def test_plan_accounts_reuses_registered():
    from notebooks.capacity.seeding import plan_accounts

    existing = [{"tenant": "Load test tenant 1", "email": "a@example.com", "password": "x" * 16, "role": "admin",
                 "registered": True}]
    accounts = plan_accounts(2, 2, existing)
    assert accounts[0] is existing[0]
    assert len(accounts) == 4
    assert [account["role"] for account in accounts] == ["admin", "member", "admin", "member"]
    assert not accounts[1]["registered"]
