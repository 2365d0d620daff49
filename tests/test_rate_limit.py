"""Rate limits and the chat stream cap, against real multi-worker servers and a real Redis.

The module runs its own server with low limits (10 requests per minute per user), so the shared
test server can keep generous ones. Each test starts with empty buckets, because the state reset
of conftest deletes the `ratelimit:*` keys.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import asyncpg
import httpx
import pytest
import redis

from db import embedded
from server import ratelimit
from tests.conftest import LOG_DIR, _free_port, running_server

LIMIT_PER_MINUTE = 10
# One token comes back every this many seconds.
SECONDS_PER_TOKEN = 60 / LIMIT_PER_MINUTE
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                      "X-RateLimit-Reset", "Retry-After")


@contextmanager
def limited_server_running(server_env: dict, name: str, **overrides: str):
    """Start a one-worker server with the low test limits, and wait until its workers are warm."""
    limits = {"BACKEND_WORKERS": "1", "RATE_LIMIT_PER_MINUTE": str(LIMIT_PER_MINUTE), "RATE_LIMIT_PER_HOUR": "1000"}
    with running_server(server_env, name, **{**limits, **overrides}) as base_url:
        wait_until_workers_warm(base_url)
        yield base_url


def wait_until_workers_warm(base_url: str, timeout: float = 180) -> None:
    """Wait until 20 readiness checks in a row pass on new connections.

    Each worker loads the embedding model after it starts and is ready only once it has. The
    kernel spreads new connections over the workers, so 20 passes in a row make it very likely
    that every worker is done loading and no longer slows the others down.
    """
    deadline = time.monotonic() + timeout
    passes = 0
    while passes < 20:
        assert time.monotonic() < deadline, f"workers of {base_url} not all ready within {timeout} s"
        with httpx.Client(base_url=base_url, timeout=10) as client:
            passes = passes + 1 if client.get("/health/ready").status_code == 200 else 0
        if passes == 0:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def limited_server(server_env) -> str:
    """Base URL of a server with four workers and a limit of 10 requests per minute per user."""
    with limited_server_running(server_env, "web-ratelimit", BACKEND_WORKERS="4") as base_url:
        yield base_url


@pytest.fixture
def redis_client(service_urls) -> redis.Redis:
    client = redis.Redis.from_url(service_urls["redis_url"])
    yield client
    client.close()


def register(base_url: str) -> dict:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    response = httpx.post(f"{base_url}/auth/register", timeout=60,
                          json={"tenant": f"Tenant {email}", "email": email, "password": "correct-horse-battery"})
    assert response.status_code == 201, response.text
    body = response.json()
    return {**body, "email": email, "password": "correct-horse-battery",
            "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def get_me(base_url: str, user: dict) -> httpx.Response:
    """Send GET /users/me on a new connection, as a new client would."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        return client.get("/users/me", headers=user["headers"])


def update_tenant_settings(database_url: str, tenant_id: str, settings: dict) -> None:
    async def update() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("UPDATE tenants SET settings = settings || $1::jsonb WHERE id = $2",
                                     json.dumps(settings), uuid.UUID(tenant_id))
        finally:
            await connection.close()

    asyncio.run(update())


def delete_keys(client: redis.Redis, pattern: str) -> None:
    keys = list(client.scan_iter(match=pattern))
    if keys:
        client.delete(*keys)


