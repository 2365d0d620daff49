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
from rq.job_lifecycle import call_exception_handlers

from jobs import embedding, maintenance
from jobs.ingest import PermanentIngestionError
from jobs.queues import WORKER_QUEUES
from server import metrics
from server.logs import configure_logging, job_id_var
from server.services import export_service_urls
from server.settings import get_settings

# Named in full because `python -m jobs.worker` runs this module as `__main__`.
logger = logging.getLogger("jobs.worker")

# Seconds a worker's registration lives between heartbeats when idle; RQ blocks on the queues
# for this minus 15 s, and restarts its scheduler and cleans registries between two blocks.
WORKER_TTL_SECONDS = 60
# How often RQ cleans its registries and tries to take over a dead worker's scheduler lock.
RQ_MAINTENANCE_INTERVAL_SECONDS = 60


class IngestionWorker(Worker):
    """An RQ worker that logs an ingestion's permanent failure as one warning line.

    A file that cannot be parsed or contains no text is an expected outcome, already recorded on
    the document, so RQ's error line with a traceback would only bury real errors. Any other
    exception keeps that error line. Either way RQ then marks the job failed.
    """

    def handle_exception(self, job, *exc_info):
        error = exc_info[1]
        if not isinstance(error, PermanentIngestionError):
            super().handle_exception(job, *exc_info)
            return
        bound = job_id_var.set(job.id)
        try:
            logger.warning("ingestion failed permanently document_id=%s reason=%s", error.document_id, error.reason)
        finally:
            job_id_var.reset(bound)
        call_exception_handlers(self._exc_handlers, job, *exc_info)


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

    worker = IngestionWorker(list(WORKER_QUEUES), connection=Redis.from_url(redis_url),
                             worker_ttl=WORKER_TTL_SECONDS, job_monitoring_interval=settings.job_monitoring_interval,
                             maintenance_interval=RQ_MAINTENANCE_INTERVAL_SECONDS)
    logger.info("worker start queues=%s pid=%d", ",".join(WORKER_QUEUES), os.getpid())
    worker.work(with_scheduler=True, logging_level=settings.log_level)


if __name__ == "__main__":
    main()
