"""The Redis cache against real servers: hits and misses, tenant scoping, single flight, outages.

The module runs its own two-worker server without load shedding, so 200 concurrent requests all
reach the cache. Tests that stop Redis or switch the cache off run one-worker servers on a Redis
of their own.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest
import redis

from server import cache as cache_module
from server.cache import Cache
from server.database import create_database
from server.ratelimit import TenantLimits
from server.settings import Settings
from tests.conftest import Api, _free_port, running_server
from tests.test_rate_limit import dedicated_redis, wait_until_workers_warm

CONCURRENT_REQUESTS = 200
DOCUMENT_TEXT = ("The lighthouse keeper trims the wick at dusk. Fog horns sound every thirty seconds when the "
                 "visibility drops below a mile, and the keeper logs each ship that passes the reef.")


@pytest.fixture(scope="module")
def cache_server(server_env) -> str:
    with running_server(server_env, "web-cache", BACKEND_WORKERS="2", MAX_IN_FLIGHT_REQUESTS="0") as base_url:
        wait_until_workers_warm(base_url)
        yield base_url


@pytest.fixture
def cache_api(cache_server, service_urls) -> Api:
    client = Api(cache_server)
    yield client
    client.http.close()


@pytest.fixture
def redis_client(service_urls) -> redis.Redis:
    client = redis.Redis.from_url(service_urls["redis_url"])
    yield client
    client.close()


def computed(client: redis.Redis, kind: str) -> int:
    return int(client.get(cache_module.computed_counter_key(kind)) or 0)


def search(api: Api, user: dict, query: str, mode: str = "keyword", **headers: str) -> httpx.Response:
    response = api.http.post("/search", headers={**user["headers"], **headers},
                             json={"query": query, "mode": mode})
    assert response.status_code == 200, response.text
    return response


def test_profile_miss_then_hit(cache_api):
    user = cache_api.register()

    first = cache_api.http.get("/users/me", headers=user["headers"])
    second = cache_api.http.get("/users/me", headers=user["headers"])

    assert first.status_code == second.status_code == 200
    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert first.json() == second.json()
    assert second.json()["email"] == user["email"]


def test_search_says_cached_on_second_request(cache_api):
    user = cache_api.register()

    first = search(cache_api, user, "lighthouse fog")
    second = search(cache_api, user, "lighthouse fog")

    assert (first.json()["cached"], first.headers["X-Cache"]) == (False, "miss")
    assert (second.json()["cached"], second.headers["X-Cache"]) == (True, "hit")
    assert first.json()["results"] == second.json()["results"]


def test_tenants_never_share_an_entry(cache_api, rq_worker, redis_client):
    owner = cache_api.register()
    other = cache_api.register()
    uploaded = cache_api.upload_text(owner, "Lighthouse", DOCUMENT_TEXT)
    assert uploaded.status_code == 202, uploaded.text
    assert cache_api.wait_for_document(owner, uploaded.json()["document"]["id"])["status"] == "ready"

    owner_first = search(cache_api, owner, "lighthouse keeper")
    # A tenant header is no part of the key: only the verified token names the tenant.
    other_first = search(cache_api, other, "lighthouse keeper", **{"X-Tenant-ID": owner["tenant_id"]})
    other_second = search(cache_api, other, "lighthouse keeper", **{"X-Tenant-ID": owner["tenant_id"]})

    assert owner_first.headers["X-Cache"] == "miss"
    assert len(owner_first.json()["results"]) == 1
    assert other_first.headers["X-Cache"] == "miss"
    assert other_first.json()["results"] == []
    assert other_second.json()["results"] == []
    assert computed(redis_client, "search") == 2
    entries = [key.decode() for key in redis_client.scan_iter(match="cache:search:*") if b"generation" not in key]
    assert sorted(key.split(":")[2] for key in entries) == sorted([owner["tenant_id"], other["tenant_id"]])


def test_tenants_never_share_a_query_embedding(cache_api, redis_client):
    # A shared entry would let one tenant time whether another has searched the same text.
    first = cache_api.register()
    second = cache_api.register()

    search(cache_api, first, "lantern oil supply", mode="vector")
    search(cache_api, second, "lantern oil supply", mode="vector")

    assert computed(redis_client, "embedding") == 2
    keys = [key.decode() for key in redis_client.scan_iter(match="cache:embedding:*")]
    assert sorted(key.split(":")[2] for key in keys) == sorted([first["tenant_id"], second["tenant_id"]])


def test_upload_invalidates_search_results(cache_api, rq_worker):
    user = cache_api.register()
    assert search(cache_api, user, "lighthouse keeper").json()["results"] == []

    uploaded = cache_api.upload_text(user, "Lighthouse", DOCUMENT_TEXT)
    assert cache_api.wait_for_document(user, uploaded.json()["document"]["id"])["status"] == "ready"
    after = search(cache_api, user, "lighthouse keeper")

    assert after.headers["X-Cache"] == "miss"
    assert len(after.json()["results"]) == 1


async def send_concurrently(base_url: str, user: dict, body: dict, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, headers=user["headers"], limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.post("/search", json=body) for _ in range(count)))


def test_cold_key_computed_once_under_200_requests(cache_api, redis_client):
    user = cache_api.register()
    # Hybrid search encodes the query, so both the results and the embedding start cold.
    body = {"query": f"single flight {uuid.uuid4().hex}", "mode": "hybrid"}

    responses = asyncio.run(send_concurrently(cache_api.base_url, user, body, CONCURRENT_REQUESTS))

    assert [response.status_code for response in responses] == [200] * CONCURRENT_REQUESTS
    assert sum(response.headers["X-Cache"] == "miss" for response in responses) == computed(redis_client, "search")
    # One computation, or two if the first took longer than the lock lives on a very slow machine.
    assert 1 <= computed(redis_client, "search") <= 2
    assert 1 <= computed(redis_client, "embedding") <= 2
    assert len({str(response.json()["results"]) for response in responses}) == 1


def settings_for(redis_url: str, **overrides) -> Settings:
    return Settings(redis_url=redis_url, environment="test", jwt_secret="test-secret-" + uuid.uuid4().hex,
                    **overrides)


def test_value_computed_during_a_write_is_not_cached(service_urls):
    tenant_id = uuid.uuid4()
    calls = []

    async def scenario() -> tuple:
        cache = Cache.connect(service_urls["redis_url"], settings_for(service_urls["redis_url"]))
        entry = cache.search_entry(tenant_id, {"query": "race"})

        async def compute_while_a_write_commits() -> dict:
            calls.append("stale")
            # The write commits and invalidates while this read is still computing.
            await cache.invalidate_tenant(tenant_id)
            return {"results": "stale"}

        async def compute_fresh() -> dict:
            calls.append("fresh")
            return {"results": "fresh"}

        try:
            first = await cache.get_or_compute(entry, compute_while_a_write_commits)
            second = await cache.get_or_compute(entry, compute_fresh)
            third = await cache.get_or_compute(entry, compute_fresh)
        finally:
            await cache.close()
        return first, second, third

    first, second, third = asyncio.run(scenario())

    assert first == ({"results": "stale"}, False)
    assert second == ({"results": "fresh"}, False)
    assert third == ({"results": "fresh"}, True)
    assert calls == ["stale", "fresh"]


def test_invalidated_user_role_is_read_again(service_urls):
    user_id = uuid.uuid4()
    tenant_id = uuid.uuid4()

    async def scenario() -> list:
        cache = Cache.connect(service_urls["redis_url"], settings_for(service_urls["redis_url"]))
        entry = cache.role_entry(tenant_id, user_id)
        roles = []
        try:
            roles.append(await cache.get_or_compute(entry, lambda: asyncio.sleep(0, {"role": "admin"})))
            roles.append(await cache.get_or_compute(entry, lambda: asyncio.sleep(0, {"role": "member"})))
            await cache.invalidate_user(user_id)
            roles.append(await cache.get_or_compute(entry, lambda: asyncio.sleep(0, {"role": "member"})))
        finally:
            await cache.close()
        return roles

    assert asyncio.run(scenario()) == [({"role": "admin"}, False), ({"role": "admin"}, True),
                                       ({"role": "member"}, False)]


def test_tenant_limits_warmed_at_start(service_urls):
    async def scenario() -> tuple:
        db = create_database(settings_for(service_urls["redis_url"]), service_urls["database_url"])
        await db.connect()
        try:
            tenant_id = await db.fetch_val(
                "INSERT INTO tenants (name, settings) VALUES ('Warm', '{\"rate_limit_per_minute\": 3}') RETURNING id")
            limits = TenantLimits(per_minute=60, per_hour=1000)
            warmed = await limits.warm(db)
        finally:
            await db.disconnect()
        # The database is closed now, so only the warmed entry can supply the override.
        return warmed, await limits.get(db, tenant_id)

    warmed, limits = asyncio.run(scenario())

    assert warmed == 1
    assert limits == (3, 1000)


def get_me(base_url: str, user: dict) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        return client.get("/users/me", headers=user["headers"])


def test_redis_outage_fails_open_then_caching_resumes(server_env):
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"

    with dedicated_redis(port) as first_redis:
        with running_server(server_env, "web-cache-outage", BACKEND_WORKERS="1", REDIS_URL=redis_url) as base_url:
            client = Api(base_url)
            user = client.register()
            client.http.close()
            assert [get_me(base_url, user).headers["X-Cache"] for _ in range(2)] == ["miss", "hit"]

            first_redis.kill()
            first_redis.wait(timeout=10)
            during_outage = [get_me(base_url, user) for _ in range(5)]
            assert [response.status_code for response in during_outage] == [200] * 5
            assert [response.headers["X-Cache"] for response in during_outage] == ["miss"] * 5
            assert during_outage[-1].json()["email"] == user["email"]

            with dedicated_redis(port):
                time.sleep(cache_module.REDIS_RETRY_SECONDS + 0.5)
                recovered = [get_me(base_url, user) for _ in range(2)]
                assert [response.status_code for response in recovered] == [200, 200]
                # The restarted Redis is empty, so the profile is computed once more and then cached.
                assert [response.headers["X-Cache"] for response in recovered] == ["miss", "hit"]


def test_disabled_cache_stores_nothing(server_env):
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"

    with dedicated_redis(port), redis.Redis.from_url(redis_url) as client:
        with running_server(server_env, "web-cache-disabled", BACKEND_WORKERS="1", REDIS_URL=redis_url,
                            CACHE_ENABLED="false") as base_url:
            api = Api(base_url)
            user = api.register()

            profiles = [get_me(base_url, user) for _ in range(3)]
            searches = [search(api, user, "anything at all") for _ in range(3)]
            api.http.close()

            assert [response.status_code for response in profiles] == [200] * 3
            assert all("X-Cache" not in response.headers for response in profiles + searches)
            assert [response.json()["cached"] for response in searches] == [False] * 3
            assert not list(client.scan_iter(match="cache:*"))


def test_admin_check_reads_stored_role(cache_api, db_url):
    admin = cache_api.register()

    async def demote() -> None:
        connection = await asyncpg.connect(db_url)
        try:
            await connection.execute("UPDATE users SET role = 'member' WHERE id = $1", uuid.UUID(admin["user_id"]))
        finally:
            await connection.close()

    # The token still carries the admin role, but the stored role that the check reads is member.
    asyncio.run(demote())
    response = cache_api.http.post("/users", headers=admin["headers"],
                                   json={"email": f"new-{uuid.uuid4().hex[:8]}@example.com",
                                         "password": "correct-horse-battery"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
