"""Bad input answers with the documented status and error body, and changes nothing."""

import json

import pytest

from server.app import REQUEST_ID_PATTERN
from tests.conftest import LOG_DIR


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return error


def _document_count(api, user) -> int:
    return len(api.http.get("/documents", headers=user["headers"]).json()["items"])


def test_malformed_json_is_bad_request(api):
    user = api.register()
    response = api.http.post("/search", headers={**user["headers"], "Content-Type": "application/json"},
                             content=b'{"query": "unterminated')
    _assert_error(response, 400, "bad_request")


def test_wrong_type_is_unprocessable_with_details(api):
    user = api.register()
    response = api.http.post("/search", headers=user["headers"], json={"query": "argparse", "limit": "ten"})
    error = _assert_error(response, 422, "validation_failed")
    assert error["details"][0]["field"] == "limit"


def test_json_array_body_is_unprocessable(api):
    user = api.register()
    response = api.http.post("/chat", headers=user["headers"], json=["not", "an", "object"])
    _assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("path, field", [("/search", "query"), ("/chat", "message")])
def test_whitespace_only_text_is_unprocessable(api, path, field):
    # "   " passed the min_length check: /search returned arbitrary hits and /chat a 200 answer.
    user = api.register()
    response = api.http.post(path, headers=user["headers"], json={field: "   "})
    error = _assert_error(response, 422, "validation_failed")
    assert error["details"][0]["field"] == field


def test_limit_out_of_range_is_unprocessable(api):
    user = api.register()
    response = api.http.post("/search", headers=user["headers"], json={"query": "x", "limit": 51})
    _assert_error(response, 422, "validation_failed")


def test_oversized_upload_is_rejected_and_stores_nothing(api, server_env):
    user = api.register()
    size = int(server_env["MAX_UPLOAD_BYTES"]) + 1
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("big.txt", b"a" * size, "text/plain")})
    _assert_error(response, 413, "payload_too_large")
    assert _document_count(api, user) == 0


def test_body_beyond_server_limit_is_rejected(api, server_env):
    user = api.register()
    size = int(server_env["MAX_UPLOAD_BYTES"]) + 2 * 1024 * 1024
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("huge.txt", b"a" * size, "text/plain")})
    _assert_error(response, 413, "payload_too_large")
    assert api.http.get("/health").status_code == 200


def test_unsupported_type_is_rejected_and_stores_nothing(api):
    user = api.register()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("picture.txt", png, "text/plain")})
    _assert_error(response, 415, "unsupported_media_type")
    assert _document_count(api, user) == 0


def test_empty_file_is_rejected_and_stores_nothing(api):
    user = api.register()
    response = api.http.post("/documents", headers=user["headers"], files={"file": ("empty.txt", b"", "text/plain")})
    _assert_error(response, 422, "validation_failed")
    assert _document_count(api, user) == 0


def test_upload_with_other_content_type_is_unsupported(api):
    user = api.register()
    response = api.http.post("/documents", headers={**user["headers"], "Content-Type": "application/xml"},
                             content=b"<a/>")
    _assert_error(response, 415, "unsupported_media_type")


def test_metadata_that_is_not_an_object_is_rejected(api):
    user = api.register()
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("a.txt", b"some text here", "text/plain")},
                             data={"metadata": "[1, 2]"})
    _assert_error(response, 422, "validation_failed")
    assert _document_count(api, user) == 0


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=xyz"])
def test_malformed_multipart_is_bad_request(api, content_type):
    # Without a boundary, Sanic's form parser raised KeyError: 'boundary', logged it as an ERROR
    # traceback, and the upload got 422 "needs a 'file' part".
    user = api.register()
    log_path = LOG_DIR / "web.log"
    log_offset = log_path.stat().st_size

    response = api.http.post("/documents", headers={**user["headers"], "Content-Type": content_type},
                             content=b"garbage")

    error = _assert_error(response, 400, "bad_request")
    assert "malformed" in error["message"]
    assert _document_count(api, user) == 0
    log = log_path.read_bytes()[log_offset:].decode(errors="replace")
    assert "Traceback" not in log
    assert "Failed when parsing form" not in log


@pytest.mark.parametrize("session_id", ["has space", "x" * 129, "semi;colon", ""])
def test_invalid_session_id_is_rejected(api, session_id):
    user = api.register()
    response = api.http.post("/chat", headers=user["headers"], json={"message": "hi", "session_id": session_id})
    _assert_error(response, 422, "validation_failed")


