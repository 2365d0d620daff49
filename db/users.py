"""Queries on tenants and users."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
from databases import Database

from db.rows import as_dict
from db.tenancy import run_in_tenant, tenant_read, tenant_write


class EmailTaken(Exception):
    """A user with this email (compared case-insensitively) exists already."""


async def create_tenant_with_admin(db: Database, *, tenant_name: str, email: str, password_hash: str) -> dict:
    # The id is chosen here, so the transaction can name its tenant before the row exists.
    tenant_id = uuid4()

    async def create() -> dict:
        await db.execute("INSERT INTO tenants (id, name) VALUES (:id, :name)", {"id": tenant_id, "name": tenant_name})
        return await create_user(db, tenant_id=tenant_id, email=email, password_hash=password_hash, role="admin")

    user = await run_in_tenant(db, tenant_id, create, idempotent=False)
    return {"tenant_id": tenant_id, "user_id": user["id"]}


@tenant_write
async def create_user(db: Database, *, tenant_id: UUID, email: str, password_hash: str, role: str) -> dict:
    try:
        record = await db.fetch_one(
            "INSERT INTO users (tenant_id, email, password_hash, role)"
            " VALUES (:tenant_id, :email, :password_hash, :role)"
            " RETURNING id, tenant_id, email, role, created_at",
            {"tenant_id": tenant_id, "email": email, "password_hash": password_hash, "role": role},
        )
    except asyncpg.UniqueViolationError:
        raise EmailTaken(email) from None
    return as_dict(record)


async def find_user_for_login(db: Database, email: str) -> dict | None:
    """Find a user by email across tenants, through the one function that row-level security lets do so."""

    async def find() -> dict | None:
        record = await db.fetch_one(
            "SELECT id, tenant_id, email, role, password_hash FROM app_find_login(:email)", {"email": email}
        )
        return as_dict(record)

    return await run_in_tenant(db, None, find, idempotent=True)


@tenant_read
async def get_user_profile(db: Database, *, tenant_id: UUID, user_id: UUID) -> dict | None:
    record = await db.fetch_one(
        "SELECT u.id, u.email, u.role, t.id AS tenant_id, t.name AS tenant_name"
        " FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " WHERE u.id = :user_id AND u.tenant_id = :tenant_id",
        {"user_id": user_id, "tenant_id": tenant_id},
    )
    return as_dict(record)


@tenant_read
async def get_tenant_settings(db: Database, *, tenant_id: UUID) -> dict | None:
    """Return the tenant's `settings` object, or None when the tenant does not exist."""
    return await db.fetch_val("SELECT settings FROM tenants WHERE id = :tenant_id", {"tenant_id": tenant_id})


async def list_tenant_settings(db: Database, *, limit: int) -> list[dict]:
    """Return `id` and `settings` of up to `limit` tenants, the most recently created first."""
    # Runs before any tenant is known, so it reads through a function that row-level security allows.
    records = await db.fetch_all("SELECT id, settings FROM app_recent_tenant_settings(:limit)", {"limit": limit})
    return [as_dict(record) for record in records]
