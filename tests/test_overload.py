"""Load shedding against a real one-worker server that admits two requests at a time."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import Api, running_server
from tests.test_rate_limit import wait_until_workers_warm

MAX_IN_FLIGHT = 2
BURST = 40
HEALTH_CHECKS = 10


@pytest.fixture(scope="module")
def small_server(server_env) -> str:
    with running_server(server_env, "web-overload", BACKEND_WORKERS="1",
                        MAX_IN_FLIGHT_REQUESTS=str(MAX_IN_FLIGHT)) as base_url:
        wait_until_workers_warm(base_url)
        yield base_url


@pytest.fixture
def user(small_server, service_urls) -> dict:
    client = Api(small_server)
    registered = client.register()
    client.http.close()
    return registered


async def burst_with_health_checks(base_url: str, user: dict) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """Send BURST hybrid searches with distinct queries (each encodes its query) and health checks among them."""
    limits = httpx.Limits(max_connections=BURST + HEALTH_CHECKS)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        async def health_check(index: int) -> httpx.Response:
            await asyncio.sleep(0.01 * index)
            return await client.get("/health")

        searches = [client.post("/search", headers=user["headers"],
                                json={"query": f"overload {uuid.uuid4().hex}", "mode": "hybrid"})
                    for _ in range(BURST)]
        checks = [health_check(index) for index in range(HEALTH_CHECKS)]
        responses = await asyncio.gather(*searches, *checks)
    return list(responses[:BURST]), list(responses[BURST:])


def test_burst_sheds_with_503_while_health_passes(small_server, user):
    searches, health_checks = asyncio.run(burst_with_health_checks(small_server, user))

    statuses = [response.status_code for response in searches]
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) > 0
    assert statuses.count(200) >= MAX_IN_FLIGHT
    assert [response.status_code for response in health_checks] == [200] * HEALTH_CHECKS


def test_shed_response_has_retry_after_and_error_body(small_server, user):
    searches, _ = asyncio.run(burst_with_health_checks(small_server, user))

    shed = [response for response in searches if response.status_code == 503]
    assert shed
    for response in shed:
        assert response.headers["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert error["request_id"] == response.headers["X-Request-ID"]
        assert "Retry-After" in error["message"]


def test_slots_released_after_burst(small_server, user):
    asyncio.run(burst_with_health_checks(small_server, user))

    with httpx.Client(base_url=small_server, headers=user["headers"], timeout=60) as client:
        statuses = [client.get("/users/me").status_code for _ in range(5)]
        streamed = client.post("/chat", json={"message": "What is in my documents?", "stream": True})
        after_stream = client.get("/users/me").status_code

    # Were a slot leaked per request, a worker admitting two would reject these one-at-a-time requests.
    assert statuses == [200] * 5
    assert streamed.status_code == 200
    assert after_stream == 200
