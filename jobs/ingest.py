"""The ingestion job: parse an uploaded document, cut it into chunks, embed them and store them."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from uuid import UUID

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from db import ingestion as queries
from jobs import embedding, fairness
from jobs.chunking import split_into_chunks
from jobs.parsing import NO_TEXT_MESSAGE, DocumentParseError, extract_text
from jobs.progress import progress_data, publish_event
from jobs.queues import count_attempt
from server import metrics
from server.cache import generation_key
from server.logs import job_id_var
from server.settings import get_settings

logger = logging.getLogger(__name__)

# Failures that a later attempt may not meet: lost or refused connections and timeouts,
# including the job's own timeout.
TRANSIENT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, RedisConnectionError,
                    JobTimeoutException)

# With ENVIRONMENT=test, a Redis hash under this prefix plus a document's SHA-256 injects faults
# into its ingestion: `transient_failures` attempts raise a lost connection, and `pauses` attempts
# sleep `pause_seconds` while processing. Each field counts down as it is used.
FAULT_KEY_PREFIX = "ingestion:fault:"
_TAKE_FAULT = """
local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if left > 0 then
    redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
    return 1
end
return 0
"""

# A chunk of CHUNK_TOKENS plus a title this long stays inside the model's 256-token window.
MAX_TITLE_CHARS_EMBEDDED = 120


class PermanentIngestionError(Exception):
    """The document can never be ingested as it is; retrying would fail the same way.

    The job has already marked the document failed with `reason` when it raises this.
    """

    def __init__(self, document_id: UUID, reason: str):
        super().__init__(reason)
        self.document_id = document_id
        self.reason = reason


def ingest_document(document_id: str, tenant_id: str) -> dict:
    """RQ entry point. Returns a summary; raises to make RQ retry or fail the job."""
    job = get_current_job()
    job_id_var.set(job.id if job else None)
    if job is not None:
        settings = get_settings()
        job.meta["attempts"] = count_attempt(job.connection, job.id, ttl=_attempts_ttl(settings))
        job.meta.update(embedding.load_record())
        job.save_meta()
        # This job left the RQ queue, so there is room for the next tenant's job.
        fairness.dispatch(job.connection, settings.ingestion_dispatch_window)
    try:
        return asyncio.run(_ingest(job, UUID(document_id), UUID(tenant_id)))
    except PermanentIngestionError:
        if job is not None:
            job.retries_left = 0
        raise
    finally:
        if job is not None:
            fairness.dispatch(job.connection, get_settings().ingestion_dispatch_window)


def _attempts_ttl(settings) -> int:
    """Return how long the attempts counter must last: through every retry and the job record's TTL."""
    delays = settings.ingestion_retry_delays
    return (settings.ingestion_job_timeout * (len(delays) + 1) + sum(delays)
            + max(settings.job_result_ttl, settings.job_failure_ttl))


async def _connect() -> asyncpg.Connection:
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    await register_vector(connection)
    return connection


def _report(job, document_id: UUID, status: str, done: int, total: int) -> None:
    data = progress_data(status, done, total)
    if job is not None:
        job.meta["progress"] = data["progress"]
        job.save_meta()
        publish_event(job.connection, str(document_id), "progress", data)


