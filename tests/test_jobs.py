"""Background jobs against real worker processes: retries, kill -9, the sweep, expiry, caps, health.

The module runs its own web server and workers on a separate Redis database, so it can start,
kill and stop workers without touching the session's shared worker. Its settings are short
(retry delays, TTLs, heartbeat and sweep intervals) to keep each test within seconds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from datetime import datetime, timezone

import asyncpg
import asyncio
import pytest
import redis as redis_client
from rq import Queue
from rq.job import Job

from jobs.fairness import is_pending, pending_key
from jobs.ingest import FAULT_KEY_PREFIX
from tests.conftest import Api, _start, _stop, running_server

JOBS_REDIS_DB = 5
INGESTION_CAP = 3
JOB_TTL_SECONDS = 20
MONITORING_INTERVAL_SECONDS = 2
SWEEP_INTERVAL_SECONDS = 2
# A guard against a hung test, not a measurement: the bound a kill -9 is repaired in is far lower.
REPAIR_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def jobs_env(server_env, service_urls) -> dict:
    redis_url = service_urls["redis_url"].rsplit("/", 1)[0] + f"/{JOBS_REDIS_DB}"
    return {
        **server_env,
        "REDIS_URL": redis_url,
        "INGESTION_MAX_QUEUED_PER_TENANT": str(INGESTION_CAP),
        "INGESTION_RETRY_DELAYS": "[1, 1, 1]",
        "JOB_RESULT_TTL": str(JOB_TTL_SECONDS),
        "JOB_FAILURE_TTL": str(JOB_TTL_SECONDS),
        "JOB_MONITORING_INTERVAL": str(MONITORING_INTERVAL_SECONDS),
        "MAINTENANCE_SWEEP_INTERVAL": str(SWEEP_INTERVAL_SECONDS),
    }


@pytest.fixture(scope="module")
def jobs_server(jobs_env) -> str:
    with running_server(jobs_env, "web-jobs", BACKEND_WORKERS="1") as base_url:
        yield base_url


@pytest.fixture
def jobs_api(jobs_server) -> Api:
    client = Api(jobs_server)
    yield client
    client.http.close()


@pytest.fixture
def jobs_redis(jobs_env, service_urls) -> redis_client.Redis:
    client = redis_client.Redis.from_url(jobs_env["REDIS_URL"])
    yield client
    client.close()


@pytest.fixture
def fresh_redis(jobs_redis) -> redis_client.Redis:
    """The module's Redis database, emptied first; for tests that run without the shared worker."""
    jobs_redis.flushdb()
    return jobs_redis


def start_worker(jobs_env: dict, name: str = "worker-jobs") -> subprocess.Popen:
    return _start(name, ["-m", "jobs.worker"], jobs_env)


@pytest.fixture(scope="module")
def worker(jobs_env) -> subprocess.Popen:
    """One worker shared by the tests at the end of the module, which only add their own jobs.

    Starting a worker costs tens of seconds on a loaded machine, so the tests that need none
    or start their own come first in the file.
    """
    redis_client.Redis.from_url(jobs_env["REDIS_URL"]).flushdb()
    process = start_worker(jobs_env)
    yield process
    _stop(process)


def inject_fault(redis: redis_client.Redis, text: str, **fields) -> None:
    """Make the worker (in test mode) misbehave while it ingests the document with this text."""
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    redis.hset(FAULT_KEY_PREFIX + sha256, mapping=fields)


def unique_text(words: int = 100) -> str:
    marker = uuid.uuid4().hex
    return f"Document {marker}. " + " ".join(f"word{index % 97} about topic {marker[:6]}." for index in range(words))


def chunk_ordinals(db_url: str, document_id: str) -> list[int]:
    async def read() -> list[int]:
        connection = await asyncpg.connect(db_url)
        try:
            rows = await connection.fetch("SELECT ordinal FROM chunks WHERE document_id = $1 ORDER BY ordinal",
                                          uuid.UUID(document_id))
        finally:
            await connection.close()
        return [row["ordinal"] for row in rows]

    return asyncio.run(read())


