"""Queries on chat sessions and messages. Sessions belong to one user; every query is scoped by it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from databases import Database

from db.rows import as_dict, as_dicts
from db.tenancy import tenant_read, tenant_write

MESSAGE_COLUMNS = "id, role, content, citations, steps, usage, created_at"


@tenant_write
async def open_session(db: Database, *, tenant_id: UUID, user_id: UUID, session_key: str) -> dict:
    """Return the caller's session named `session_key`, creating it on first use."""
    record = await db.fetch_one(
        "INSERT INTO chat_sessions (tenant_id, user_id, session_key) VALUES (:tenant_id, :user_id, :key)"
        " ON CONFLICT (user_id, session_key) DO UPDATE SET updated_at = now()"
        " WHERE chat_sessions.tenant_id = EXCLUDED.tenant_id"
        " RETURNING id, session_key, created_at, updated_at",
        {"tenant_id": tenant_id, "user_id": user_id, "key": session_key},
    )
    return as_dict(record)


@tenant_read
async def find_session(db: Database, *, tenant_id: UUID, user_id: UUID, session_key: str) -> dict | None:
    record = await db.fetch_one(
        "SELECT id, session_key, created_at, updated_at FROM chat_sessions"
        " WHERE tenant_id = :tenant_id AND user_id = :user_id AND session_key = :key",
        {"tenant_id": tenant_id, "user_id": user_id, "key": session_key},
    )
    return as_dict(record)


@tenant_write
async def add_message(db: Database, *, tenant_id: UUID, session_id: UUID, role: str, content: str,
                      citations: list | None = None, steps: list | None = None, usage: dict | None = None,
                      message_id: UUID | None = None) -> dict:
    """Insert a message; `message_id` is given when the id was announced before the answer was written."""
    record = await db.fetch_one(
        "INSERT INTO chat_messages (id, tenant_id, session_id, role, content, citations, steps, usage)"
        " VALUES (coalesce(CAST(:id AS uuid), gen_random_uuid()), :tenant_id, :session_id, :role, :content,"
        " CAST(:citations AS jsonb), CAST(:steps AS jsonb), CAST(:usage AS jsonb))"
        f" RETURNING {MESSAGE_COLUMNS}",
        {"id": message_id, "tenant_id": tenant_id, "session_id": session_id, "role": role, "content": content,
         "citations": citations or [], "steps": steps or [], "usage": usage or {}},
    )
    return as_dict(record)


@tenant_read
async def recent_messages(db: Database, *, tenant_id: UUID, session_id: UUID, limit: int) -> list[dict]:
    """Return the session's last `limit` messages, oldest first."""
    records = await db.fetch_all(
        "SELECT role, content FROM ("
        "SELECT role, content, created_at, id FROM chat_messages"
        " WHERE tenant_id = :tenant_id AND session_id = :session_id ORDER BY created_at DESC, id DESC LIMIT :limit"
        ") AS latest ORDER BY created_at, id",
        {"tenant_id": tenant_id, "session_id": session_id, "limit": limit},
    )
    return as_dicts(records)


@tenant_read
async def list_sessions(db: Database, *, tenant_id: UUID, user_id: UUID, limit: int,
                        after: tuple[datetime, UUID] | None) -> list[dict]:
    """Return the user's sessions, most recently used first, strictly after the keyset `after`."""
    values: dict = {"tenant_id": tenant_id, "user_id": user_id, "limit": limit}
    keyset = ""
    if after is not None:
        keyset = " AND (updated_at, id) < (:after_at, :after_id)"
        values["after_at"], values["after_id"] = after
    records = await db.fetch_all(
        "SELECT id, session_key, created_at, updated_at FROM chat_sessions"
        f" WHERE tenant_id = :tenant_id AND user_id = :user_id{keyset}"
        " ORDER BY updated_at DESC, id DESC LIMIT :limit",
        values,
    )
    return as_dicts(records)


@tenant_read
async def list_messages(db: Database, *, tenant_id: UUID, session_id: UUID, limit: int,
                        after: tuple[datetime, UUID] | None) -> list[dict]:
    """Return the session's messages, oldest first, strictly after the keyset `after`."""
    values: dict = {"tenant_id": tenant_id, "session_id": session_id, "limit": limit}
    keyset = ""
    if after is not None:
        keyset = " AND (created_at, id) > (:after_at, :after_id)"
        values["after_at"], values["after_id"] = after
    records = await db.fetch_all(
        f"SELECT {MESSAGE_COLUMNS} FROM chat_messages"
        f" WHERE tenant_id = :tenant_id AND session_id = :session_id{keyset}"
        " ORDER BY created_at, id LIMIT :limit",
        values,
    )
    return as_dicts(records)
