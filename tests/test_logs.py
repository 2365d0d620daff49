"""Logs: one access line per request without secrets, request and job ids bound, JSON in production."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid

import pytest
import redis
from rq import Queue

from server.logs import ContextFilter, JsonFormatter, KeyValueFormatter, configure_logging, job_id_var
from server.settings import Settings
from tests.conftest import LOG_DIR

WEB_LOG = LOG_DIR / "web.log"
LOG_WAIT_SECONDS = 20


def request_lines(request_id: str) -> list[str]:
    """Return the live server's log lines for one request, once its access line is written."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        lines = [line for line in WEB_LOG.read_text(errors="replace").splitlines()
                 if f"request_id={request_id}" in line]
        if any(" request done " in line for line in lines):
            return lines
        time.sleep(0.1)
    raise AssertionError(f"no access line for request_id={request_id} in {WEB_LOG} within {LOG_WAIT_SECONDS} s")


def access_lines(request_id: str) -> list[str]:
    return [line for line in request_lines(request_id) if " request done " in line]


def new_request_id() -> str:
    return f"logtest-{uuid.uuid4().hex}"


def test_login_access_line_has_fields_not_secrets(api):
    user = api.register(password="secret-password-" + uuid.uuid4().hex)
    request_id = new_request_id()
    response = api.http.post("/auth/login", json={"email": user["email"], "password": user["password"]},
                             headers={**user["headers"], "X-Request-ID": request_id})
    assert response.status_code == 200
    [line] = access_lines(request_id)
    assert "method=POST" in line
    assert "route=/auth/login" in line
    assert "status=200" in line
    assert "duration_ms=" in line
    assert f"user_id={user['user_id']}" in line
    log = WEB_LOG.read_text(errors="replace")
    assert user["password"] not in log
    assert user["access_token"] not in log
    assert response.json()["access_token"] not in log


def test_search_body_not_logged(api):
    user = api.register()
    query = f"confidential query {uuid.uuid4().hex}"
    request_id = new_request_id()
    response = api.http.post("/search", json={"query": query, "mode": "keyword"},
                             headers={**user["headers"], "X-Request-ID": request_id})
    assert response.status_code == 200
    [line] = access_lines(request_id)
    assert "route=/search" in line
    assert query not in WEB_LOG.read_text(errors="replace")


def test_rejected_token_gets_one_access_line(api):
    request_id = new_request_id()
    token = "not-a-valid-token-" + uuid.uuid4().hex
    response = api.http.get("/users/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id})
    assert response.status_code == 401
    [line] = access_lines(request_id)
    assert "status=401" in line
    assert "user_id=-" in line
    assert token not in WEB_LOG.read_text(errors="replace")


def test_unknown_path_logged_as_unmatched(api):
    user = api.register()
    request_id = new_request_id()
    document_id = str(uuid.uuid4())
    response = api.http.get(f"/no-such-path/{document_id}", headers={**user["headers"], "X-Request-ID": request_id})
    assert response.status_code == 404
    [line] = access_lines(request_id)
    assert "route=/unmatched" in line
    assert document_id not in line


def test_handler_lines_carry_request_id(api):
    user = api.register()
    request_id = new_request_id()
    session_id = f"log-session-{uuid.uuid4().hex}"
    response = api.http.post("/chat", json={"message": "What is in my documents?", "session_id": session_id},
                             headers={**user["headers"], "X-Request-ID": request_id})
    assert response.status_code == 200
    lines = request_lines(request_id)
    assert [line for line in lines if " chat answer stored " in line]
    assert len([line for line in lines if " request done " in line]) == 1


# Formatting and the job id, in this process.

def log_in_job(message: str) -> None:
    logging.getLogger("tests.job").info("job step message=%s", message)


@pytest.fixture
def captured():
    """A handler like the server's on a test logger, writing into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("tests.job")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_rq_job_lines_carry_job_id(captured, service_urls):
    connection = redis.Redis.from_url(service_urls["redis_url"])
    job = Queue("log-test", connection=connection).enqueue(log_in_job, "inside")
    try:
        job.perform()
    finally:
        job.delete()
        connection.close()
    assert job_id_var.get() is None
    assert f"job step message=inside job_id={job.id}" in captured.getvalue()


def test_json_entry_has_message_fields():
    record = logging.LogRecord("server.app", logging.INFO, __file__, 1,
                               "request done method=%s route=/%s status=%s duration_ms=%.1f user_id=%s",
                               ("POST", "auth/login", 200, 12.345, "-"), None)
    record.request_id, record.job_id = "abc12345", None
    entry = json.loads(JsonFormatter().format(record))
    assert entry["event"] == "request done"
    assert entry["message"] == "request done method=POST route=/auth/login status=200 duration_ms=12.3 user_id=-"
    assert entry["method"] == "POST"
    assert entry["route"] == "/auth/login"
    assert entry["status"] == 200
    assert entry["duration_ms"] == 12.3
    assert entry["request_id"] == "abc12345"
    assert "job_id" not in entry


def test_json_entry_keeps_nan_and_tuples_valid():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "measured seconds=%.1f pair=%s",
                               (float("nan"), (1, 2)), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["seconds"] == "nan"
    assert entry["pair"] == "(1, 2)"


def test_json_entry_without_fields_keeps_message():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d%% of %s", (50, "work"), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "50% of work"
    assert "event" not in entry


@pytest.mark.parametrize(("environment", "formatter"), [("production", JsonFormatter),
                                                        ("development", KeyValueFormatter)])
def test_environment_selects_log_format(environment, formatter):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(Settings(environment=environment, jwt_secret="x" * 40))
        [handler] = root.handlers
        assert type(handler.formatter) is formatter
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
