"""Documents: upload, list, get, delete, and the ingestion progress events stream."""

from __future__ import annotations

import asyncio
import hashlib
import json as jsonlib
import logging
import uuid
from uuid import UUID

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint, Request
from redis.exceptions import RedisError
from sanic.headers import parse_content_header
from sanic.request.form import parse_multipart_form
from sanic.request.parameters import RequestParameters
from sanic.response import empty, json

from db import documents as queries
from db import ingestion as ingestion_queries
from jobs.parsing import EmptyDocument, UnsupportedContentType, detect_content_type
from jobs.progress import LATEST_EVENT_TTL_SECONDS, TERMINAL_EVENTS, channel_name, latest_key, progress_data
from jobs.queues import enqueue_ingestion
from server.auth import principal
from server.errors import (BadRequest, NotFound, PayloadTooLarge, RateLimited, ServiceUnavailable, UnsupportedMediaType,
                           ValidationFailed)
from server.jsonenc import dumps
from server.metrics import counts_open_stream
from server.pagination import decode_cursor, page, parse_limit, scope_tag
from server.sse import PING, SSE_HEADERS, format_event, parse_message
from server.validation import read_json, reject_unstorable_strings, validate

logger = logging.getLogger(__name__)

blueprint = Blueprint("documents", url_prefix="/documents", strict_slashes=False)

STATUSES = ("queued", "processing", "ready", "failed")
MAX_TITLE_CHARS = 500
MAX_METADATA_BYTES = 16 * 1024
# An estimate of when one of a capped tenant's documents is done: a few jobs' time.
INGESTION_CAP_RETRY_AFTER_SECONDS = 30
DELETED_MESSAGE = "The document was deleted."


class JsonUpload(BaseModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)]
    text: str
    metadata: dict = Field(default_factory=dict)


def document_body(row: dict) -> dict:
    return {key: row[key] for key in (
        "id", "title", "status", "error", "content_type", "bytes", "content_sha256", "chunk_count", "metadata",
        "created_at", "updated_at",
    )}


def parse_document_id(raw: str) -> UUID:
    """Parse a path id. A malformed id is as unknown as a missing one, so it gets 404 too."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("No document with this id.") from None


def _check_metadata(metadata: object) -> dict:
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object.",
                               details=[{"field": "metadata", "problem": "must be an object"}])
    if len(jsonlib.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValidationFailed(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON.",
                               details=[{"field": "metadata", "problem": "too large"}])
    return metadata


def parse_multipart(request: Request) -> tuple[RequestParameters, RequestParameters]:
    """Parse a multipart/form-data body into (fields, files), raising BadRequest when it is malformed.

    Sanic 25.12's own `request.files` logs a traceback and returns nothing for a body it cannot parse,
    which would read as a missing 'file' part.
    """
    _, parameters = parse_content_header(request.headers.get("content-type", ""))
    boundary = parameters.get("boundary")
    if not boundary:
        raise BadRequest("The multipart body is malformed: the Content-Type header has no boundary parameter.")
    delimiter = boundary.encode("utf-8")
    if b"--" + delimiter not in request.body:
        raise BadRequest("The multipart body is malformed: it does not contain its boundary.")
    try:
        return parse_multipart_form(request.body, delimiter)
    except (ValueError, LookupError):
        raise BadRequest("The multipart body is malformed: a part's headers could not be read.") from None


def read_upload(request: Request) -> tuple[bytes, str | None, str | None, dict]:
    """Return (data, title, file name, metadata) from a multipart or JSON upload."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form, files = parse_multipart(request)
        upload = files.get("file")
        if upload is None:
            raise ValidationFailed("The multipart body needs a 'file' part.",
                                   details=[{"field": "file", "problem": "missing"}])
        raw_metadata = form.get("metadata")
        try:
            metadata = jsonlib.loads(raw_metadata) if raw_metadata else {}
        except ValueError:
            raise ValidationFailed("metadata must be a JSON object given as a string.",
                                   details=[{"field": "metadata", "problem": "not valid JSON"}]) from None
        title = (form.get("title") or upload.name or "").strip() or "Untitled"
        reject_unstorable_strings({"title": title, "metadata": metadata})
        return upload.body, title[:MAX_TITLE_CHARS], upload.name, _check_metadata(metadata)
    if content_type in ("application/json", ""):
        body = validate(JsonUpload, read_json(request))
        return body.text.encode("utf-8"), body.title, None, _check_metadata(body.metadata)
    raise UnsupportedMediaType("Upload a file as multipart/form-data or text as application/json.")


