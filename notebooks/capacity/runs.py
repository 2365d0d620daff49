"""Run folders and the load-generator subprocesses.

A run folder (notebooks/runs/<run>/<variant>/) contains what one configuration produced:

- config.json: the platform configuration, the stages and rates, the machine and the time;
- closed.csv and open.csv: one row per request from the stepped (Locust) and open-loop runs;
- locust_stats.csv, locust_stats_history.csv, ...: Locust's own CSV reports;
- statsd.txt: the statsd lines the server sent during the run, with their receive times.

The variant comparison's runs are under notebooks/runs/<run>/comparison/<sequence>-<variant>/,
with the same files and the round and sequence in config.json. Runs saved before the comparison
was interleaved have their variants next to the baseline instead, one run each.
"""

from __future__ import annotations

import json
import os
import platform as host_platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1]
RUNS_DIR = NOTEBOOKS_DIR / "runs"
LOCUSTFILE = NOTEBOOKS_DIR / "loadtest" / "locustfile.py"
OPENLOOP = NOTEBOOKS_DIR / "loadtest" / "openloop.py"
# Seconds a generator may run past its planned duration (start-up, in-flight requests) before
# it is stopped.
OVERRUN_SECONDS = 60
COMPARISON_FOLDER = "comparison"


def machine_description() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"cpus": os.cpu_count(), "load_average_1m": load[0], "python": sys.version.split()[0],
            "platform": host_platform.platform()}


def write_config(folder: Path, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {**config, "machine": machine_description(), "written_at": datetime.now(timezone.utc).isoformat()}
    (folder / "config.json").write_text(json.dumps(record, indent=2, default=str))


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def list_variants(run_folder: Path) -> list[Path]:
    """Return the variant folders of a run, the baseline first, then by name."""
    variants = sorted(path for path in Path(run_folder).iterdir() if (path / "config.json").exists())
    return sorted(variants, key=lambda path: (path.name != "baseline", path.name))


def list_comparison_runs(run_folder: Path, baseline: str = "baseline") -> list[dict]:
    """Return the variant comparison's runs in the order they were made.

    Each is a dict of folder, variant, round, sequence and the 1-minute load average at its
    start. A run folder without comparison/ is of the older layout: its variant folders are taken
    in the order their config.json was written, all in round 1.
    """
    comparison = Path(run_folder) / COMPARISON_FOLDER
    if comparison.is_dir():
        folders = [path for path in comparison.iterdir() if (path / "config.json").exists()]
        configs = [read_config(path) for path in folders]
        order = [config["sequence"] for config in configs]
    else:
        folders = list_variants(run_folder)
        configs = [read_config(path) for path in folders]
        order = [(path.name != baseline, config.get("written_at", "")) for path, config in zip(folders, configs)]

    ranked = sorted(zip(order, folders, configs), key=lambda item: item[0])
    return [{"folder": folder, "variant": config.get("variant", folder.name), "round": config.get("round", 1),
             "sequence": config.get("sequence", position),
             "load_average_1m": config.get("machine", {}).get("load_average_1m")}
            for position, (_, folder, config) in enumerate(ranked)]


def _follow(process: subprocess.Popen, seconds: float, description: str) -> int:
    """Show a progress bar over the planned seconds while the process runs; return its exit code."""
    started = time.monotonic()
    with tqdm(total=round(seconds), desc=description, unit="s") as bar:
        while process.poll() is None:
            elapsed = time.monotonic() - started
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()
            if elapsed > seconds + OVERRUN_SECONDS:
                process.terminate()
                process.wait(timeout=30)
                break
            time.sleep(0.5)
        bar.n = bar.total
        bar.refresh()
    return process.returncode


def run_locust(url: str, folder: Path, accounts: Path, stages: list[tuple[int, float]], seed: int = 1) -> int:
    """Run the stepped closed-model load in a Locust subprocess; return Locust's exit code.

    Locust exits with 1 when any request failed, which is a result, not an error of the run.
    """
    duration = sum(seconds for _, seconds in stages)
    env = {**os.environ, "LOADTEST_ACCOUNTS": str(accounts), "LOADTEST_STAGES": json.dumps(stages),
           "LOADTEST_RESULTS": str(folder / "closed.csv"), "LOADTEST_SEED": str(seed)}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
               "--csv", str(folder / "locust"), "--csv-full-history", "--only-summary",
               "--stop-timeout", "10", "--loglevel", "WARNING"]
    with open(folder / "locust.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=NOTEBOOKS_DIR)
        return _follow(process, duration + 5, "Stepped load")


def run_open_loop(url: str, folder: Path, accounts: Path, rates: list[float], seconds: float,
                  arrivals: str = "poisson", seed: int = 1) -> int:
    """Run the open-model load at each rate for `seconds` in a subprocess; return its exit code."""
    command = [sys.executable, str(OPENLOOP), "--url", url, "--accounts", str(accounts),
               "--rates", ",".join(f"{rate:g}" for rate in rates), "--seconds", str(seconds),
               "--arrivals", arrivals, "--seed", str(seed), "--results", str(folder / "open.csv")]
    with open(folder / "openloop.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=NOTEBOOKS_DIR)
        return _follow(process, seconds * len(rates), "Open-loop load")
