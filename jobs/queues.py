"""Queue names and enqueueing, shared by the web server (which enqueues) and the workers."""

from __future__ import annotations

from datetime import datetime, timezone

from redis import Redis
from rq import Queue, Retry
from rq.job import Job

from jobs import fairness
from jobs.fairness import INGESTION_QUEUE
from server.settings import get_settings

# Attempts are counted apart from the job's meta, because when a work horse dies, RQ saves the
# job with the meta it read before the attempt began.
ATTEMPTS_KEY_PREFIX = "ingestion:attempts:"

DEFAULT_QUEUE = "default"
MAINTENANCE_QUEUE = "maintenance"
# Workers take from these queues in this order. Maintenance jobs are short and go first, so a
# backlog of ingestion delays the sweep that repairs stuck documents only by the jobs running.
WORKER_QUEUES = (MAINTENANCE_QUEUE, INGESTION_QUEUE, DEFAULT_QUEUE)


def attempts_key(job_id: str) -> str:
    return ATTEMPTS_KEY_PREFIX + job_id


def count_attempt(redis: Redis, job_id: str, ttl: int) -> int:
    """Count one more attempt of the job and return the total."""
    with redis.pipeline() as pipeline:
        pipeline.incr(attempts_key(job_id))
        pipeline.expire(attempts_key(job_id), ttl)
        attempts, _ = pipeline.execute()
    return int(attempts)


def read_attempts(redis: Redis, job_id: str) -> int | None:
    value = redis.get(attempts_key(job_id))
    return int(value) if value is not None else None


def create_ingestion_job(redis: Redis, *, job_id: str, document_id: str, tenant_id: str, timeout: int) -> Job:
    """Save an ingestion job in Redis without enqueueing it. `fairness.dispatch` enqueues it later.

    RQ sets the job's `enqueued_at` only when the dispatcher moves it into the RQ queue, so the
    time the job was queued is kept in its meta as `queued_at` (ISO 8601, UTC).
    """
    settings = get_settings()
    delays = settings.ingestion_retry_delays
    job = Queue(INGESTION_QUEUE, connection=redis).create_job(
        "jobs.ingest.ingest_document",
        args=(document_id, tenant_id),
        job_id=job_id,
        timeout=timeout,
        result_ttl=settings.job_result_ttl,
        failure_ttl=settings.job_failure_ttl,
        retry=Retry(max=len(delays), interval=delays) if delays else None,
        meta={"kind": "ingestion", "tenant_id": tenant_id, "document_id": document_id, "progress": 0.0,
              "attempts": 0, "queued_at": datetime.now(timezone.utc).isoformat()},
        description=f"ingest document {document_id}",
    )
    job.origin = INGESTION_QUEUE
    job.save()
    return job


def enqueue_ingestion(redis: Redis, *, job_id: str, document_id: str, tenant_id: str, timeout: int) -> None:
    """Queue a document's ingestion behind its tenant's earlier uploads, then dispatch fairly."""
    create_ingestion_job(redis, job_id=job_id, document_id=document_id, tenant_id=tenant_id, timeout=timeout)
    fairness.add_pending(redis, tenant_id, job_id)
    fairness.dispatch(redis, get_settings().ingestion_dispatch_window)