async def check_ingestion_cap(request: Request, tenant_id: UUID, content_sha256: str) -> None:
    """Raise 429 when the tenant already has INGESTION_MAX_QUEUED_PER_TENANT documents not ingested yet.

    A duplicate upload enqueues nothing, so it passes even at the cap.
    NOTE: two uploads checked at the same moment can both pass, so the cap can be exceeded by the
    number of concurrent uploads of one tenant.
    """
    cap = request.app.ctx.settings.ingestion_max_queued_per_tenant
    unfinished, duplicate = await ingestion_queries.count_unfinished_for_upload(
        request.app.ctx.db, tenant_id=tenant_id, content_sha256=content_sha256)
    if duplicate or unfinished < cap:
        return
    logger.info("upload rejected reason=ingestion_cap unfinished=%d cap=%d", unfinished, cap)
    raise RateLimited(f"The tenant already has {unfinished} documents waiting for ingestion, and the limit is {cap}. "
                      f"Retry after some of them are ready.",
                      headers={"Retry-After": str(INGESTION_CAP_RETRY_AFTER_SECONDS)})


@blueprint.post("/")
async def upload_document(request: Request):
    caller = principal(request)
    settings = request.app.ctx.settings
    data, title, filename, metadata = read_upload(request)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"The document is {len(data)} bytes; the limit is {settings.max_upload_bytes} bytes.")
    try:
        content_type = detect_content_type(data, filename=filename)
    except EmptyDocument:
        field = "file" if filename is not None else "text"
        raise ValidationFailed("The document is empty.", details=[{"field": field, "problem": "empty"}]) from None
    except UnsupportedContentType as error:
        raise UnsupportedMediaType(str(error)) from None

    content_sha256 = hashlib.sha256(data).hexdigest()
    await check_ingestion_cap(request, caller.tenant_id, content_sha256)
    job_id = str(uuid.uuid4())
    document, created = await queries.insert_document(
        request.app.ctx.db, tenant_id=caller.tenant_id, user_id=caller.user_id, title=title or "Untitled",
        content_type=content_type, data=data, content_sha256=content_sha256,
        metadata=metadata, job_id=job_id,
    )
    if not created:
        return json({"document": document_body(document), "duplicate": True}, status=200)

    try:
        await asyncio.to_thread(
            enqueue_ingestion, request.app.ctx.sync_redis, job_id=job_id, document_id=str(document["id"]),
            tenant_id=str(caller.tenant_id), timeout=settings.ingestion_job_timeout,
        )
    except Exception as error:  # noqa: BLE001 - any enqueue failure must undo the insert
        logger.error("enqueue failed document_id=%s error=%s", document["id"], type(error).__name__)
        await queries.delete_document(request.app.ctx.db, tenant_id=caller.tenant_id, document_id=document["id"])
        raise ServiceUnavailable("The job queue is unavailable; retry the upload shortly.",
                                 headers={"Retry-After": "5"}) from None
    logger.info("document queued document_id=%s job_id=%s bytes=%d content_type=%s",
                document["id"], job_id, len(data), content_type)
    return json({"document": document_body(document), "job_id": job_id}, status=202)


@blueprint.get("/")
async def list_documents(request: Request):
    caller = principal(request)
    limit = parse_limit(request)
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}.",
                               details=[{"field": "status", "problem": f"unknown status {status!r}"}])
    scope = scope_tag("documents", status)
    rows = await queries.list_documents(request.app.ctx.db, tenant_id=caller.tenant_id, limit=limit + 1,
                                        status=status, after=decode_cursor(request, scope))
    body = page(rows, limit, scope)
    body["items"] = [document_body(row) for row in body["items"]]
    return json(body)


