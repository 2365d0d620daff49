"""Migrations apply once, in order, and concurrent runs do not collide."""

import asyncio
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from db.migrate import MigrationsNotPermitted, apply_migrations, migration_files
from db.roles import role_of
from tests.conftest import ROOT, running_server


def test_second_run_applies_nothing(db_url):
    assert asyncio.run(apply_migrations(db_url)) == []


def test_concurrent_runs_on_empty_database_apply_each_file_once(db_url):
    name = f"migrate_race_{uuid.uuid4().hex[:8]}"
    fresh_url = db_url.rsplit("/", 1)[0] + "/" + name

    async def race():
        admin = await asyncpg.connect(db_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return await asyncio.gather(*(apply_migrations(fresh_url) for _ in range(4)))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()

    runs = asyncio.run(race())
    applied = sorted(version for run in runs for version in run)
    assert applied == [path.name for path in migration_files()]


def test_every_file_is_recorded(db_url):
    async def recorded():
        connection = await asyncpg.connect(db_url)
        try:
            return [row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        finally:
            await connection.close()

    assert asyncio.run(recorded()) == [path.name for path in migration_files()]


def test_chunks_table_has_384_dimension_vectors(db_url):
    async def dimension():
        connection = await asyncpg.connect(db_url)
        try:
            return await connection.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
            )
        finally:
            await connection.close()

    assert asyncio.run(dimension()) == "vector(384)"


def database_url_with_name(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def test_app_role_finds_nothing_pending(service_urls):
    # The application role may not run DDL; a check that began with CREATE TABLE IF NOT EXISTS
    # failed with "permission denied for schema public" although nothing was pending.
    assert asyncio.run(apply_migrations(service_urls["app_database_url"])) == []


def test_server_starts_as_app_role_without_admin_url(server_env):
    env = {key: value for key, value in server_env.items() if key != "DATABASE_ADMIN_URL"}

    with running_server(env, "web-app-role-only", BACKEND_WORKERS="1") as base_url:
        assert httpx.get(f"{base_url}/health/ready", timeout=10).status_code == 200


def test_pending_migrations_denied_exit_cleanly(server_env, service_urls):
    name = f"migrate_denied_{uuid.uuid4().hex[:8]}"
    owner_url = service_urls["database_url"]
    env = {key: value for key, value in server_env.items() if key != "DATABASE_ADMIN_URL"}
    env["DATABASE_URL"] = database_url_with_name(service_urls["app_database_url"], name)

    async def create_database() -> None:
        connection = await asyncpg.connect(owner_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    async def drop_database() -> None:
        connection = await asyncpg.connect(owner_url)
        try:
            await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(create_database())
    try:
        result = subprocess.run([sys.executable, "-m", "server"], capture_output=True, text=True, timeout=120,
                                env=env, cwd=ROOT)
    finally:
        asyncio.run(drop_database())

    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert "migrations are pending" in last_line
    assert "DATABASE_ADMIN_URL" in last_line


def test_unreadable_migration_log_names_admin_url(service_urls):
    # A database migrated before the application role was granted SELECT on schema_migrations.
    name = f"migrate_unreadable_{uuid.uuid4().hex[:8]}"
    owner_url = database_url_with_name(service_urls["database_url"], name)
    app_url = database_url_with_name(service_urls["app_database_url"], name)
    app_role = role_of(app_url)

    async def run() -> None:
        admin = await asyncpg.connect(service_urls["database_url"])
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await apply_migrations(owner_url, app_role)
            owner = await asyncpg.connect(owner_url)
            try:
                await owner.execute(f'REVOKE ALL ON schema_migrations FROM "{app_role}"')
            finally:
                await owner.close()
            with pytest.raises(MigrationsNotPermitted) as raised:
                await apply_migrations(app_url)
            assert "may not read schema_migrations" in str(raised.value)
            assert "DATABASE_ADMIN_URL" in str(raised.value)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()

    asyncio.run(run())
