"""Closed-model workload for Locust: users with think time, stepped up in stages.

Run by the load-test notebook as a subprocess (importing Locust into a Jupyter kernel hangs,
because its gevent monkey-patching fights the kernel's event loop). Configuration comes from
the environment:

- LOADTEST_ACCOUNTS: JSON file of seeded accounts with tokens; Locust user i uses account
  i modulo their number, so the users are spread across the tenants.
- LOADTEST_STAGES: JSON list of [users, seconds]. Each stage runs that many users.
- LOADTEST_RESULTS: CSV file that receives one row per request (see workload.RESULT_COLUMNS).
- LOADTEST_SEED: seed of the question and mix choices.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from locust import LoadTestShape, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402
from locust.user.wait_time import between  # noqa: E402

from workload import RESULT_COLUMNS, Workload, load_accounts  # noqa: E402

STAGES = [(int(users), float(seconds)) for users, seconds in json.loads(os.environ.get("LOADTEST_STAGES", "[[1, 10]]"))]
# Users are started this many per second at each stage, so a stage reaches its count within a
# second or two and the analysis can leave the ramp out.
SPAWN_RATE = 50.0
REQUEST_TIMEOUT_SECONDS = 30.0

_accounts = load_accounts()
_account_numbers = itertools.count()
_workload = Workload(seed=int(os.environ.get("LOADTEST_SEED", "1")))
_results_file = open(os.environ["LOADTEST_RESULTS"], "w", newline="")
_results = csv.writer(_results_file)
_results.writerow(RESULT_COLUMNS)
_test_started = time.time()
_run_id = f"{int(_test_started)}"


def stage_at(elapsed: float) -> int | None:
    """Return the index of the stage running `elapsed` seconds after the start, None after the last."""
    end = 0.0
    for index, (_, seconds) in enumerate(STAGES):
        end += seconds
        if elapsed < end:
            return index
    return None


@events.test_start.add_listener
def _remember_start(environment, **kwargs) -> None:
    global _test_started
    _test_started = time.time()


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response, context, exception,
            start_time=None, **kwargs) -> None:
    end = time.time()
    start = start_time if start_time else end - response_time / 1000.0
    phase = stage_at(start - _test_started)
    status = getattr(response, "status_code", 0) or 0
    ok = exception is None and 200 <= status < 400
    # A response marked failed carries Locust's CatchResponseError, so the status says more.
    error = ""
    if status >= 400:
        error = f"HTTP {status}"
    elif exception is not None:
        error = type(exception).__name__
    users = STAGES[phase][0] if phase is not None else 0
    _results.writerow(("closed", -1 if phase is None else phase, users, name, (context or {}).get("kind", ""),
                       f"{start:.6f}", f"{start:.6f}", f"{end:.6f}", f"{response_time:.3f}", f"{response_time:.3f}",
                       status, int(ok), error))


@events.quitting.add_listener
def _close_results(environment, **kwargs) -> None:
    _results_file.flush()
    _results_file.close()


class PlatformUser(FastHttpUser):
    """A signed-in user of one tenant: lists documents, searches, chats and checks health."""

    wait_time = between(1, 3)
    network_timeout = REQUEST_TIMEOUT_SECONDS
    connection_timeout = 10.0

    def on_start(self) -> None:
        number = next(_account_numbers)
        account = _accounts[number % len(_accounts)]
        self.headers = {"Authorization": f"Bearer {account['token']}"}
        # A session per user and run, so chat history does not grow from one run to the next.
        self.session_id = f"load-{_run_id}-{number}"

    def _send(self, kind: str) -> None:
        request = _workload.request(kind, session_id=self.session_id)
        with self.client.request(request.method, request.path, name=request.name, json=request.body,
                                 headers=self.headers, context={"kind": kind}, catch_response=True) as response:
            if response.status_code >= 400 or response.status_code == 0:
                response.failure(f"HTTP {response.status_code}")

    @task(3)
    def list_documents(self) -> None:
        self._send("documents")

    @task(2)
    def search(self) -> None:
        self._send("search")

    @task(1)
    def chat(self) -> None:
        self._send("chat")

    @task(1)
    def health(self) -> None:
        self._send("health")


class SteppedLoad(LoadTestShape):
    """Holds each stage's user count for its duration, then stops the test."""

    def tick(self):
        phase = stage_at(self.get_run_time())
        if phase is None:
            return None
        return STAGES[phase][0], SPAWN_RATE
