"""Worker and dashboard log levels: a handled ingestion failure is one warning line, not an error."""

from __future__ import annotations

import re
import time
import uuid

import redis
from rq import Queue

from jobs.queues import DEFAULT_QUEUE
from tests.conftest import LOG_DIR, _free_port, _start, _stop
from tests.samples import build_pdf, encrypt_pdf, text_stream

WORKER_LOG = LOG_DIR / "worker.log"
LOG_WAIT_SECONDS = 60
# The start of a key=value log line, which ends the traceback of the line before it.
LINE_START = re.compile(r"\n(?=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")


def wait_for_log(path, text: str) -> str:
    """Return the log's content once `text` is in it."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {path} within {LOG_WAIT_SECONDS} s")


def test_unparsable_upload_logs_one_warning(api, rq_worker):
    user = api.register()
    pdf = encrypt_pdf(build_pdf([text_stream(["A locked page."])]), "secret")
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("locked.pdf", pdf, "application/pdf")})
    assert response.status_code == 202
    document_id, job_id = response.json()["document"]["id"], response.json()["job_id"]
    assert api.wait_for_job(user, job_id)["status"] == "failed"

    log = wait_for_log(WORKER_LOG, f"ingestion failed permanently document_id={document_id}")
    job_lines = [line for line in log.splitlines() if job_id in line]
    [warning] = [line for line in job_lines if "ingestion failed permanently" in line]
    assert f"document_id={document_id}" in warning
    assert " WARNING jobs.worker " in warning
    assert "reason=" in warning
    assert "encrypted" in warning
    assert f"job_id={job_id}" in warning
    assert not [line for line in job_lines if " ERROR " in line]
    assert not [line for line in job_lines if "exception raised while executing" in line]


def test_unexpected_job_error_keeps_traceback(service_urls, rq_worker):
    with redis.Redis.from_url(service_urls["redis_url"]) as connection:
        # A document id that is not a UUID makes the job raise ValueError, an unexpected error.
        job = Queue(DEFAULT_QUEUE, connection=connection).enqueue(
            "jobs.ingest.ingest_document", "not-a-uuid", str(uuid.uuid4()))
    headline = f"job {job.id}: exception raised while executing"
    log = wait_for_log(WORKER_LOG, headline)
    line_start = log.rindex("\n", 0, log.index(headline)) + 1
    entry = LINE_START.split(log[line_start:], maxsplit=1)[0]
    assert " ERROR rq.worker " in entry.splitlines()[0]
    assert "Traceback (most recent call last)" in entry
    assert "ValueError" in entry


def test_dashboard_start_line_is_info(server_env, tmp_path):
    port = _free_port()
    env = {**server_env, "DASHBOARD_HOST": "127.0.0.1", "DASHBOARD_PORT": str(port), "DATA_DIR": str(tmp_path)}
    path = LOG_DIR / "dashboard.log"
    offset = path.stat().st_size if path.exists() else 0
    process = _start("dashboard", ["-m", "jobs.dashboard"], env)
    try:
        wait_for_log(path, f"Running on 127.0.0.1:{port}")
    finally:
        _stop(process)
    with open(path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    [start] = [line for line in lines if f"Running on 127.0.0.1:{port}" in line]
    assert " INFO werkzeug " in start
    assert not [line for line in lines if " ERROR " in line]
