"""Variant comparison that holds up on a noisy machine: interleaved runs and ratios to neighbours.

A variant is the platform with one scalability feature switched off. Background load drifts
over minutes, so a variant run is compared with the baseline runs right before and after it,
not with one baseline run made earlier. The schedule puts a baseline run between every two
variant runs, and repeats that for several rounds, so each ratio has a spread across rounds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RATIO_COLUMNS = ["variant", "round", "sequence", "target", "metric", "ratio", "baselines", "adjacent"]
SUMMARY_COLUMNS = ["variant", "target", "metric", "rounds", "median", "min", "max"]


def interleaved_schedule(variants: list[str], rounds: int, baseline: str = "baseline") -> list[tuple[int, str]]:
    """Return the (round, configuration) runs in order: baseline, variant, baseline, variant, ...

    Every variant run has a baseline run on each side. The baseline run that ends a round also
    starts the next one. Even rounds take the variants in reverse order, so no variant always
    runs at the same distance from the start, where the machine may be warming up.
    """
    if rounds < 0:
        raise ValueError(f"variant_rounds must be 0 or more, got {rounds}")
    if baseline in variants:
        raise ValueError(f"the baseline {baseline!r} must not be listed among the variants; remove it from them")
    if not variants or rounds == 0:
        return []

    schedule = [(1, baseline)]
    for round_number in range(1, rounds + 1):
        ordered = variants if round_number % 2 == 1 else list(reversed(variants))
        for variant in ordered:
            schedule.append((round_number, variant))
            schedule.append((round_number, baseline))
    return schedule


def _geometric_mean(values) -> float:
    """Return the geometric mean of the positive finite values, or NaN when there is none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.log(values).mean())) if values.size else math.nan


def _ratio(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return math.nan
    return value / reference


def _runs(steps: pd.DataFrame) -> pd.DataFrame:
    return steps[["sequence", "round", "variant"]].drop_duplicates("sequence").sort_values("sequence")


def adjacent_ratios(steps: pd.DataFrame, metrics: list[str], baseline: str = "baseline") -> pd.DataFrame:
    """Divide each variant run's metric by that of the baseline runs next to it, per user count.

    `steps` has one row per run and step: sequence (the order the runs were made in), round,
    variant, target (the user count) and the metric columns. The reference is the geometric mean
    of the nearest baseline run before and the nearest one after, or of the one that exists.
    `adjacent` is True when those baseline runs directly precede and follow the variant run. It
    is False for most runs made before interleaving, which had one baseline run and then every variant.
    """
    runs = _runs(steps)
    baseline_sequences = sorted(runs.loc[runs["variant"] == baseline, "sequence"])
    rows = []
    for run in runs[runs["variant"] != baseline].itertuples(index=False):
        before = [sequence for sequence in baseline_sequences if sequence < run.sequence][-1:]
        after = [sequence for sequence in baseline_sequences if sequence > run.sequence][:1]
        neighbours = before + after
        if not neighbours:
            continue
        adjacent = all(abs(sequence - run.sequence) == 1 for sequence in neighbours)
        run_steps = steps[steps["sequence"] == run.sequence]
        for step in run_steps.itertuples(index=False):
            reference = steps[steps["sequence"].isin(neighbours) & (steps["target"] == step.target)]
            for metric in metrics:
                rows.append({
                    "variant": run.variant, "round": run.round, "sequence": run.sequence,
                    "target": step.target, "metric": metric,
                    "ratio": _ratio(float(getattr(step, metric)), _geometric_mean(reference[metric])),
                    "baselines": tuple(neighbours), "adjacent": adjacent,
                })
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def baseline_drift(steps: pd.DataFrame, metrics: list[str], baseline: str = "baseline") -> pd.DataFrame:
    """Divide each baseline run's metric by the previous baseline run's, per user count.

    Nothing changed between two baseline runs, so the spread of these ratios is the noise a
    variant's ratio must stand out from. Rows are labelled with the variant "<baseline> drift".
    `adjacent` is True when at most one run (the variant run) lies between the two.
    """
    runs = _runs(steps)
    baseline_runs = runs[runs["variant"] == baseline]
    rows = []
    for previous, current in zip(baseline_runs.itertuples(index=False), baseline_runs.iloc[1:].itertuples(index=False)):
        previous_steps = steps[steps["sequence"] == previous.sequence].set_index("target")
        for step in steps[steps["sequence"] == current.sequence].itertuples(index=False):
            if step.target not in previous_steps.index:
                continue
            for metric in metrics:
                rows.append({
                    "variant": f"{baseline} drift", "round": current.round, "sequence": current.sequence,
                    "target": step.target, "metric": metric,
                    "ratio": _ratio(float(getattr(step, metric)), float(previous_steps.loc[step.target, metric])),
                    "baselines": (previous.sequence,), "adjacent": current.sequence - previous.sequence <= 2,
                })
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def summarize_ratios(ratios: pd.DataFrame) -> pd.DataFrame:
    """Summarize the ratios per variant, user count and metric: their number, median, min and max.

    With two rounds the median is the mean of the two and min to max is the whole spread. NaN
    ratios (a step with no successful request, or no baseline step at that user count) are left
    out and not counted.
    """
    finite = ratios[np.isfinite(ratios["ratio"].astype(float))]
    if finite.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = finite.groupby(["variant", "target", "metric"], sort=True)["ratio"]
    summary = grouped.agg(rounds="count", median="median", min="min", max="max").reset_index()
    return summary[SUMMARY_COLUMNS]