@blueprint.get("/<document_id:str>")
async def get_document(request: Request, document_id: str):
    caller = principal(request)
    row = await queries.get_document(request.app.ctx.db, tenant_id=caller.tenant_id,
                                     document_id=parse_document_id(document_id))
    if row is None:
        raise NotFound("No document with this id.")
    return json(document_body(row))


@blueprint.delete("/<document_id:str>")
async def delete_document(request: Request, document_id: str):
    caller = principal(request)
    deleted = await queries.delete_document(request.app.ctx.db, tenant_id=caller.tenant_id,
                                            document_id=parse_document_id(document_id))
    if not deleted:
        raise NotFound("No document with this id.")
    await request.app.ctx.cache.invalidate_tenant(caller.tenant_id)
    await _announce_deletion(request.app.ctx.redis, document_id)
    logger.info("document deleted document_id=%s", document_id)
    return empty(status=204)


async def _announce_deletion(redis, document_id: str) -> None:
    """End the document's open event streams with a `failed` event; they would otherwise wait forever."""
    message = dumps({"event": "failed", "data": {"status": "failed", "error": DELETED_MESSAGE}})
    try:
        async with redis.pipeline(transaction=False) as pipeline:
            pipeline.set(latest_key(document_id), message, ex=LATEST_EVENT_TTL_SECONDS)
            pipeline.publish(channel_name(document_id), message)
            await pipeline.execute()
    except RedisError as error:
        logger.warning("deletion not announced document_id=%s error=%s", document_id, type(error).__name__)


def _state_event(row: dict) -> tuple[str, dict]:
    if row["status"] == "ready":
        return "ready", progress_data("ready", row["chunk_count"], row["chunk_count"])
    if row["status"] == "failed":
        return "failed", {"status": "failed", "error": row["error"]}
    return "progress", progress_data(row["status"], 0, 0)


@blueprint.get("/<document_id:str>/events")
@counts_open_stream
async def document_events(request: Request, document_id: str):
    """Stream `progress` events, then one `ready` or `failed` event, then end."""
    caller = principal(request)
    doc_id = parse_document_id(document_id)
    db, redis = request.app.ctx.db, request.app.ctx.redis
    row = await queries.get_document(db, tenant_id=caller.tenant_id, document_id=doc_id)
    if row is None:
        raise NotFound("No document with this id.")

    pubsub = redis.pubsub()
    try:
        # Subscribe before reading the state again, so no event falls between the read and the
        # subscription. Each open stream keeps one Redis connection until it ends.
        await pubsub.subscribe(channel_name(str(doc_id)))
    except RedisError as error:
        await pubsub.aclose()
        logger.warning("events stream rejected document_id=%s error=%s", doc_id, type(error).__name__)
        raise ServiceUnavailable("Too many event streams are open; retry shortly.",
                                 headers={"Retry-After": "5"}) from None
    try:
        await _stream_document_events(request, pubsub, caller, doc_id)
    finally:
        await pubsub.aclose()


async def _stream_document_events(request: Request, pubsub, caller, doc_id: UUID) -> None:
    db, redis = request.app.ctx.db, request.app.ctx.redis
    response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
    row = await queries.get_document(db, tenant_id=caller.tenant_id, document_id=doc_id)
    if row is None:
        await response.send(format_event("failed", {"status": "failed", "error": DELETED_MESSAGE}))
        await response.eof()
        return
    event, data = _state_event(row)
    try:
        latest = await redis.get(latest_key(str(doc_id)))
    except RedisError as error:
        # The stream still starts, from the state in PostgreSQL.
        logger.warning("latest event unreadable document_id=%s error=%s", doc_id, type(error).__name__)
        latest = None
    if event == "progress" and latest:
        event, data = parse_message(latest)
    await response.send(format_event(event, data))
    heartbeat = request.app.ctx.settings.sse_heartbeat_seconds
    while event not in TERMINAL_EVENTS:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=heartbeat)
        if message is None:
            await response.send(PING)
            continue
        event, data = parse_message(message["data"])
        await response.send(format_event(event, data))
    await response.eof()
