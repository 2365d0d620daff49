"""Migrations apply once, in order, and concurrent runs do not collide."""

import asyncio
import uuid

import asyncpg

from db.migrate import apply_migrations, migration_files


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