async def _ingest(job, document_id: UUID, tenant_id: UUID) -> dict:
    settings = get_settings()
    started = time.perf_counter()
    connection = await _connect()
    try:
        document = await queries.load_document_for_ingestion(connection, tenant_id=tenant_id, document_id=document_id)
        if document is None:
            logger.info("ingestion skipped reason=document_deleted document_id=%s", document_id)
            return {"status": "skipped", "chunks": 0}

        await queries.set_status(connection, tenant_id=tenant_id, document_id=document_id, status="processing")
        _report(job, document_id, "processing", 0, 0)
        if job is not None and settings.environment == "test":
            await _inject_faults(job, document["content_sha256"])

        try:
            text = extract_text(bytes(document["data"]), document["content_type"])
            pieces = split_into_chunks(text, embedding.count_tokens, settings.chunk_tokens,
                                       settings.chunk_overlap_tokens)
            if not pieces:
                raise DocumentParseError(NO_TEXT_MESSAGE)
        except DocumentParseError as error:
            await _fail(connection, job, tenant_id, document_id, str(error))
            # The worker logs this failure as one warning line (jobs/worker.py).
            raise PermanentIngestionError(document_id, str(error)) from error

        contents = [piece.content for piece in pieces]
        # Each chunk is embedded under its document's title, so that a chunk deep inside a
        # document still carries what the document is about. The stored content is the chunk alone.
        title = document["title"][:MAX_TITLE_CHARS_EMBEDDED]
        titled = [f"{title}\n\n{content}" for content in contents]
        vectors = []
        batch = settings.embedding_batch_size
        for start in range(0, len(titled), batch):
            # A document deleted meanwhile is not worth the rest of its embedding.
            if start and not await queries.is_unfinished(connection, tenant_id=tenant_id, document_id=document_id):
                logger.info("ingestion stopped reason=document_deleted document_id=%s chunks_done=%d",
                            document_id, start)
                return {"status": "skipped", "chunks": 0}
            with metrics.timed("ingestion.embedding_batch"):
                vectors.append(embedding.encode(titled[start:start + batch], batch_size=batch))
            _report(job, document_id, "processing", min(start + batch, len(contents)), len(contents))
        embeddings = np.concatenate(vectors)

        stored = await queries.replace_chunks(
            connection, tenant_id=tenant_id, document_id=document_id, contents=contents,
            token_counts=[piece.token_count for piece in pieces], embeddings=embeddings,
        )
        if not stored:
            logger.info("ingestion skipped reason=document_deleted document_id=%s", document_id)
            return {"status": "skipped", "chunks": 0}
    except TRANSIENT_ERRORS:
        await _fail_if_last_attempt(job, tenant_id, document_id)
        raise
    finally:
        await connection.close()

    seconds = time.perf_counter() - started
    metrics.record_ingestion(len(contents), seconds)
    if job is not None:
        # After the commit, so a search racing the write can only cache under the old generation.
        job.connection.incr(generation_key(tenant_id))
        job.meta["progress"] = 1.0
        job.save_meta()
        publish_event(job.connection, str(document_id), "ready", progress_data("ready", len(contents), len(contents)))
    logger.info("ingestion done document_id=%s chunks=%d seconds=%.2f chunks_per_second=%.1f",
                document_id, len(contents), seconds, len(contents) / seconds if seconds else 0.0)
    return {"status": "ready", "chunks": len(contents), "seconds": round(seconds, 3)}


async def _inject_faults(job, content_sha256: str) -> None:
    key = FAULT_KEY_PREFIX + content_sha256
    if job.connection.eval(_TAKE_FAULT, 1, key, "pauses"):
        seconds = float(job.connection.hget(key, "pause_seconds") or 0)
        logger.info("injected pause seconds=%.1f", seconds)
        await asyncio.sleep(seconds)
    if job.connection.eval(_TAKE_FAULT, 1, key, "transient_failures"):
        logger.info("injected transient failure")
        raise ConnectionResetError("injected transient failure")


async def _fail(connection: asyncpg.Connection, job, tenant_id: UUID, document_id: UUID, reason: str) -> None:
    await queries.set_status(connection, tenant_id=tenant_id, document_id=document_id, status="failed", error=reason)
    if job is not None:
        publish_event(job.connection, str(document_id), "failed", {"status": "failed", "error": reason})


async def _fail_if_last_attempt(job, tenant_id: UUID, document_id: UUID) -> None:
    """After the last retry, record the failure on the document so it never stays `processing`."""
    if job is not None and job.retries_left:
        logger.warning("ingestion attempt failed, will retry document_id=%s retries_left=%s",
                       document_id, job.retries_left)
        return
    reason = "Ingestion failed repeatedly because a service was unavailable; upload the document again."
    logger.info("ingestion failed document_id=%s reason=%s", document_id, reason)
    try:
        connection = await _connect()
        try:
            await _fail(connection, job, tenant_id, document_id, reason)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError):
        logger.exception("ingestion failure not recorded document_id=%s", document_id)
