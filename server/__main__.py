"""Run the web server: `python -m server`.

The main process resolves PostgreSQL and Redis (starting the embedded ones when no URL is set),
applies pending migrations once, checks the connection budget, then starts BACKEND_WORKERS
Sanic workers, each of which builds the app through the factory and opens its own pools.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader
from sanic.worker.manager import WorkerManager

from db.migrate import MigrationsNotPermitted, apply_migrations
from db.roles import role_of
from server.app import create_app
from server.database import check_app_role, check_connection_budget
from server.logs import configure_logging
from server.services import (ServiceUnreachable, admin_url_variable, export_development_jwt_secret,
                             export_service_urls, resolve_admin_database_url, stop_when_postgres_unreachable)
from server.settings import get_settings, load_settings

logger = logging.getLogger(__name__)

# Sanic counts this in tenths of a second and gives up on workers that have not acknowledged
# their start by then. Its default of 30 s is too short for several workers importing the
# stack on a 2-core machine that is busy with an ingestion job.
WORKER_START_TIMEOUT_TENTHS = 1200


async def prepare_database(admin_url: str, database_url: str, settings, workers: int) -> None:
    with stop_when_postgres_unreachable(admin_url_variable(settings), admin_url):
        await apply_migrations(admin_url, role_of(database_url))
    with stop_when_postgres_unreachable("DATABASE_URL", database_url):
        await check_connection_budget(database_url, settings, workers)
        await check_app_role(database_url)


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    if export_development_jwt_secret(settings):
        settings = load_settings()
    database_url, _ = export_service_urls(settings)
    admin_url = resolve_admin_database_url(settings, database_url)
    try:
        asyncio.run(prepare_database(admin_url, database_url, settings, settings.backend_workers))
    except (MigrationsNotPermitted, ServiceUnreachable) as error:
        raise SystemExit(str(error)) from None

    WorkerManager.THRESHOLD = WORKER_START_TIMEOUT_TENTHS
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    app.prepare(host=settings.backend_host, port=settings.backend_port, workers=settings.backend_workers,
                access_log=False, motd=False, single_process=False)
    logger.info("web start host=%s port=%d workers=%d", settings.backend_host, settings.backend_port,
                settings.backend_workers)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
