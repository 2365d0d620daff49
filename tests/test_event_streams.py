"""Document event streams when Redis connections run out: 503 with the error body, never 500."""

import httpx
import pytest

from tests.conftest import running_server, without_rq_worker

REDIS_CONNECTIONS = 3


@pytest.fixture(scope="module")
def scarce_server(server_env):
    """One worker with a Redis pool of REDIS_CONNECTIONS and no RQ worker, so documents stay queued."""
    with running_server(server_env, "web-scarce", BACKEND_WORKERS="1", REDIS_MAX_CONNECTIONS=str(REDIS_CONNECTIONS),
                        **without_rq_worker(server_env, database=1)) as base_url:
        yield base_url


def test_streams_beyond_the_pool_get_503(scarce_server, service_urls):
    # Regression: past the Redis pool size, streams failed with MaxConnectionsError as a 500
    # without X-Request-ID.
    with httpx.Client(base_url=scarce_server, timeout=30) as http:
        email = "streams@example.com"
        token = http.post("/auth/register", json={"tenant": "Streams", "email": email,
                                                  "password": "long-enough-password"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        document_id = http.post("/documents", headers=headers,
                                json={"title": "Queued", "text": "This document is never ingested."}
                                ).json()["document"]["id"]

        open_streams, statuses, refused = [], [], None
        try:
            for _ in range(REDIS_CONNECTIONS + 3):
                stream = http.stream("GET", f"/documents/{document_id}/events", headers=headers)
                response = stream.__enter__()
                open_streams.append(stream)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    response.read()
                    refused = response
                    break
        finally:
            for stream in open_streams:
                stream.__exit__(None, None, None)

    assert 500 not in statuses
    assert refused is not None, statuses
    assert refused.json()["error"]["code"] == "service_unavailable"
    assert refused.headers["x-request-id"] == refused.json()["error"]["request_id"]
    assert refused.headers["retry-after"] == "5"
