"""GET /jobs/{id}: the state of a background job, for the tenant that started it."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone

from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from sanic import Blueprint, Request
from sanic.response import json

from jobs import fairness
from jobs.queues import read_attempts
from server.auth import principal
from server.errors import NotFound

logger = logging.getLogger(__name__)

blueprint = Blueprint("jobs", url_prefix="/jobs")

# The characters RQ allows in a job id; any other id cannot name a job.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Used for the estimated start of a queued job until real durations are measured.
ASSUMED_JOB_SECONDS = 10.0


def _read_job(redis, job_id: str) -> dict | None:
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return None
    except DeserializationError:
        # A record that expired while RQ was still writing to it keeps only a few fields.
        logger.warning("job record unreadable job_id=%s", job_id)
        return None
    status = job.get_status(refresh=False)
    body = {
        "id": job.id,
        "kind": job.meta.get("kind", "job"),
        "status": status.value if status else "failed",
        "progress": 1.0 if status and status.value == "finished" else float(job.meta.get("progress", 0.0)),
        "attempts": read_attempts(redis, job.id) or int(job.meta.get("attempts", 0)),
        "error": _error(job) if status and status.value == "failed" else None,
        "document_id": job.meta.get("document_id"),
        "tenant_id": job.meta.get("tenant_id"),
        "enqueued_at": _queued_at(job),
        "started_at": job.started_at,
        "ended_at": job.ended_at,
    }
    if body["status"] == "queued":
        position = _queue_position(redis, job)
        body["queue_position"] = position
        if position is not None:
            body["estimated_start"] = datetime.now(timezone.utc) + timedelta(seconds=position * ASSUMED_JOB_SECONDS)
    return body


def _queued_at(job: Job) -> datetime | None:
    """Return when the job was queued. An ingestion job waits in its tenant's pending list before
    RQ enqueues it, so its meta's `queued_at`, set at upload, comes first."""
    queued_at = job.meta.get("queued_at")
    if queued_at:
        try:
            return datetime.fromisoformat(queued_at)
        except (TypeError, ValueError):
            logger.warning("job queued_at unreadable job_id=%s", job.id)
    return job.enqueued_at


def _queue_position(redis, job: Job) -> int | None:
    """Return how many jobs start before this one: its place in the RQ queue, or an estimate
    from the fair scheduler while it waits in its tenant's pending list."""
    position = job.get_position()
    if position is None and job.meta.get("kind") == "ingestion":
        position = fairness.jobs_ahead(redis, job.meta.get("tenant_id", ""), job.id)
    return position


def _error(job: Job) -> str:
    """Return the last line of the failure, which names the exception, and never the whole traceback."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "The job failed."


@blueprint.get("/<job_id:str>")
async def get_job(request: Request, job_id: str):
    caller = principal(request)
    if not JOB_ID_PATTERN.match(job_id):
        raise NotFound("No job with this id.")
    body = await asyncio.to_thread(_read_job, request.app.ctx.sync_redis, job_id)
    if body is None or body.pop("tenant_id") != str(caller.tenant_id):
        raise NotFound("No job with this id.")
    return json(body)
