"""The chat event streams of one worker: sending them, following the Redis log, and ending them at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager

from redis.exceptions import RedisError
from sanic.response import HTTPResponse

from server.chat.events import TERMINAL_EVENTS, EventLog
from server.chat.run import SERVER_RESTARTING, STOP_MESSAGES, ChatRun
from server.sse import PING, format_event

logger = logging.getLogger(__name__)

# A follower of the Redis log checks for shutdown and an expired log at least this often.
FOLLOW_POLL_SECONDS = 1.0


class ChatStreams:
    """The answers being produced and the streams being sent by one worker."""

    def __init__(self, event_log: EventLog | None):
        self.event_log = event_log
        self.runs: set[ChatRun] = set()
        self.open_streams = 0
        self.closing = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self, run: ChatRun) -> None:
        self.runs.add(run)
        run.start().add_done_callback(lambda _task: self.runs.discard(run))

    @contextmanager
    def open_stream(self):
        """Count a stream being sent, so that shutdown can wait for it to end."""
        self.open_streams += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.open_streams -= 1
            if self.open_streams == 0:
                self._idle.set()

    async def close(self, timeout: float) -> None:
        """Stop every answer with a `server_restarting` error and wait up to `timeout` s for the streams to end."""
        self.closing.set()
        runs = list(self.runs)
        for run in runs:
            run.stop(SERVER_RESTARTING)
        started = time.monotonic()
        tasks = {run.task for run in runs if run.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=remaining)
        except asyncio.TimeoutError:
            logger.warning("chat streams still open at shutdown streams=%d", self.open_streams)
        logger.info("chat streams closed runs_stopped=%d", len(runs))


def _seconds_until(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


async def send_run_events(response: HTTPResponse, run: ChatRun, heartbeat: float) -> None:
    """Send a local answer's events as they come, with `: ping` whenever `heartbeat` seconds pass without one."""
    ping_at = time.monotonic() + heartbeat
    while True:
        try:
            event = await asyncio.wait_for(run.queue.get(), timeout=_seconds_until(ping_at))
        except asyncio.TimeoutError:
            await response.send(PING)
            ping_at = time.monotonic() + heartbeat
            continue
        await response.send(format_event(event.name, event.data, event.id))
        ping_at = time.monotonic() + heartbeat
        if event.name in TERMINAL_EVENTS:
            return


async def follow_logged_events(response: HTTPResponse, streams: ChatStreams, message_id: str, last_id: int,
                               heartbeat: float) -> None:
    """Send the logged events after `last_id`, then the new ones as they are logged, up to `done` or `error`.

    An `error` that this follower adds itself (shutdown, expired or unreadable log) carries no
    `id:`, so a client that resumes later still asks for the events it missed.
    """
    log = streams.event_log
    ping_at = time.monotonic() + heartbeat
    while True:
        if streams.closing.is_set():
            await response.send(format_event("error", {"code": SERVER_RESTARTING,
                                                       "message": STOP_MESSAGES[SERVER_RESTARTING]}))
            return
        wait_ms = max(1, int(min(FOLLOW_POLL_SECONDS, _seconds_until(ping_at)) * 1000))
        try:
            events = await log.read_after(message_id, last_id, wait_ms)
            expired = not events and not await log.exists(message_id)
        except (RedisError, OSError) as error:
            logger.warning("chat events unreadable message_id=%s error=%s", message_id, type(error).__name__)
            await response.send(format_event("error", {"code": "events_unavailable",
                                                       "message": "The events of this answer cannot be read now; "
                                                                  "resume with Last-Event-ID shortly."}))
            return
        for event in events:
            await response.send(format_event(event.name, event.data, event.id))
            last_id = event.id
            ping_at = time.monotonic() + heartbeat
            if event.name in TERMINAL_EVENTS:
                return
        if expired:
            await response.send(format_event("error", {"code": "events_expired",
                                                       "message": "The events of this answer have expired; read "
                                                                  "the stored message from its session."}))
            return
        if time.monotonic() >= ping_at:
            # A Last-Event-ID past the answer's last event would otherwise wait for events that never come.
            try:
                final_id = await log.final_event_id(message_id)
            except (RedisError, OSError):
                final_id = None
            if final_id is not None and last_id >= final_id:
                return
            await response.send(PING)
            ping_at = time.monotonic() + heartbeat
