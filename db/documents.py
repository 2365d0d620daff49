"""Queries on documents and their uploaded bytes. Every query is scoped by tenant."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from databases import Database

from db.rows import as_dict, as_dicts
from db.tenancy import tenant_read, tenant_write

DOCUMENT_COLUMNS = (
    "id, title, status, error, content_type, bytes, content_sha256, chunk_count, metadata,"
    " job_id, created_at, updated_at"
)


@tenant_write
async def insert_document(db: Database, *, tenant_id: UUID, user_id: UUID, title: str, content_type: str,
                          data: bytes, content_sha256: str, metadata: dict, job_id: str) -> tuple[dict, bool]:
    """Insert a queued document with its bytes; return (document, created).

    When the tenant already has a document with the same SHA-256, nothing is written and that
    document comes back with created=False.
    """
    async with db.transaction():
        record = await db.fetch_one(
            f"INSERT INTO documents"
            f" (tenant_id, created_by, title, content_type, bytes, content_sha256, metadata, job_id)"
            f" VALUES (:tenant_id, :user_id, :title, :content_type, :bytes, :sha, CAST(:metadata AS jsonb), :job_id)"
            f" ON CONFLICT (tenant_id, content_sha256) DO NOTHING RETURNING {DOCUMENT_COLUMNS}",
            {"tenant_id": tenant_id, "user_id": user_id, "title": title, "content_type": content_type,
             "bytes": len(data), "sha": content_sha256, "metadata": metadata, "job_id": job_id},
        )
        if record is None:
            existing = await db.fetch_one(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = :tenant_id AND content_sha256 = :sha",
                {"tenant_id": tenant_id, "sha": content_sha256},
            )
            return as_dict(existing), False
        await db.execute(
            "INSERT INTO document_contents (document_id, tenant_id, data) VALUES (:id, :tenant_id, :data)",
            {"id": record._mapping["id"], "tenant_id": tenant_id, "data": data},
        )
    return as_dict(record), True


@tenant_read
async def get_document(db: Database, *, tenant_id: UUID, document_id: UUID) -> dict | None:
    record = await db.fetch_one(
        f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = :id AND tenant_id = :tenant_id",
        {"id": document_id, "tenant_id": tenant_id},
    )
    return as_dict(record)


@tenant_read
async def list_documents(db: Database, *, tenant_id: UUID, limit: int, status: str | None,
                         after: tuple[datetime, UUID] | None) -> list[dict]:
    """Return up to `limit` documents, newest first, strictly after the keyset `after`."""
    conditions = ["tenant_id = :tenant_id"]
    values: dict = {"tenant_id": tenant_id, "limit": limit}
    if status is not None:
        conditions.append("status = :status")
        values["status"] = status
    if after is not None:
        conditions.append("(created_at, id) < (:after_created_at, :after_id)")
        values["after_created_at"], values["after_id"] = after
    records = await db.fetch_all(
        f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE {' AND '.join(conditions)}"
        " ORDER BY created_at DESC, id DESC LIMIT :limit",
        values,
    )
    return as_dicts(records)


@tenant_write
async def delete_document(db: Database, *, tenant_id: UUID, document_id: UUID) -> bool:
    """Delete a document; its bytes and chunks go with it through ON DELETE CASCADE."""
    deleted = await db.fetch_val(
        "DELETE FROM documents WHERE id = :id AND tenant_id = :tenant_id RETURNING id",
        {"id": document_id, "tenant_id": tenant_id},
    )
    return deleted is not None
