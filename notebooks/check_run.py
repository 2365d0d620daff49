"""Checks of a notebook run: `pytest notebooks/check_run.py` after both notebooks ran.

`tox -e notebooks` runs it on the run folder named by CAPACITY_RUN (default "tox"). It checks
that the load test wrote its raw results and configuration, that the analysis wrote its figures
and summary, and that the USL fit converged. When the run has a variant comparison, it checks
that a baseline run surrounds every variant run and that the analysis gave each variant and
user count a ratio to them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

RUN_FOLDER = Path(__file__).resolve().parent / "runs" / os.environ.get("CAPACITY_RUN", "tox")


@pytest.fixture(scope="module")
def analysis() -> dict:
    path = RUN_FOLDER / "analysis.json"
    assert path.exists(), f"{path} is missing; run analysis.ipynb on this run"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def comparison_configs() -> list[dict]:
    folders = (RUN_FOLDER / "comparison").glob("*/config.json")
    configs = sorted((json.loads(path.read_text()) for path in folders), key=lambda config: config["sequence"])
    if not configs:
        pytest.skip("this run has no variant comparison")
    return configs


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_config_written():
    config = json.loads((RUN_FOLDER / "baseline" / "config.json").read_text())
    assert config["stages"]
    assert config["platform"]["RATE_LIMIT_ENABLED"] == "true"


def test_closed_results_cover_every_stage():
    config = json.loads((RUN_FOLDER / "baseline" / "config.json").read_text())
    phases = {row["phase"] for row in _rows(RUN_FOLDER / "baseline" / "closed.csv")}
    assert {str(index) for index in range(len(config["stages"]))} <= phases


def test_closed_results_mix_all_kinds():
    kinds = {row["kind"] for row in _rows(RUN_FOLDER / "baseline" / "closed.csv")}
    assert kinds == {"documents", "search", "chat", "health"}


def test_open_results_written():
    rows = _rows(RUN_FOLDER / "baseline" / "open.csv")
    assert rows
    assert all(float(row["latency_ms"]) >= float(row["service_ms"]) - 1.0 for row in rows)


def test_locust_reports_written():
    assert (RUN_FOLDER / "baseline" / "locust_stats.csv").exists()
    assert (RUN_FOLDER / "baseline" / "locust_stats_history.csv").exists()


def test_figures_written(analysis):
    for name in ("throughput_latency", "usl_fit", "open_loop"):
        path = RUN_FOLDER / "figures" / f"{name}.png"
        assert path.exists(), f"{path} is missing"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_usl_fit_converged(analysis):
    assert analysis["usl"]["converged"] is True
    assert analysis["usl"]["lam"] > 0


def test_steps_have_throughput(analysis):
    assert all(step["throughput"] > 0 for step in analysis["closed_steps"])


def test_comparison_runs_alternate_with_baseline(comparison_configs):
    names = [config["variant"] for config in comparison_configs]
    assert [config["sequence"] for config in comparison_configs] == list(range(len(names)))
    assert names[0] == names[-1] == "baseline"
    assert "baseline" not in names[1::2]
    assert set(names[::2]) == {"baseline"}


def test_comparison_runs_record_round_and_load(comparison_configs):
    for config in comparison_configs:
        assert config["round"] >= 1
        assert config["machine"]["load_average_1m"] is not None


def test_comparison_runs_have_closed_results(comparison_configs):
    for config in comparison_configs:
        folder = RUN_FOLDER / "comparison" / f"{config['sequence']:02d}-{config['variant']}"
        phases = {row["phase"] for row in _rows(folder / "closed.csv")}
        assert {str(index) for index in range(len(config["stages"]))} <= phases, folder


def test_variant_ratios_cover_every_step(analysis, comparison_configs):
    covered = {(row["variant"], row["target"], row["metric"]) for row in analysis["variant_ratios"]}
    for config in comparison_configs:
        if config["variant"] == "baseline":
            continue
        for users, _ in config["stages"]:
            for metric in ("ok_throughput", "p95_ms"):
                assert (config["variant"], users, metric) in covered


def test_variant_ratio_median_within_spread(analysis, comparison_configs):
    assert analysis["variant_ratios"]
    for row in analysis["variant_ratios"]:
        assert row["rounds"] >= 1
        assert row["min"] <= row["median"] <= row["max"], row


def test_variant_ratio_figure_written(analysis, comparison_configs):
    path = RUN_FOLDER / "figures" / "variant_ratios.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
