"""The RQ worker process: `python -m jobs.worker`.

It loads the embedding model once, before RQ forks a work horse per job, so every job shares
the weights already in memory. The parent never runs an inference, because a child forked
after one hangs on its first encode. Before loading the model it forks the maintenance clock
(jobs/maintenance.py), which enqueues the periodic maintenance jobs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

from redis import Redis
from rq import Worker

from jobs import embedding, maintenance
from jobs.queues import WORKER_QUEUES
from server import metrics
from server.logs import configure_logging
from server.services import export_service_urls
from server.settings import get_settings

logger = logging.getLogger(__name__)

# Seconds a worker's registration lives between heartbeats when idle; RQ blocks on the queues
# for this minus 15 s, and restarts its scheduler and cleans registries between two blocks.
WORKER_TTL_SECONDS = 60
# How often RQ cleans its registries and tries to take over a dead worker's scheduler lock.
RQ_MAINTENANCE_INTERVAL_SECONDS = 60


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    metrics.configure(settings)
    _, redis_url = export_service_urls(settings)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    clock = multiprocessing.get_context("fork").Process(
        target=maintenance.run_clock, args=(redis_url, settings, os.getpid()), name="maintenance-clock", daemon=True,
    )
    clock.start()

    started = time.perf_counter()
    embedding.load_model()
    logger.info("worker model ready seconds=%.2f pid=%d", time.perf_counter() - started, os.getpid())

    worker = Worker(list(WORKER_QUEUES), connection=Redis.from_url(redis_url), worker_ttl=WORKER_TTL_SECONDS,
                    job_monitoring_interval=settings.job_monitoring_interval,
                    maintenance_interval=RQ_MAINTENANCE_INTERVAL_SECONDS)
    logger.info("worker start queues=%s pid=%d", ",".join(WORKER_QUEUES), os.getpid())
    worker.work(with_scheduler=True, logging_level=settings.log_level)


if __name__ == "__main__":
    main()
