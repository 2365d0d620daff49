"""The variant comparison of the capacity notebooks: interleaved schedule and ratios to neighbours."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from notebooks.capacity import runs, variants


def steps_frame(runs_and_values: list[tuple[str, int, dict]], metric: str = "ok_throughput") -> pd.DataFrame:
    """Build a steps table: one (variant, round, {target: value}) per run, in sequence order."""
    rows = []
    for sequence, (variant, round_number, values) in enumerate(runs_and_values):
        for target, value in values.items():
            rows.append({"sequence": sequence, "round": round_number, "variant": variant,
                         "target": target, metric: value})
    return pd.DataFrame(rows)


def ratio_of(ratios: pd.DataFrame, **where) -> float:
    selected = ratios
    for key, value in where.items():
        selected = selected[selected[key] == value]
    assert len(selected) == 1, f"expected one ratio for {where}, got {len(selected)}"
    return float(selected["ratio"].iloc[0])


def test_schedule_puts_baseline_around_every_variant():
    schedule = variants.interleaved_schedule(["cache_off", "one_worker"], rounds=2)
    names = [name for _, name in schedule]
    for index, name in enumerate(names):
        if name != "baseline":
            assert names[index - 1] == "baseline"
            assert names[index + 1] == "baseline"


def test_schedule_runs_each_variant_once_per_round():
    schedule = variants.interleaved_schedule(["cache_off", "limiter_off", "one_worker"], rounds=3)
    for round_number in (1, 2, 3):
        in_round = [name for number, name in schedule if number == round_number and name != "baseline"]
        assert sorted(in_round) == ["cache_off", "limiter_off", "one_worker"]


def test_schedule_reverses_even_rounds():
    schedule = variants.interleaved_schedule(["a", "b", "c"], rounds=2)
    assert [name for number, name in schedule if number == 2 and name != "baseline"] == ["c", "b", "a"]


def test_schedule_shares_baseline_between_rounds():
    schedule = variants.interleaved_schedule(["a", "b"], rounds=2)
    assert schedule == [(1, "baseline"), (1, "a"), (1, "baseline"), (1, "b"), (1, "baseline"),
                        (2, "b"), (2, "baseline"), (2, "a"), (2, "baseline")]


def test_schedule_empty_without_variants_or_rounds():
    assert variants.interleaved_schedule([], rounds=2) == []
    assert variants.interleaved_schedule(["a"], rounds=0) == []


def test_schedule_rejects_negative_rounds():
    with pytest.raises(ValueError, match="variant_rounds must be 0 or more, got -1"):
        variants.interleaved_schedule(["a"], rounds=-1)


def test_schedule_rejects_baseline_among_variants():
    with pytest.raises(ValueError, match="must not be listed among the variants"):
        variants.interleaved_schedule(["baseline", "a"], rounds=1)


def test_ratio_uses_geometric_mean_of_both_neighbours():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("cache_off", 1, {25: 6.0}), ("baseline", 1, {25: 40.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert ratio_of(ratios, variant="cache_off", target=25) == pytest.approx(6.0 / 20.0)
    assert ratios["adjacent"].tolist() == [True]
    assert ratios["baselines"].tolist() == [(0, 2)]


def test_ratio_per_user_count():
    steps = steps_frame([("baseline", 1, {25: 10.0, 100: 40.0}), ("one_worker", 1, {25: 10.0, 100: 20.0}),
                         ("baseline", 1, {25: 10.0, 100: 40.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert ratio_of(ratios, target=25) == pytest.approx(1.0)
    assert ratio_of(ratios, target=100) == pytest.approx(0.5)


def test_ratio_per_round_uses_its_own_neighbours():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 5.0}), ("baseline", 1, {25: 10.0}),
                         ("a", 2, {25: 30.0}), ("baseline", 2, {25: 40.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert ratio_of(ratios, round=1) == pytest.approx(0.5)
    assert ratio_of(ratios, round=2) == pytest.approx(30.0 / 20.0)


def test_ratio_of_several_metrics():
    steps = pd.DataFrame([
        {"sequence": 0, "round": 1, "variant": "baseline", "target": 25, "ok_throughput": 10.0, "p95_ms": 50.0},
        {"sequence": 1, "round": 1, "variant": "a", "target": 25, "ok_throughput": 8.0, "p95_ms": 200.0},
        {"sequence": 2, "round": 1, "variant": "baseline", "target": 25, "ok_throughput": 10.0, "p95_ms": 50.0},
    ])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput", "p95_ms"])
    assert ratio_of(ratios, metric="ok_throughput") == pytest.approx(0.8)
    assert ratio_of(ratios, metric="p95_ms") == pytest.approx(4.0)


def test_ratio_of_older_run_not_adjacent():
    """A run saved before interleaving: one baseline run first, then every variant once."""
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("cache_off", 1, {25: 5.0}), ("limiter_off", 1, {25: 12.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert ratio_of(ratios, variant="cache_off") == pytest.approx(0.5)
    assert ratio_of(ratios, variant="limiter_off") == pytest.approx(1.2)
    assert ratios.set_index("variant")["adjacent"].to_dict() == {"cache_off": True, "limiter_off": False}


def test_ratio_skips_failed_baseline_run():
    """A baseline run whose platform failed to start has no steps, so the next baseline run out is used instead."""
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 10.0}), ("baseline", 1, {}),
                         ("b", 1, {25: 10.0}), ("baseline", 1, {25: 10.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert ratios.set_index("variant")["baselines"].to_dict() == {"a": (0, 4), "b": (0, 4)}
    assert not ratios["adjacent"].any()


def test_ratio_nan_when_baseline_is_zero():
    steps = steps_frame([("baseline", 1, {25: 0.0}), ("a", 1, {25: 5.0}), ("baseline", 1, {25: 0.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert math.isnan(ratio_of(ratios, variant="a"))


def test_ratio_nan_when_baseline_lacks_user_count():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 5.0, 50: 9.0}), ("baseline", 1, {25: 10.0})])
    ratios = variants.adjacent_ratios(steps, ["ok_throughput"])
    assert math.isnan(ratio_of(ratios, target=50))


def test_ratio_empty_without_baseline_run():
    steps = steps_frame([("a", 1, {25: 5.0})])
    assert variants.adjacent_ratios(steps, ["ok_throughput"]).empty


def test_drift_divides_each_baseline_by_previous():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 5.0}), ("baseline", 1, {25: 12.0}),
                         ("a", 2, {25: 5.0}), ("baseline", 2, {25: 9.0})])
    drift = variants.baseline_drift(steps, ["ok_throughput"])
    assert drift["variant"].unique().tolist() == ["baseline drift"]
    assert drift["ratio"].tolist() == pytest.approx([1.2, 0.75])
    assert drift["baselines"].tolist() == [(0,), (2,)]


def test_drift_adjacent_across_one_variant_run():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 5.0}), ("baseline", 1, {25: 12.0}),
                         ("b", 1, {25: 5.0}), ("baseline", 1, {}), ("a", 2, {25: 5.0}), ("baseline", 2, {25: 9.0})])
    drift = variants.baseline_drift(steps, ["ok_throughput"])
    assert drift["adjacent"].tolist() == [True, False]


def test_drift_empty_with_one_baseline_run():
    steps = steps_frame([("baseline", 1, {25: 10.0}), ("a", 1, {25: 5.0})])
    assert variants.baseline_drift(steps, ["ok_throughput"]).empty


def test_summary_median_and_spread_across_rounds():
    ratios = pd.DataFrame({"variant": "a", "round": [1, 2, 3], "sequence": [1, 3, 5], "target": 25,
                           "metric": "ok_throughput", "ratio": [0.9, 0.5, 0.6], "baselines": None, "adjacent": True})
    summary = variants.summarize_ratios(ratios).iloc[0]
    assert summary["rounds"] == 3
    assert summary["median"] == pytest.approx(0.6)
    assert summary["min"] == pytest.approx(0.5)
    assert summary["max"] == pytest.approx(0.9)


def test_summary_groups_by_variant_target_metric():
    ratios = pd.DataFrame({"variant": ["a", "a", "b", "a"], "round": 1, "sequence": [1, 1, 3, 1],
                           "target": [25, 100, 25, 25], "metric": ["x", "x", "x", "y"],
                           "ratio": [1.0, 2.0, 3.0, 4.0], "baselines": None, "adjacent": True})
    summary = variants.summarize_ratios(ratios).set_index(["variant", "target", "metric"])["median"]
    assert summary.to_dict() == {("a", 25, "x"): 1.0, ("a", 25, "y"): 4.0, ("a", 100, "x"): 2.0, ("b", 25, "x"): 3.0}


def test_summary_leaves_out_nan_ratios():
    ratios = pd.DataFrame({"variant": "a", "round": [1, 2], "sequence": [1, 3], "target": 25,
                           "metric": "p95_ms", "ratio": [math.nan, 2.0], "baselines": None, "adjacent": True})
    summary = variants.summarize_ratios(ratios).iloc[0]
    assert summary["rounds"] == 1
    assert summary["median"] == pytest.approx(2.0)


def write_run(folder, **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"machine": {"load_average_1m": 1.5}, **config}))


def test_comparison_runs_in_sequence_order(tmp_path):
    write_run(tmp_path / "baseline", variant="baseline")
    write_run(tmp_path / "comparison" / "10-baseline", variant="baseline", round=2, sequence=10)
    write_run(tmp_path / "comparison" / "09-a", variant="a", round=2, sequence=9)
    write_run(tmp_path / "comparison" / "00-baseline", variant="baseline", round=1, sequence=0)
    found = runs.list_comparison_runs(tmp_path)
    assert [(run["sequence"], run["variant"], run["round"]) for run in found] == [
        (0, "baseline", 1), (9, "a", 2), (10, "baseline", 2)]
    assert found[0]["load_average_1m"] == 1.5


def test_comparison_runs_of_older_layout(tmp_path):
    write_run(tmp_path / "limiter_off", variant="limiter_off", written_at="2026-12-05T00:57:31+00:00")
    write_run(tmp_path / "cache_off", variant="cache_off", written_at="2026-12-05T00:55:38+00:00")
    write_run(tmp_path / "baseline", variant="baseline", written_at="2026-12-05T00:51:47+00:00")
    found = runs.list_comparison_runs(tmp_path)
    assert [(run["sequence"], run["variant"], run["round"]) for run in found] == [
        (0, "baseline", 1), (1, "cache_off", 1), (2, "limiter_off", 1)]