def wait_for(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(message)


def kill_worker_and_horse(process: subprocess.Popen, redis: redis_client.Redis, job_id: str) -> None:
    """SIGKILL a worker with its work horse, as when its machine dies.

    RQ starts each work horse in a session of its own, so killing the worker's process group
    leaves the horse running; the job records the horse's process id in its meta.
    """
    horse_pid = Job.fetch(job_id, connection=redis).meta["pid"]
    os.killpg(process.pid, signal.SIGKILL)
    os.kill(horse_pid, signal.SIGKILL)
    process.wait(timeout=10)


def start_worker_beside(api: Api, jobs_env: dict) -> subprocess.Popen:
    """Start a second worker and wait until it is live, so the sweep, not RQ's own start-up
    cleaning, finds the job of the worker killed next."""
    process = start_worker(jobs_env)
    wait_for(lambda: api.http.get("/health/ready").json()["checks"]["queue"]["workers"] == 2,
             REPAIR_TIMEOUT_SECONDS, "the second worker never registered")
    return process


def upload(api: Api, user: dict, text: str) -> dict:
    response = api.upload_text(user, "A test document", text)
    assert response.status_code == 202, response.text
    return response.json()


def test_upload_over_tenant_cap_answers_429(jobs_api, fresh_redis):
    user = jobs_api.register()
    texts = [unique_text(20) for _ in range(INGESTION_CAP)]
    for text in texts:
        upload(jobs_api, user, text)

    response = jobs_api.upload_text(user, "One too many", unique_text(20))

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_duplicate_upload_at_cap_is_not_counted(jobs_api, fresh_redis):
    user = jobs_api.register()
    texts = [unique_text(20) for _ in range(INGESTION_CAP)]
    for text in texts:
        upload(jobs_api, user, text)

    response = jobs_api.upload_text(user, "Again", texts[0])

    assert response.status_code == 200
    assert response.json()["duplicate"] is True


def test_cap_counts_one_tenant_only(jobs_api, fresh_redis):
    busy, other = jobs_api.register(), jobs_api.register()
    for _ in range(INGESTION_CAP):
        upload(jobs_api, busy, unique_text(20))

    assert jobs_api.upload_text(other, "Mine", unique_text(20)).status_code == 202


def test_pending_job_reports_queue_position(jobs_api, fresh_redis):
    busy, other = jobs_api.register(), jobs_api.register()
    for _ in range(INGESTION_CAP):
        upload(jobs_api, busy, unique_text(20))
    accepted = upload(jobs_api, other, unique_text(20))

    job = jobs_api.http.get(f"/jobs/{accepted['job_id']}", headers=other["headers"]).json()

    assert job["status"] == "queued"
    assert job["queue_position"] >= 2
    assert "estimated_start" in job


def test_pending_job_reports_enqueued_at(jobs_api, fresh_redis):
    """A job in its tenant's pending list, not yet in the RQ queue, used to report enqueued_at null."""
    user = jobs_api.register()
    before = datetime.now(timezone.utc)
    accepted = [upload(jobs_api, user, unique_text(20)) for _ in range(INGESTION_CAP)]
    after = datetime.now(timezone.utc)
    last = accepted[-1]["job_id"]
    assert is_pending(fresh_redis, user["tenant_id"], last)

    job = jobs_api.http.get(f"/jobs/{last}", headers=user["headers"]).json()

    assert job["status"] == "queued"
    assert job["enqueued_at"] is not None
    assert before <= datetime.fromisoformat(job["enqueued_at"]) <= after


def test_ready_without_worker_reports_degraded_queue(jobs_api, fresh_redis):
    user = jobs_api.register()
    upload(jobs_api, user, unique_text(20))

    response = jobs_api.http.get("/health/ready")

    assert response.status_code == 200
    queue = response.json()["checks"]["queue"]
    assert queue["status"] == "degraded"
    assert queue["workers"] == 0
    assert queue["depth"]["ingestion"] == 1


def test_worker_killed_mid_job_is_retried(jobs_api, fresh_redis, jobs_env, db_url):
    user = jobs_api.register()
    text = unique_text()
    inject_fault(fresh_redis, text, pauses=1, pause_seconds=600)
    doomed = start_worker(jobs_env, "worker-jobs-killed")
    replacement = None
    try:
        accepted = upload(jobs_api, user, text)
        document_id = accepted["document"]["id"]
        wait_for(lambda: jobs_api.http.get(f"/documents/{accepted['document']['id']}", headers=user["headers"])
                 .json()["status"] == "processing", REPAIR_TIMEOUT_SECONDS, "the job never started")

        replacement = start_worker_beside(jobs_api, jobs_env)

        kill_worker_and_horse(doomed, fresh_redis, accepted["job_id"])
        document = jobs_api.wait_for_document(user, document_id, timeout=REPAIR_TIMEOUT_SECONDS)
        job = jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
        if replacement is not None:
            _stop(replacement)

    assert document["status"] == "ready"
    assert job["status"] == "finished"
    assert job["attempts"] == 2
    assert chunk_ordinals(db_url, document_id) == list(range(document["chunk_count"]))


def test_killed_job_on_last_attempt_fails_document(jobs_api, fresh_redis, jobs_env):
    user = jobs_api.register()
    text = unique_text()
    inject_fault(fresh_redis, text, pauses=1, pause_seconds=600)
    doomed = start_worker(jobs_env, "worker-jobs-killed")
    replacement = None
    try:
        accepted = upload(jobs_api, user, text)
        wait_for(lambda: jobs_api.http.get(f"/documents/{accepted['document']['id']}", headers=user["headers"])
                 .json()["status"] == "processing", REPAIR_TIMEOUT_SECONDS, "the job never started")
        # The job is on its last attempt, as after three lost workers.
        fresh_redis.hset(f"rq:job:{accepted['job_id']}", "retries_left", 0)

        replacement = start_worker_beside(jobs_api, jobs_env)

        kill_worker_and_horse(doomed, fresh_redis, accepted["job_id"])
        document = jobs_api.wait_for_document(user, accepted["document"]["id"], timeout=REPAIR_TIMEOUT_SECONDS)
        job = jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
        if replacement is not None:
            _stop(replacement)

    assert document["status"] == "failed"
    assert "worker" in document["error"]
    assert document["error"].endswith(".")
    assert job["status"] == "failed"


def test_sweep_requeues_document_whose_job_is_lost(jobs_api, fresh_redis, jobs_env):
    user = jobs_api.register()
    accepted = upload(jobs_api, user, unique_text())
    job_id, document_id = accepted["job_id"], accepted["document"]["id"]
    # Redis loses the job, as after a restart without persistence.
    fresh_redis.delete(f"rq:job:{job_id}")
    fresh_redis.lrem("rq:queue:ingestion", 0, job_id)
    fresh_redis.lrem(pending_key(user["tenant_id"]), 0, job_id)

    process = start_worker(jobs_env)
    try:
        document = jobs_api.wait_for_document(user, document_id, timeout=REPAIR_TIMEOUT_SECONDS)
    finally:
        _stop(process)

    assert document["status"] == "ready"


def test_transient_failures_twice_then_success(jobs_api, jobs_redis, worker, db_url):
    user = jobs_api.register()
    text = unique_text()
    inject_fault(jobs_redis, text, transient_failures=2)
    accepted = upload(jobs_api, user, text)

    job = jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)
    document = jobs_api.wait_for_document(user, accepted["document"]["id"], timeout=REPAIR_TIMEOUT_SECONDS)

    assert job["status"] == "finished"
    assert job["attempts"] == 3
    assert document["status"] == "ready"
    ordinals = chunk_ordinals(db_url, document["id"])
    assert len(ordinals) == document["chunk_count"]
    assert ordinals == list(range(document["chunk_count"]))