def test_limit_shared_by_four_workers(limited_server):
    user = register(limited_server)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(lambda _: get_me(limited_server, user), range(30)))
    elapsed = time.monotonic() - started

    # A token returns every SECONDS_PER_TOKEN, so a slow burst may earn one more pass per period;
    # within one period exactly LIMIT_PER_MINUTE pass.
    refilled = int(elapsed // SECONDS_PER_TOKEN)
    statuses = [response.status_code for response in responses]
    assert LIMIT_PER_MINUTE <= statuses.count(200) <= LIMIT_PER_MINUTE + refilled
    assert statuses.count(200) + statuses.count(429) == 30
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"


def test_headers_once_with_remaining_counts(limited_server):
    user = register(limited_server)

    for expected_remaining in (9, 8, 7):
        response = get_me(limited_server, user)
        assert response.status_code == 200
        for name in RATE_LIMIT_HEADERS[:-1]:
            assert len(response.headers.get_list(name)) == 1, name
        assert "Retry-After" not in response.headers
        full_in = math.ceil((LIMIT_PER_MINUTE - expected_remaining) * SECONDS_PER_TOKEN)
        reset = int(response.headers["X-RateLimit-Reset"])
        assert reset in (full_in - 1, full_in)
        assert response.headers["RateLimit-Policy"] == f'"user";q={LIMIT_PER_MINUTE};w=60'
        assert response.headers["RateLimit"] == f'"user";r={expected_remaining};t={reset}'
        assert response.headers["X-RateLimit-Limit"] == str(LIMIT_PER_MINUTE)
        assert response.headers["X-RateLimit-Remaining"] == str(expected_remaining)


def test_error_response_carries_headers(limited_server):
    user = register(limited_server)

    response = httpx.get(f"{limited_server}/documents/{uuid.uuid4()}", headers=user["headers"])

    assert response.status_code == 404
    assert response.headers.get_list("X-RateLimit-Remaining") == [str(LIMIT_PER_MINUTE - 1)]
    assert len(response.headers.get_list("RateLimit")) == 1


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/docs", "/openapi.json"])
def test_exempt_path_has_no_headers(limited_server, path):
    user = register(limited_server)

    response = httpx.get(f"{limited_server}{path}", headers=user["headers"])

    assert response.status_code < 400
    for name in RATE_LIMIT_HEADERS:
        assert name not in response.headers, name


def test_retry_after_then_same_request_succeeds(limited_server):
    user = register(limited_server)
    for _ in range(LIMIT_PER_MINUTE):
        assert get_me(limited_server, user).status_code == 200

    rejected = get_me(limited_server, user)
    assert rejected.status_code == 429
    retry_after = int(rejected.headers["Retry-After"])
    assert 1 <= retry_after <= SECONDS_PER_TOKEN
    assert rejected.headers["X-RateLimit-Remaining"] == "0"
    assert rejected.json()["error"]["code"] == "rate_limited"

    time.sleep(retry_after)
    assert get_me(limited_server, user).status_code == 200


def test_tenant_override_applies_within_ttl(limited_server, db_url):
    per_minute_user = register(limited_server)
    per_hour_user = register(limited_server)
    # A first request makes a worker cache the defaults, which the override must replace.
    assert get_me(limited_server, per_minute_user).status_code == 200
    assert get_me(limited_server, per_hour_user).status_code == 200

    update_tenant_settings(db_url, per_minute_user["tenant_id"], {"rate_limit_per_minute": 3})
    update_tenant_settings(db_url, per_hour_user["tenant_id"], {"rate_limit_per_hour": 2})
    time.sleep(ratelimit.TENANT_SETTINGS_TTL_SECONDS + 1)

    per_minute = [get_me(limited_server, per_minute_user) for _ in range(5)]
    assert [response.status_code for response in per_minute] == [200, 200, 200, 429, 429]
    assert per_minute[0].headers["RateLimit-Policy"] == '"user";q=3;w=60'
    per_hour = [get_me(limited_server, per_hour_user) for _ in range(4)]
    assert [response.status_code for response in per_hour] == [200, 200, 429, 429]
    assert per_hour[0].headers["RateLimit-Policy"] == '"tenant";q=2;w=3600'


def test_login_attempts_limited_per_email(limited_server, redis_client):
    user = register(limited_server)
    attempts = ratelimit.LOGIN_ATTEMPTS_PER_MINUTE

    def login_burst(email: str) -> list[httpx.Response]:
        """Send one attempt more than the bucket holds, all at once, so none waits for a password check."""
        def login(_) -> httpx.Response:
            return httpx.post(f"{limited_server}/auth/login", json={"email": email, "password": "wrong-password"},
                              timeout=60)

        with ThreadPoolExecutor(max_workers=attempts + 1) as pool:
            return list(pool.map(login, range(attempts + 1)))

    known = login_burst(user["email"])
    # Both emails together would also spend the client IP's bucket (20 per minute).
    delete_keys(redis_client, "ratelimit:ip:*")
    unknown = login_burst(f"nobody-{uuid.uuid4().hex[:8]}@example.com")

    for burst in (known, unknown):
        statuses = [response.status_code for response in burst]
        assert statuses.count(401) == attempts
        assert statuses.count(429) == 1
    known_rejected = next(response for response in known if response.status_code == 429)
    unknown_rejected = next(response for response in unknown if response.status_code == 429)
    assert known_rejected.json()["error"]["message"] == unknown_rejected.json()["error"]["message"]
    assert known_rejected.json()["error"]["code"] == unknown_rejected.json()["error"]["code"] == "rate_limited"
    assert known_rejected.headers["RateLimit-Policy"] == unknown_rejected.headers["RateLimit-Policy"]
    assert "Retry-After" in known_rejected.headers
    assert "Retry-After" in unknown_rejected.headers


def test_unauthenticated_requests_limited_per_ip(limited_server):
    per_ip = 2 * LIMIT_PER_MINUTE

    responses = [httpx.get(f"{limited_server}/users/me") for _ in range(per_ip + 1)]

    assert [response.status_code for response in responses] == [401] * per_ip + [429]
    assert responses[0].headers["RateLimit-Policy"] == f'"ip";q={per_ip};w=60'
    assert responses[0].headers["X-RateLimit-Remaining"] == str(per_ip - 1)


def test_two_instances_share_limits(limited_server, server_env):
    user = register(limited_server)

    with limited_server_running(server_env, "web-ratelimit-second") as second_server:
        remaining = []
        for index in range(LIMIT_PER_MINUTE):
            response = get_me(limited_server if index % 2 == 0 else second_server, user)
            assert response.status_code == 200
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == list(range(LIMIT_PER_MINUTE - 1, -1, -1))
        assert get_me(second_server, user).status_code == 429
        assert get_me(limited_server, user).status_code == 429


@contextmanager
def dedicated_redis(port: int):
    """A foreground redis-server without persistence on `port`, killed on exit."""
    process = subprocess.Popen([embedded._redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        embedded._wait_for_port(port, "Redis", LOG_DIR / "dedicated-redis.log")
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def test_redis_outage_falls_back_then_recovers(server_env):
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    log_path = LOG_DIR / "web-ratelimit-outage.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0

    with dedicated_redis(port) as first_redis:
        with limited_server_running(server_env, "web-ratelimit-outage", REDIS_URL=redis_url) as base_url:
            user = register(base_url)
            user_key = f"ratelimit:user:{user['user_id']}"
            assert get_me(base_url, user).headers["X-RateLimit-Remaining"] == "9"
            with redis.Redis.from_url(redis_url) as client:
                assert client.exists(user_key)

            first_redis.kill()
            first_redis.wait(timeout=10)
            during_outage = [get_me(base_url, user) for _ in range(5)]
            assert [response.status_code for response in during_outage] == [200] * 5
            assert all("X-RateLimit-Remaining" in response.headers for response in during_outage)

            with dedicated_redis(port):
                time.sleep(ratelimit.REDIS_RETRY_SECONDS + 0.5)
                recovered = [get_me(base_url, user) for _ in range(LIMIT_PER_MINUTE)]
                # The restarted Redis is empty, so the shared bucket starts full again.
                assert [response.status_code for response in recovered] == [200] * LIMIT_PER_MINUTE
                assert recovered[0].headers["X-RateLimit-Remaining"] == str(LIMIT_PER_MINUTE - 1)
                with redis.Redis.from_url(redis_url) as client:
                    assert client.exists(user_key)
                assert get_me(base_url, user).status_code == 429

    log = log_path.read_bytes()[log_start:].decode(errors="replace")
    assert log.count("rate limiter cannot reach redis") == 1
    assert log.count("rate limiter reached redis again") == 1


def open_stream_slots(client: redis.Redis, user_id: str, count: int, lease_seconds: int) -> None:
    """Record `count` open streams of the user, as other workers would, with leases ending in `lease_seconds`."""
    now = int(client.time()[0])
    client.zadd(ratelimit.stream_key(user_id), {f"other-{index}": now + lease_seconds for index in range(count)})


def stream_chat(base_url: str, user: dict) -> httpx.Response:
    return httpx.post(f"{base_url}/chat", headers=user["headers"], timeout=60,
                      json={"message": "What is in my documents?", "stream": True})


def test_fifth_stream_rejected_while_four_open(limited_server, redis_client):
    user = register(limited_server)
    open_stream_slots(redis_client, user["user_id"], 4, lease_seconds=600)

    response = stream_chat(limited_server, user)

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"


def test_stream_cap_429_describes_the_cap(limited_server, redis_client):
    # Regression: this 429 had no Retry-After, and its rate limit headers described the user's
    # request bucket, which still had tokens.
    user = register(limited_server)
    open_stream_slots(redis_client, user["user_id"], 4, lease_seconds=600)

    response = stream_chat(limited_server, user)

    assert response.status_code == 429
    for name in RATE_LIMIT_HEADERS:
        assert len(response.headers.get_list(name)) == 1, name
    assert response.headers["Retry-After"] == str(ratelimit.STREAM_RETRY_AFTER_SECONDS)
    assert response.headers["RateLimit-Policy"] == '"streams";q=4'
    assert response.headers["RateLimit"] == '"streams";r=0'
    assert response.headers["X-RateLimit-Limit"] == "4"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(ratelimit.STREAM_RETRY_AFTER_SECONDS)


def test_stream_releases_its_slot_when_done(limited_server, redis_client):
    user = register(limited_server)
    open_stream_slots(redis_client, user["user_id"], 3, lease_seconds=600)

    response = stream_chat(limited_server, user)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in response.text
    # The server frees the slot after it sent the last byte, which may be a moment after the
    # client has read it.
    deadline = time.monotonic() + 10
    while redis_client.zcard(ratelimit.stream_key(user["user_id"])) != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.zcard(ratelimit.stream_key(user["user_id"])) == 3


def test_expired_stream_slots_are_not_counted(limited_server, redis_client):
    user = register(limited_server)
    open_stream_slots(redis_client, user["user_id"], 4, lease_seconds=-1)

    response = stream_chat(limited_server, user)

    assert response.status_code == 200


def test_disabled_limiter_does_nothing(server_env):
    # A Redis of its own, because the RQ worker of other tests runs scripts on the shared one.
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"

    with dedicated_redis(port), redis.Redis.from_url(redis_url) as client:
        with limited_server_running(server_env, "web-ratelimit-disabled", REDIS_URL=redis_url,
                            RATE_LIMIT_ENABLED="false") as base_url:
            user = register(base_url)

            responses = [get_me(base_url, user) for _ in range(3 * LIMIT_PER_MINUTE)]

            assert [response.status_code for response in responses] == [200] * (3 * LIMIT_PER_MINUTE)
            for name in RATE_LIMIT_HEADERS:
                assert name not in responses[-1].headers, name
            command_stats = client.info("commandstats")
            assert "cmdstat_evalsha" not in command_stats
            assert "cmdstat_eval" not in command_stats
            assert not list(client.scan_iter(match="ratelimit:*"))
