"""Queue names and enqueueing, shared by the web server (which enqueues) and the workers."""

from __future__ import annotations

from redis import Redis
from rq import Queue, Retry

INGESTION_QUEUE = "ingestion"
DEFAULT_QUEUE = "default"
MAINTENANCE_QUEUE = "maintenance"
# Workers take from these queues in this order.
WORKER_QUEUES = (INGESTION_QUEUE, DEFAULT_QUEUE, MAINTENANCE_QUEUE)

# Finished job records stay readable for GET /jobs/{id} this long, failed ones longer.
RESULT_TTL_SECONDS = 24 * 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600
# Transient failures (a lost connection, a timeout) are retried after these delays.
RETRY_INTERVALS_SECONDS = [5, 30, 120]


def enqueue_ingestion(redis: Redis, *, job_id: str, document_id: str, tenant_id: str, timeout: int) -> None:
    queue = Queue(INGESTION_QUEUE, connection=redis)
    queue.enqueue(
        "jobs.ingest.ingest_document",
        document_id,
        tenant_id,
        job_id=job_id,
        job_timeout=timeout,
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        retry=Retry(max=len(RETRY_INTERVALS_SECONDS), interval=RETRY_INTERVALS_SECONDS),
        meta={"kind": "ingestion", "tenant_id": tenant_id, "document_id": document_id, "progress": 0.0},
        description=f"ingest document {document_id}",
    )