def test_repeated_job_keeps_one_copy_of_each_chunk(jobs_api, jobs_redis, worker, db_url):
    user = jobs_api.register()
    accepted = upload(jobs_api, user, unique_text())
    document = jobs_api.wait_for_document(user, accepted["document"]["id"], timeout=REPAIR_TIMEOUT_SECONDS)
    assert document["status"] == "ready"

    repeat = Queue("ingestion", connection=jobs_redis).enqueue(
        "jobs.ingest.ingest_document", document["id"], user["tenant_id"], meta={"kind": "ingestion"})
    wait_for(lambda: repeat.get_status(refresh=True).value in ("finished", "failed"), REPAIR_TIMEOUT_SECONDS,
             "the repeated job did not end")

    assert repeat.get_status().value == "finished"
    assert chunk_ordinals(db_url, document["id"]) == list(range(document["chunk_count"]))


def test_worker_process_loads_model_once(jobs_api, jobs_redis, worker):
    user = jobs_api.register()
    first = upload(jobs_api, user, unique_text(50))
    second = upload(jobs_api, user, unique_text(50))
    for accepted in (first, second):
        assert jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)["status"] == "finished"

    records = [Job.fetch(accepted["job_id"], connection=jobs_redis).meta for accepted in (first, second)]
    for meta in records:
        assert meta["model_loaded_by_pid"] == worker.pid
        assert meta["model_load_count"] == 1
        assert meta["pid"] != worker.pid
    assert records[0]["pid"] != records[1]["pid"]


