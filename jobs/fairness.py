"""Fair ingestion scheduling across tenants.

Uploads do not go straight into the RQ ingestion queue. Each tenant has its own list of pending
job ids in Redis, and a ring of tenants with pending work. A dispatcher takes one job from the
next tenant of the ring in turn and enqueues it, but only while the RQ queue contains fewer than
INGESTION_DISPATCH_WINDOW jobs. A tenant with 1,000 uploads therefore has at most the window's
jobs waiting in RQ, and another tenant's upload goes in at the next free place.

The dispatcher runs after each upload, when an ingestion job starts and ends, and in the
maintenance sweep, so a lost trigger delays dispatch by one sweep interval at most.
"""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import LockError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

logger = logging.getLogger(__name__)

INGESTION_QUEUE = "ingestion"
PENDING_KEY_PREFIX = "ingestion:pending:"
# The ring is a Redis list whose tail is the tenant served next.
RING_KEY = "ingestion:ring"
DISPATCH_LOCK_KEY = "ingestion:dispatch-lock"
DISPATCH_LOCK_SECONDS = 10
DISPATCH_LOCK_WAIT_SECONDS = 5

# Append a job id to its tenant's list; a tenant that had nothing pending joins the ring's tail,
# so it is served next. Both run in one script, so no dispatcher reads the list without the ring entry.
_ADD_PENDING = """
local length = redis.call('RPUSH', KEYS[1], ARGV[2])
if length == 1 then
    redis.call('LREM', KEYS[2], 0, ARGV[1])
    redis.call('RPUSH', KEYS[2], ARGV[1])
end
return length
"""

# Take the first job of the tenant at the ring's tail, and move that tenant to the head (the back
# of the line), or drop it from the ring when its list is empty. Returns {tenant, job id} or nil.
_POP_NEXT = """
local tenants = redis.call('LLEN', KEYS[1])
for _ = 1, tenants do
    local tenant = redis.call('RPOPLPUSH', KEYS[1], KEYS[1])
    if not tenant then
        return nil
    end
    local pending = ARGV[1] .. tenant
    local job_id = redis.call('LPOP', pending)
    if redis.call('LLEN', pending) == 0 then
        redis.call('LREM', KEYS[1], 0, tenant)
    end
    if job_id then
        return {tenant, job_id}
    end
end
return nil
"""


def pending_key(tenant_id: str) -> str:
    return PENDING_KEY_PREFIX + tenant_id


def add_pending(redis: Redis, tenant_id: str, job_id: str) -> None:
    redis.eval(_ADD_PENDING, 2, pending_key(tenant_id), RING_KEY, tenant_id, job_id)


def is_pending(redis: Redis, tenant_id: str, job_id: str) -> bool:
    return redis.lpos(pending_key(tenant_id), job_id) is not None


def dispatch_lock(redis: Redis):
    """Return the lock that serializes dispatchers, so that together they never exceed the window."""
    return redis.lock(DISPATCH_LOCK_KEY, timeout=DISPATCH_LOCK_SECONDS, blocking_timeout=DISPATCH_LOCK_WAIT_SECONDS)


def dispatch(redis: Redis, window: int) -> int:
    """Move pending jobs into the RQ ingestion queue, round-robin by tenant, up to `window` waiting.

    Returns how many jobs were enqueued. When another dispatcher holds the lock past the wait,
    this one gives up: the holder, or the next trigger, does the work.
    """
    try:
        with dispatch_lock(redis):
            return dispatch_locked(redis, window)
    except LockError:
        logger.warning("ingestion dispatch skipped reason=lock_busy")
        return 0


def dispatch_locked(redis: Redis, window: int) -> int:
    """Run one dispatch. The caller must own `dispatch_lock`."""
    queue = Queue(INGESTION_QUEUE, connection=redis)
    enqueued = 0
    while queue.count < window:
        popped = redis.eval(_POP_NEXT, 1, RING_KEY, PENDING_KEY_PREFIX)
        if popped is None:
            break
        tenant_id, job_id = (value.decode() for value in popped)
        try:
            job = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:
            logger.warning("pending ingestion job missing job_id=%s tenant_id=%s", job_id, tenant_id)
            continue
        queue.enqueue_job(job)
        enqueued += 1
    return enqueued


def pending_counts(redis: Redis) -> dict[str, int]:
    """Return the number of pending jobs of each tenant in the ring."""
    tenants = [tenant.decode() for tenant in redis.lrange(RING_KEY, 0, -1)]
    with redis.pipeline(transaction=False) as pipeline:
        for tenant in tenants:
            pipeline.llen(pending_key(tenant))
        lengths = pipeline.execute()
    return dict(zip(tenants, lengths))


def jobs_ahead(redis: Redis, tenant_id: str, job_id: str) -> int | None:
    """Estimate how many jobs will start before a pending job, or None when it is not pending.

    A job at index i of its tenant's list waits for i turns of the ring. In each turn, every other
    tenant with work left gets one job, and the jobs already in the RQ queue go before all of them.
    """
    index = redis.lpos(pending_key(tenant_id), job_id)
    if index is None:
        return None
    others = sum(min(length, index + 1) for tenant, length in pending_counts(redis).items() if tenant != tenant_id)
    return Queue(INGESTION_QUEUE, connection=redis).count + index + others
