"""One chat answer in progress: its numbered events, the answer so far, and the task producing it.

The producer task runs the provider and is the only writer of the answer. It is stopped by
cancelling it, when the client goes away or the server shuts down, and then stores what was
produced so far and ends the events with one `error` event. Otherwise it stores the answer and
ends with `done`. Every event goes to the local queue of the request that started the answer,
and to the Redis event log, from which any worker can replay it.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from databases import Database
from redis.exceptions import RedisError

from db import chat as queries
from server.chat.events import Event, EventLog
from server.chat.providers import Provider, ProviderError, Turn
from server.chat.tools import Toolbox

logger = logging.getLogger(__name__)

CLIENT_DISCONNECTED = "client_disconnected"
SERVER_RESTARTING = "server_restarting"
STOP_MESSAGES = {
    CLIENT_DISCONNECTED: "The client closed the connection, so the answer stopped. The part produced so far is stored.",
    SERVER_RESTARTING: "The server is restarting, so the answer stopped. The part produced so far is stored; "
                       "ask again in a moment.",
}


def message_body(row: dict) -> dict:
    return {"id": row["id"], "role": row["role"], "content": row["content"], "citations": row["citations"],
            "created_at": row["created_at"]}


class ChatRun:
    """The events and the stored message of one assistant answer."""

    def __init__(self, *, db: Database, event_log: EventLog | None, message_id: UUID, tenant_id: UUID,
                 session_id: UUID, provider: Provider, tools: Toolbox, turn: Turn):
        self.db = db
        self.event_log = event_log
        self.message_id = message_id
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.provider = provider
        self.tools = tools
        self.turn = turn
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.last_event_id = 0
        self.text: list[str] = []
        self.citations: list[dict] = []
        self.steps: list[dict] = []
        self.usage: dict = {"provider": provider.name, "prompt_tokens": 0, "completion_tokens": 0}
        self.stop_reason: str | None = None
        # False once the provider is done: storing the answer and the last event is never cancelled.
        self.stoppable = True
        self.task: asyncio.Task | None = None
        self._unlogged: list[Event] = []
        self._log_writer: asyncio.Task | None = None
        tools.record_step = self.step

    # The writer side, called by the provider and the toolbox.

    async def emit(self, name: str, data: dict) -> None:
        """Number an event, put it in the local queue, and have it appended to the Redis event log."""
        self.last_event_id += 1
        event = Event(self.last_event_id, name, data)
        self.queue.put_nowait(event)
        if self.event_log is None:
            return
        self._unlogged.append(event)
        if self._log_writer is None or self._log_writer.done():
            self._log_writer = asyncio.get_running_loop().create_task(self._write_log())

    async def _write_log(self) -> None:
        """Append the waiting events to the log in batches, one round trip each, in order.

        One writer task at a time, apart from the producer, so the producer never waits for Redis
        and cancelling it loses no logged event.
        """
        while self._unlogged and self.event_log is not None:
            batch, self._unlogged = self._unlogged, []
            try:
                await self.event_log.append(str(self.message_id), batch)
            except (RedisError, OSError) as error:
                # The answer goes on for the client that asked; only resuming it elsewhere is lost.
                logger.warning("chat events not logged, resume unavailable message_id=%s event_id=%d error=%s",
                               self.message_id, batch[0].id, type(error).__name__)
                self.event_log = None

    async def flush_log(self) -> None:
        """Wait until every event emitted so far is in the log (or logging failed)."""
        while self._log_writer is not None and not self._log_writer.done():
            await asyncio.wait({self._log_writer})

    async def step(self, data: dict) -> None:
        self.steps.append(data)
        await self.emit("step", data)

    async def delta(self, text: str) -> None:
        self.text.append(text)
        await self.emit("delta", {"text": text})

    async def citation(self, citation: dict) -> None:
        self.citations.append(citation)
        await self.emit("citation", citation)

    def add_usage(self, **counts: int) -> None:
        for name, count in counts.items():
            self.usage[name] = self.usage.get(name, 0) + count

    # The control side, called by the routes.

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self._produce(), name=f"chat-{self.message_id}")
        return self.task

    def stop(self, reason: str) -> None:
        """Cancel the producer; it stores the answer so far and sends an `error` event with `reason`."""
        if self.stoppable and self.stop_reason is None and self.task is not None and not self.task.done():
            self.stop_reason = reason
            self.task.cancel()

    async def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the producer to finish, without being cancelled with it."""
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=timeout)

    async def _produce(self) -> None:
        failure = await self._run_provider()
        self.stoppable = False
        self.usage["steps"] = len(self.steps)
        self.usage["finish_reason"] = failure[0] if failure else "stop"
        try:
            stored = await queries.add_message(
                self.db, message_id=self.message_id, tenant_id=self.tenant_id, session_id=self.session_id,
                role="assistant", content="".join(self.text), citations=self.citations, steps=self.steps,
                usage=self.usage,
            )
        except Exception as error:  # noqa: BLE001 - the stream must still end with one terminal event
            logger.error("chat answer not stored message_id=%s error=%s", self.message_id, type(error).__name__)
            await self.emit("error", {"code": "storage_failed",
                                      "message": "The answer could not be stored; ask again."})
            await self.flush_log()
            return
        logger.info("chat answer stored message_id=%s finish_reason=%s steps=%d citations=%d", self.message_id,
                    self.usage["finish_reason"], len(self.steps), len(self.citations))
        if failure is not None:
            await self.emit("error", {"code": failure[0], "message": failure[1]})
        else:
            await self.emit("done", {"message": message_body(stored)})
        await self.flush_log()

    async def _run_provider(self) -> tuple[str, str] | None:
        """Run the provider; return None when it finished, else the code and message of why it did not."""
        try:
            await self.provider.answer(self.turn, self.tools, self)
        except asyncio.CancelledError:
            # Only stop() cancels this task; what follows must run to store the answer.
            asyncio.current_task().uncancel()
            reason = self.stop_reason or SERVER_RESTARTING
            logger.info("chat answer stopped message_id=%s reason=%s", self.message_id, reason)
            return reason, STOP_MESSAGES[reason]
        except ProviderError as error:
            logger.warning("chat provider failed message_id=%s provider=%s code=%s", self.message_id,
                           self.provider.name, error.code)
            return error.code, error.message
        except Exception as error:  # noqa: BLE001 - any failure becomes the stream's error event
            logger.exception("chat answer failed message_id=%s error=%s", self.message_id, type(error).__name__)
            return "internal_error", "The answer failed because of a server error; ask again."
        return None