def test_finished_job_expires_to_404(jobs_api, jobs_redis, worker):
    user = jobs_api.register()
    accepted = upload(jobs_api, user, unique_text(50))
    assert jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)["status"] == "finished"

    response = wait_for(lambda: (lambda r: r if r.status_code != 200 else None)(
        jobs_api.http.get(f"/jobs/{accepted['job_id']}", headers=user["headers"])),
        JOB_TTL_SECONDS * 5, "the finished job never expired")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_failed_job_expires_to_404(jobs_api, jobs_redis, worker):
    user = jobs_api.register()
    response = jobs_api.http.post("/documents", headers=user["headers"],
                                  files={"file": ("broken.pdf", b"%PDF-1.4\nnot really a pdf", "application/pdf")})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert jobs_api.wait_for_job(user, job_id, timeout=REPAIR_TIMEOUT_SECONDS)["status"] == "failed"

    expired = wait_for(lambda: (lambda r: r if r.status_code != 200 else None)(
        jobs_api.http.get(f"/jobs/{job_id}", headers=user["headers"])),
        JOB_TTL_SECONDS * 5, "the failed job never expired")

    assert expired.status_code == 404
    assert expired.json()["error"]["code"] == "not_found"


def test_ready_reports_live_worker(jobs_api, jobs_redis, worker):
    body = wait_for(lambda: (lambda b: b if b["checks"]["queue"]["workers"] else None)(
        jobs_api.http.get("/health/ready").json()), REPAIR_TIMEOUT_SECONDS, "the worker never registered")

    assert body["checks"]["queue"]["status"] == "ok"
    assert body["checks"]["queue"]["workers"] == 1
    assert body["checks"]["queue"]["oldest_heartbeat_seconds"] is not None


def test_killed_work_horse_is_retried(jobs_api, jobs_redis, worker, db_url):
    user = jobs_api.register()
    text = unique_text()
    inject_fault(jobs_redis, text, pauses=1, pause_seconds=120)
    accepted = upload(jobs_api, user, text)
    document_id = accepted["document"]["id"]
    wait_for(lambda: jobs_api.http.get(f"/documents/{document_id}", headers=user["headers"]).json()["status"]
             == "processing", REPAIR_TIMEOUT_SECONDS, "the job never started")

    os.kill(Job.fetch(accepted["job_id"], connection=jobs_redis).meta["pid"], signal.SIGKILL)
    document = jobs_api.wait_for_document(user, document_id, timeout=REPAIR_TIMEOUT_SECONDS)
    job = jobs_api.wait_for_job(user, accepted["job_id"], timeout=REPAIR_TIMEOUT_SECONDS)

    assert document["status"] == "ready"
    assert job["attempts"] == 2
    assert chunk_ordinals(db_url, document_id) == list(range(document["chunk_count"]))
