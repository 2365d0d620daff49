"""The stuck-document sweep: no document stays `queued` or `processing` once its job is gone.

It runs as a job on the maintenance queue (see jobs/maintenance.py) and, in order:
1. hands abandoned executions to RQ: a started job whose worker has sent no heartbeat for two
   JOB_MONITORING_INTERVALs is retried if it has retries left, otherwise marked failed;
2. enqueues scheduled jobs (retries) that are due, because a killed worker's RQ scheduler keeps
   its lock for about a minute and no other scheduler runs them meanwhile;
3. compares each unfinished document with its job and repairs the disagreement: a missing or
   lost job is created again, a failed or stopped job marks the document failed;
4. dispatches pending ingestion jobs, in case a trigger was lost.
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg
from redis import Redis
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.utils import current_timestamp

from db import ingestion as queries
from jobs import fairness
from jobs.progress import publish_event
from jobs.queues import INGESTION_QUEUE, WORKER_QUEUES, create_ingestion_job
from server.settings import get_settings

logger = logging.getLogger(__name__)

# RQ scores a started job at its last heartbeat + JOB_MONITORING_INTERVAL + this margin.
RQ_HEARTBEAT_MARGIN_SECONDS = 60
# Documents repaired per run; the next run takes the rest.
MAX_DOCUMENTS_PER_SWEEP = 200
# The sweep keeps dispatchers out while it compares documents with jobs, for at most this long.
SWEEP_LOCK_SECONDS = 60

LOST_WORKER_MESSAGE = ("Ingestion stopped because the worker processing this document was lost, "
                       "and it was retried as often as allowed; upload the document again.")
FAILED_JOB_MESSAGE = "Ingestion failed and will not be retried; upload the document again."
STOPPED_JOB_MESSAGE = "Ingestion was stopped before it finished; upload the document again."


def sweep_stuck_documents() -> dict:
    """RQ entry point. Returns counts of what the sweep repaired."""
    job = get_current_job()
    redis = job.connection if job is not None else Redis.from_url(os.environ["REDIS_URL"])
    settings = get_settings()

    abandoned = clean_abandoned_executions(redis, settings.job_monitoring_interval)
    scheduled = enqueue_due_scheduled_jobs(redis)
    repairs = asyncio.run(_repair_documents(redis, idle_seconds=settings.maintenance_sweep_interval))
    dispatched = fairness.dispatch(redis, settings.ingestion_dispatch_window)
    summary = {"abandoned": abandoned, "scheduled": scheduled, "dispatched": dispatched, **repairs}
    logger.info("sweep done abandoned=%d scheduled=%d dispatched=%d requeued=%d failed=%d", abandoned,
                scheduled, dispatched, repairs["requeued"], repairs["failed"])
    return summary


def clean_abandoned_executions(redis: Redis, monitoring_interval: int) -> int:
    """Let RQ retry or fail every started job whose heartbeat is more than one interval overdue."""
    cutoff = current_timestamp() + RQ_HEARTBEAT_MARGIN_SECONDS - monitoring_interval
    count = 0
    for name in WORKER_QUEUES:
        registry = StartedJobRegistry(name, connection=redis)
        count += len(registry.get_expired_job_ids(cutoff))
        registry.cleanup(timestamp=cutoff)
    return count


def enqueue_due_scheduled_jobs(redis: Redis) -> int:
    """Enqueue every scheduled job whose time has come; return how many were enqueued."""
    count = 0
    for name in WORKER_QUEUES:
        queue = Queue(name, connection=redis)
        registry = ScheduledJobRegistry(queue=queue)
        for job_id in registry.get_jobs_to_schedule(current_timestamp()):
            # ZREM succeeds for one caller only, so a job is never enqueued twice from here.
            if not redis.zrem(registry.key, job_id):
                continue
            try:
                queue.enqueue_job(Job.fetch(job_id, connection=redis))
            except NoSuchJobError:
                continue
            count += 1
    return count


async def _repair_documents(redis: Redis, *, idle_seconds: float) -> dict:
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        documents = await queries.find_unfinished_documents(connection, idle_seconds=idle_seconds,
                                                            limit=MAX_DOCUMENTS_PER_SWEEP)
        repairs = {"requeued": 0, "failed": 0}
        # Under the dispatch lock, no job is between its tenant's pending list and the RQ queue.
        # A worker moves a job it dequeues through RQ's intermediate queue, which counts as queued.
        with redis.lock(fairness.DISPATCH_LOCK_KEY, timeout=SWEEP_LOCK_SECONDS,
                        blocking_timeout=fairness.DISPATCH_LOCK_WAIT_SECONDS):
            queue = Queue(INGESTION_QUEUE, connection=redis)
            queued_ids = set(queue.get_job_ids())
            queued_ids.update(job_id.decode() for job_id in redis.lrange(f"{queue.key}:intermediate", 0, -1))
            for document in documents:
                action = await _repair(connection, redis, document, queued_ids)
                if action:
                    repairs[action] += 1
        return repairs
    finally:
        await connection.close()


async def _repair(connection: asyncpg.Connection, redis: Redis, document: asyncpg.Record,
                  queued_ids: set[str]) -> str | None:
    """Bring one document in line with its job; return "requeued", "failed" or None."""
    document_id, tenant_id, job_id = str(document["id"]), str(document["tenant_id"]), document["job_id"]
    try:
        job = Job.fetch(job_id, connection=redis) if job_id else None
    except NoSuchJobError:
        job = None
    status = job.get_status(refresh=False) if job is not None else None

    if status in (JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return None
    if status == JobStatus.QUEUED and (job.id in queued_ids or fairness.is_pending(redis, tenant_id, job.id)):
        return None
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        return "failed" if await _mark_failed(connection, redis, document, _failure_message(job, status)) else None

    # The job is missing, queued nowhere, or finished without making the document ready. The
    # job may have finished since the documents were read, so look at the document again.
    if not await queries.is_unfinished(connection, tenant_id=document["tenant_id"], document_id=document["id"]):
        return None
    if job is not None:
        job.delete()
    job_id = job_id or document_id
    create_ingestion_job(redis, job_id=job_id, document_id=document_id, tenant_id=tenant_id,
                         timeout=get_settings().ingestion_job_timeout)
    fairness.add_pending(redis, tenant_id, job_id)
    logger.warning("document requeued document_id=%s job_id=%s job_status=%s", document_id, job_id,
                   status.value if status else "missing")
    return "requeued"


def _failure_message(job: Job, status: JobStatus) -> str:
    if status != JobStatus.FAILED:
        return STOPPED_JOB_MESSAGE
    result = job.latest_result()
    if result is not None and "AbandonedJobError" in (result.exc_string or ""):
        return LOST_WORKER_MESSAGE
    return FAILED_JOB_MESSAGE


async def _mark_failed(connection: asyncpg.Connection, redis: Redis, document: asyncpg.Record, reason: str) -> bool:
    marked = await queries.fail_if_unfinished(connection, tenant_id=document["tenant_id"],
                                              document_id=document["id"], error=reason)
    if not marked:
        return False
    publish_event(redis, str(document["id"]), "failed", {"status": "failed", "error": reason})
    logger.warning("document marked failed document_id=%s job_id=%s reason=%s", document["id"],
                   document["job_id"], reason)
    return True