def test_unknown_route_is_not_found_json(api):
    user = api.register()
    response = api.http.get("/no-such-route", headers=user["headers"])
    _assert_error(response, 404, "not_found")


def test_malformed_document_id_is_not_found(api):
    user = api.register()
    response = api.http.get("/documents/not-a-uuid", headers=user["headers"])
    _assert_error(response, 404, "not_found")


def test_invalid_cursor_is_unprocessable(api):
    user = api.register()
    response = api.http.get("/documents?cursor=%%%garbage", headers=user["headers"])
    _assert_error(response, 422, "validation_failed")


def test_request_id_is_echoed_when_well_formed(api):
    response = api.http.get("/health", headers={"X-Request-ID": "client-id-12345"})
    assert response.headers["x-request-id"] == "client-id-12345"


def test_request_id_is_replaced_when_malformed(api):
    response = api.http.get("/health", headers={"X-Request-ID": "bad id\twith tabs"})
    assert response.headers["x-request-id"] != "bad id\twith tabs"
    assert len(response.headers["x-request-id"]) >= 8


@pytest.mark.parametrize("request_id", ["abcd1234", "trace.ID_01:span-02", "a" * 128])
def test_request_id_of_allowed_characters_is_echoed(api, request_id):
    response = api.http.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["abc1234", "a" * 129, "id-with/slash", "id with space", "id;drop=1"])
def test_request_id_outside_pattern_is_replaced(api, request_id):
    response = api.http.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] != request_id
    assert REQUEST_ID_PATTERN.match(response.headers["x-request-id"])


def test_blank_tenant_name_is_unprocessable(api):
    # Regression: a whitespace-only tenant passed validation, then broke a CHECK constraint (500).
    response = api.http.post("/auth/register", json={"tenant": "   ", "email": "blank@example.com",
                                                     "password": "long-enough-password"})
    _assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("body", [
    {"tenant": "Nul\u0000Corp", "email": "nul@example.com", "password": "long-enough-password"},
    {"tenant": "Surrogate \ud800", "email": "surrogate@example.com", "password": "long-enough-password"},
])
def test_unstorable_text_is_unprocessable(api, body):
    # Regression: a NUL character or a lone surrogate reached PostgreSQL and failed there (500).
    response = api.http.post("/auth/register", content=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
    _assert_error(response, 422, "validation_failed")


def test_nul_in_metadata_is_unprocessable_and_stores_nothing(api):
    user = api.register()
    response = api.upload_text(user, "Doc", "Some text to store.", metadata={"key": "bad\u0000value"})
    _assert_error(response, 422, "validation_failed")
    assert _document_count(api, user) == 0


@pytest.mark.parametrize("job_id", ["has space", "dots.in.id", "x" * 200])
def test_malformed_job_id_is_not_found(api, job_id):
    # Regression: an id with characters RQ rejects raised ValueError (500).
    user = api.register()
    response = api.http.get(f"/jobs/{job_id}", headers=user["headers"])
    _assert_error(response, 404, "not_found")


@pytest.mark.parametrize("raw", [b'{"query": NaN}', b'{"query": "x", "limit": Infinity}', b"[" * 100_000 + b"]" * 100_000])
def test_non_json_constants_and_deep_nesting_are_bad_json(api, raw):
    # Regression: NaN reached PostgreSQL and deep nesting raised RecursionError (both 500).
    user = api.register()
    response = api.http.post("/search", headers={**user["headers"], "Content-Type": "application/json"},
                             content=raw)
    _assert_error(response, 400, "bad_request")


def test_json_responses_declare_utf8(api):
    response = api.http.get("/health")
    assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_public_path_with_trailing_slash_needs_no_token(api):
    # Regression: /health/ matched the route but not the public-path list, so it answered 401.
    assert api.http.get("/health/").status_code == 200


def test_deep_nesting_is_named_in_the_error(api):
    # Valid JSON 5,000 levels deep was called "not valid JSON", which sent clients looking for a syntax error.
    user = api.register()
    response = api.http.post("/search", headers={**user["headers"], "Content-Type": "application/json"},
                             content=b"[" * 5000 + b"]" * 5000)
    _assert_error(response, 400, "bad_request")
    assert "nested too deeply" in response.json()["error"]["message"]
