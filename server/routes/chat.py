"""POST /chat (answered at once or streamed as Server-Sent Events), its replay, and the stored sessions."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from uuid import UUID

from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, json

from db import chat as queries
from db import usage
from server.auth import Principal, principal
from server.chat.events import TERMINAL_EVENTS, close_event_log, open_event_log, owner_value
from server.chat.openai import open_http_client
from server.chat.providers import Turn, make_provider
from server.chat.run import CLIENT_DISCONNECTED, ChatRun, message_body
from server.chat.streams import ChatStreams, follow_logged_events, send_run_events
from server.chat.tools import Toolbox
from server.errors import NotFound, ServiceUnavailable, ValidationFailed
from server.metrics import counts_open_stream
from server.pagination import decode_cursor, page, parse_limit, scope_tag
from server.ratelimit import stream_slot
from server.sse import SSE_HEADERS
from server.validation import NonBlankStr, parse_body

logger = logging.getLogger(__name__)

blueprint = Blueprint("chat", url_prefix="/chat", strict_slashes=False)

SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_MESSAGE_CHARS = 8000
# Earlier messages of the session given to the provider as context.
HISTORY_MESSAGES = 10
# After the client goes away, the request waits this long for the answer so far to be stored.
STOP_WAIT_SECONDS = 5.0
MAX_LAST_EVENT_ID = 10**9


class ChatBody(BaseModel):
    message: NonBlankStr = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    stream: bool = False
    top_k: int = Field(5, ge=1, le=20)


def register_listeners(app: Sanic) -> None:
    """Open the chat resources after the worker's pools, and end open streams before the server stops."""
    app.register_listener(open_chat_resources, "before_server_start")
    app.register_listener(end_chat_streams, "before_server_stop")
    app.register_listener(close_chat_resources, "after_server_stop")


async def open_chat_resources(app: Sanic) -> None:
    settings = app.ctx.settings
    # open_resources has exported the Redis URL, whether configured or embedded.
    event_log = open_event_log(os.environ["REDIS_URL"], max_connections=settings.redis_max_connections,
                               ttl_seconds=settings.chat_events_ttl_seconds,
                               max_length=settings.chat_events_max_length)
    app.ctx.chat_streams = ChatStreams(event_log)
    app.ctx.llm_client = open_http_client(settings) if settings.llm_provider == "openai" else None
    app.ctx.chat_provider = make_provider(settings, app.ctx.llm_client)
    logger.info("chat ready provider=%s max_steps=%d", app.ctx.chat_provider.name, settings.chat_max_steps)


async def end_chat_streams(app: Sanic) -> None:
    # Sanic waits GRACEFUL_SHUTDOWN_TIMEOUT for open connections after this listener, so the
    # streams get most of it here and end before their connections are closed.
    await app.ctx.chat_streams.close(timeout=max(0.5, app.ctx.settings.graceful_shutdown_timeout * 0.8))


async def close_chat_resources(app: Sanic) -> None:
    await close_event_log(app.ctx.chat_streams.event_log)
    if app.ctx.llm_client is not None:
        await app.ctx.llm_client.aclose()


def wants_stream(request: Request, body: ChatBody) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("accept", "")


@blueprint.post("/")
@counts_open_stream
async def chat(request: Request):
    caller = principal(request)
    body = parse_body(request, ChatBody)
    streams: ChatStreams = request.app.ctx.chat_streams
    if streams.closing.is_set():
        raise ServiceUnavailable("The server is restarting; retry shortly.", headers={"Retry-After": "5"})
    await usage.record_event(request.app.ctx.db, tenant_id=caller.tenant_id, kind="chat")
    if not wants_stream(request, body):
        run, session_key = await _start_answer(request, caller, body, logged=False)
        event = await _until_stopped(run, _final_event(run))
        if event.name == "error":
            raise ServiceUnavailable(event.data["message"], headers={"Retry-After": "5"})
        return json({"session_id": session_key, "message": event.data["message"], "steps": run.steps,
                     "usage": run.usage})

    # The slot is taken before the answer starts, so a user over the cap costs no search.
    async with stream_slot(request, caller.user_id):
        run, _session_key = await _start_answer(request, caller, body, logged=True)
        with streams.open_stream():
            await _until_stopped(run, _send_stream(request, run))


async def _send_stream(request: Request, run: ChatRun) -> None:
    response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
    await send_run_events(response, run, request.app.ctx.settings.sse_heartbeat_seconds)
    await response.eof()


