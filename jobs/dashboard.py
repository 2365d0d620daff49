"""rq-dashboard behind HTTP basic auth: `python -m jobs.dashboard`.

The password is DASHBOARD_PASSWORD, or else one generated on first start and kept in
DATA_DIR/dashboard.password (readable by the owner only). It travels in the environment, never
on the command line, where any local user could read it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from server.logs import configure_logging
from server.services import export_service_urls
from server.settings import get_settings

logger = logging.getLogger(__name__)

DASHBOARD_USERNAME = "admin"
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 9181


class StartLineLevel(logging.Filter):
    """Lower rq-dashboard's `* Running on` line from ERROR to INFO.

    rq-dashboard 0.9 sets the werkzeug logger to ERROR, which hides werkzeug's line per request,
    and then logs its own start line at ERROR so that the line still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(" * Running on"):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def dashboard_address() -> tuple[str, int]:
    """Return the host and port the dashboard listens on: DASHBOARD_HOST and DASHBOARD_PORT, or the defaults."""
    return os.environ.get("DASHBOARD_HOST", DASHBOARD_HOST), int(os.environ.get("DASHBOARD_PORT", DASHBOARD_PORT))


def dashboard_url() -> str:
    host, port = dashboard_address()
    return f"http://{host}:{port}"


def dashboard_password(settings) -> str:
    if settings.dashboard_password:
        return settings.dashboard_password
    path = Path(settings.data_dir) / "dashboard.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18))
    return path.read_text().strip()


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    _, redis_url = export_service_urls(settings)
    os.environ["RQ_DASHBOARD_USERNAME"] = DASHBOARD_USERNAME
    os.environ["RQ_DASHBOARD_PASSWORD"] = dashboard_password(settings)
    os.environ["RQ_DASHBOARD_REDIS_URL"] = redis_url
    host, port = dashboard_address()
    logger.info("dashboard start url=http://%s:%d username=%s password_file=%s", host, port, DASHBOARD_USERNAME,
                "none" if settings.dashboard_password else Path(settings.data_dir) / "dashboard.password")
    from rq_dashboard.cli import run

    logging.getLogger("werkzeug").addFilter(StartLineLevel())
    run(args=["--bind", host, "--port", str(port)], auto_envvar_prefix="RQ_DASHBOARD")


if __name__ == "__main__":
    main()
