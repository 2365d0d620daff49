"""Periodic maintenance jobs and the clock that enqueues them on the maintenance queue.

Each worker runs a clock process next to it. Every second the clock enqueues each periodic job
whose interval has passed. A Redis key per job, set with NX and expiring after the interval,
makes sure that one clock among all workers enqueues each run. The clock needs no RQ scheduler
lock, so it keeps working while a killed worker's scheduler lock is still held.

To add a periodic job, add a `PeriodicJob` to the list in `periodic_jobs`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from jobs.queues import MAINTENANCE_QUEUE
from server.settings import Settings

logger = logging.getLogger(__name__)

DUE_KEY_PREFIX = "maintenance:due:"
LAST_RUN_KEY_PREFIX = "maintenance:last-run:"
STALE_RUN_SECONDS = 3600
CLOCK_TICK_SECONDS = 1.0
# A run's record stays this long after it finishes, for rq-dashboard.
RESULT_TTL_SECONDS = 3600


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    function: str
    interval_seconds: int
    timeout_seconds: int


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    return [
        PeriodicJob("sweep-stuck-documents", "jobs.sweep.sweep_stuck_documents",
                    interval_seconds=settings.maintenance_sweep_interval, timeout_seconds=300),
        PeriodicJob("refresh-usage-view", "jobs.usage.refresh_usage_view",
                    interval_seconds=settings.usage_refresh_interval, timeout_seconds=600),
    ]


def enqueue_due(redis: Redis, jobs: list[PeriodicJob], failure_ttl: int) -> list[str]:
    """Enqueue each job whose last run was enqueued at least its interval ago; return their names.

    A job whose last run is still waiting or running is skipped, so runs never pile up while
    every worker is busy or starting.
    """
    queue = Queue(MAINTENANCE_QUEUE, connection=redis)
    enqueued = []
    for periodic in jobs:
        if not redis.set(DUE_KEY_PREFIX + periodic.name, "1", nx=True, ex=periodic.interval_seconds):
            continue
        if _last_run_unfinished(redis, periodic.name):
            continue
        job = queue.enqueue(periodic.function, job_timeout=periodic.timeout_seconds, result_ttl=RESULT_TTL_SECONDS,
                            failure_ttl=failure_ttl, meta={"kind": periodic.name}, description=periodic.name)
        redis.set(LAST_RUN_KEY_PREFIX + periodic.name, job.id, ex=max(failure_ttl, RESULT_TTL_SECONDS))
        enqueued.append(periodic.name)
    return enqueued


def _last_run_unfinished(redis: Redis, name: str) -> bool:
    job_id = redis.get(LAST_RUN_KEY_PREFIX + name)
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id.decode(), connection=redis)
    except NoSuchJobError:
        return False
    # A run that has waited this long was lost with its queue; a new one takes its place.
    if job.enqueued_at is not None and (datetime.now(timezone.utc) - job.enqueued_at).total_seconds() > STALE_RUN_SECONDS:
        return False
    return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED,
                                             JobStatus.DEFERRED)


def run_clock(redis_url: str, settings: Settings, parent_pid: int) -> None:
    """Enqueue due maintenance jobs every second until the worker process `parent_pid` is gone."""
    redis = Redis.from_url(redis_url)
    jobs = periodic_jobs(settings)
    logger.info("maintenance clock start jobs=%s pid=%d", ",".join(job.name for job in jobs), os.getpid())
    failing = False
    while os.getppid() == parent_pid:
        try:
            for name in enqueue_due(redis, jobs, settings.job_failure_ttl):
                logger.debug("maintenance job enqueued name=%s", name)
            failing = False
        except Exception as error:  # noqa: BLE001 - the clock outlives any failure; the next tick retries
            # Logged once per run of failures, not once a second.
            if not failing:
                logger.warning("maintenance clock tick failed error=%s", type(error).__name__,
                               exc_info=not isinstance(error, RedisError))
            failing = True
        time.sleep(CLOCK_TICK_SECONDS)
    logger.info("maintenance clock stop reason=worker_gone pid=%d", os.getpid())