async def _start_answer(request: Request, caller: Principal, body: ChatBody, *, logged: bool) -> tuple[ChatRun, str]:
    """Store the question and start answering it; the run's first event, `meta`, is already queued."""
    app = request.app
    db = app.ctx.db
    streams: ChatStreams = app.ctx.chat_streams
    session_key = body.session_id or f"session-{uuid.uuid4()}"
    session = await queries.open_session(db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                         session_key=session_key)
    history = await queries.recent_messages(db, tenant_id=caller.tenant_id, session_id=session["id"],
                                            limit=HISTORY_MESSAGES)
    await queries.add_message(db, tenant_id=caller.tenant_id, session_id=session["id"], role="user",
                              content=body.message)

    message_id = uuid.uuid4()
    event_log = streams.event_log if logged else None
    if event_log is not None:
        try:
            await event_log.claim(str(message_id), owner_value(caller.tenant_id, caller.user_id))
        except (RedisError, OSError) as error:
            logger.warning("chat events not logged, resume unavailable message_id=%s error=%s", message_id,
                           type(error).__name__)
            event_log = None
    tools = Toolbox(db, tenant_id=caller.tenant_id, top_k=body.top_k,
                    max_steps=app.ctx.settings.chat_max_steps, record_step=None, cache=app.ctx.cache)
    run = ChatRun(db=db, event_log=event_log, message_id=message_id, tenant_id=caller.tenant_id,
                  session_id=session["id"], provider=app.ctx.chat_provider, tools=tools,
                  turn=Turn(question=body.message, history=history))
    await run.emit("meta", {"session_id": session_key, "message_id": str(message_id)})
    streams.start(run)
    logger.info("chat answer started session_id=%s message_id=%s stream=%s", session["id"], message_id, logged)
    return run, session_key


async def _final_event(run: ChatRun):
    while True:
        event = await run.queue.get()
        if event.name in TERMINAL_EVENTS:
            return event


async def _until_stopped(run: ChatRun, consumer):
    """Await `consumer`; if the client goes away meanwhile, stop the answer and let it store what it has."""
    try:
        return await consumer
    except (asyncio.CancelledError, ConnectionError):
        run.stop(CLIENT_DISCONNECTED)
        await run.wait(STOP_WAIT_SECONDS)
        raise


def parse_last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) > MAX_LAST_EVENT_ID:
        raise ValidationFailed("Last-Event-ID must be the id of an event of this stream, a whole number.",
                               details=[{"field": "Last-Event-ID", "problem": f"not an event id: {raw[:40]!r}"}])
    return int(raw)


@blueprint.get("/messages/<message_id:str>/events")
@counts_open_stream
async def message_events(request: Request, message_id: str):
    """Replay an answer's events after Last-Event-ID, then follow the new ones to `done` or `error`."""
    caller = principal(request)
    unknown = NotFound("No event stream for this message: it is unknown, or its events have expired.")
    try:
        message_key = str(UUID(message_id))
    except ValueError:
        raise unknown from None
    last_id = parse_last_event_id(request)
    streams: ChatStreams = request.app.ctx.chat_streams
    try:
        owner = await streams.event_log.owner(message_key)
    except (RedisError, OSError) as error:
        logger.warning("chat events owner unreadable message_id=%s error=%s", message_key, type(error).__name__)
        raise ServiceUnavailable("Chat events cannot be read now; retry shortly.",
                                 headers={"Retry-After": "5"}) from None
    # Another user's message is as unknown as a missing one.
    if owner != owner_value(caller.tenant_id, caller.user_id):
        raise unknown
    if await _ended_before(streams, message_key, last_id):
        # An EventSource reconnects after `done` with that event's id, and a 204 stops it from reconnecting.
        return HTTPResponse(status=204)

    async with stream_slot(request, caller.user_id):
        with streams.open_stream():
            response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
            await follow_logged_events(response, streams, message_key, last_id,
                                       request.app.ctx.settings.sse_heartbeat_seconds)
            await response.eof()


async def _ended_before(streams: ChatStreams, message_id: str, last_id: int) -> bool:
    """Return whether the answer has ended with an event the client already has."""
    try:
        final_id = await streams.event_log.final_event_id(message_id)
    except (RedisError, OSError) as error:
        logger.warning("chat events end unreadable message_id=%s error=%s", message_id, type(error).__name__)
        return False
    return final_id is not None and last_id >= final_id


@blueprint.get("/sessions")
async def list_sessions(request: Request):
    caller = principal(request)
    limit = parse_limit(request)
    scope = scope_tag("chat sessions")
    rows = await queries.list_sessions(request.app.ctx.db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                       limit=limit + 1, after=decode_cursor(request, scope))
    body = page(rows, limit, scope, key=lambda row: (row["updated_at"], row["id"]))
    body["items"] = [{"session_id": row["session_key"], "created_at": row["created_at"],
                      "updated_at": row["updated_at"]} for row in body["items"]]
    return json(body)


@blueprint.get("/sessions/<session_id:str>/messages")
async def list_messages(request: Request, session_id: str):
    caller = principal(request)
    limit = parse_limit(request)
    session = await queries.find_session(request.app.ctx.db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                         session_key=session_id)
    if session is None:
        raise NotFound("No chat session with this id.")
    scope = scope_tag("chat messages", session["id"])
    rows = await queries.list_messages(request.app.ctx.db, tenant_id=caller.tenant_id, session_id=session["id"],
                                       limit=limit + 1, after=decode_cursor(request, scope))
    body = page(rows, limit, scope)
    body["items"] = [message_body(row) for row in body["items"]]
    return json(body)
