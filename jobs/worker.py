"""The RQ worker process: `python -m jobs.worker`.

It loads the embedding model once, before RQ forks a work horse per job, so every job shares
the weights already in memory. The parent never runs an inference, because a child forked
after one hangs on its first encode.
"""

from __future__ import annotations

import logging
import os

from redis import Redis
from rq import Worker

from jobs import embedding
from jobs.queues import WORKER_QUEUES
from server import metrics
from server.logs import configure_logging
from server.services import export_service_urls
from server.settings import get_settings

logger = logging.getLogger(__name__)


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    metrics.configure(settings)
    _, redis_url = export_service_urls(settings)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    embedding.load_model()
    worker = Worker(list(WORKER_QUEUES), connection=Redis.from_url(redis_url))
    logger.info("worker start queues=%s pid=%d", ",".join(WORKER_QUEUES), os.getpid())
    worker.work(with_scheduler=True, logging_level=settings.log_level)


if __name__ == "__main__":
    main()
