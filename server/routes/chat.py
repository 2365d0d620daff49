"""POST /chat, and the stored sessions and messages."""

from __future__ import annotations

import logging
import uuid

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic_ext.extensions.openapi import openapi
from sanic.response import json

from db import chat as queries
from db import usage
from server.auth import Principal, principal
from server.chat.agent import answer_question
from server.errors import NotFound
from server.metrics import counts_open_stream
from server.pagination import decode_cursor, page, parse_limit
from server.ratelimit import stream_slot
from server.sse import SSE_HEADERS, format_event
from server.validation import parse_body

logger = logging.getLogger(__name__)

blueprint = Blueprint("chat", url_prefix="/chat", strict_slashes=False)

SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_MESSAGE_CHARS = 8000


class ChatBody(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    stream: bool = False
    top_k: int = Field(5, ge=1, le=20)


def message_body(row: dict) -> dict:
    return {"id": row["id"], "role": row["role"], "content": row["content"], "citations": row["citations"],
            "created_at": row["created_at"]}


def wants_stream(request: Request, body: ChatBody) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("accept", "")


@blueprint.post("/")
@openapi.secured("token")
@openapi.body({"application/json": ChatBody})
@counts_open_stream
async def chat(request: Request):
    caller = principal(request)
    body = parse_body(request, ChatBody)
    await usage.record_event(request.app.ctx.db, tenant_id=caller.tenant_id, kind="chat")
    if not wants_stream(request, body):
        return json(await _answer(request, caller, body))
    # The slot is taken before the answer is computed, so a user over the cap costs no search.
    async with stream_slot(request, caller.user_id):
        reply = await _answer(request, caller, body)
        return await _stream_reply(request, reply)


async def _answer(request: Request, caller: Principal, body: ChatBody) -> dict:
    """Store the question, answer it from the tenant's documents, store the answer and return the reply."""
    db = request.app.ctx.db
    session_key = body.session_id or f"session-{uuid.uuid4()}"
    session = await queries.open_session(db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                         session_key=session_key)
    await queries.add_message(db, tenant_id=caller.tenant_id, session_id=session["id"], role="user",
                              content=body.message)
    result = await answer_question(db, tenant_id=caller.tenant_id, question=body.message, top_k=body.top_k)
    stored = await queries.add_message(
        db, tenant_id=caller.tenant_id, session_id=session["id"], role="assistant",
        content=result.answer.content, citations=result.citations(), steps=result.steps, usage=result.usage,
    )
    logger.info("chat answered session=%s message_id=%s answered=%s citations=%d", session["id"], stored["id"],
                result.answer.answered, len(result.answer.citations))
    return {"session_id": session_key, "message": message_body(stored), "steps": result.steps,
            "usage": result.usage}


async def _stream_reply(request: Request, reply: dict):
    """Send a finished answer as the event sequence of a streamed chat.

    NOTE: the answer is computed before the first event, so this gives the event format but not
    an early first byte; generation that streams as it goes needs the agent to yield events.
    """
    response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
    event_id = 0

    async def send(event: str, data: dict) -> None:
        nonlocal event_id
        event_id += 1
        await response.send(format_event(event, data, event_id))

    message = reply["message"]
    await send("meta", {"session_id": reply["session_id"], "message_id": message["id"]})
    for step in reply["steps"]:
        await send("step", step)
    words = message["content"].split(" ")
    for index, word in enumerate(words):
        await send("delta", {"text": word if index == len(words) - 1 else word + " "})
    for citation in message["citations"]:
        await send("citation", citation)
    await send("done", {"message": message})
    await response.eof()


@blueprint.get("/sessions")
@openapi.secured("token")
async def list_sessions(request: Request):
    caller = principal(request)
    limit = parse_limit(request)
    rows = await queries.list_sessions(request.app.ctx.db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                       limit=limit + 1, after=decode_cursor(request))
    body = page(rows, limit, key=lambda row: (row["updated_at"], row["id"]))
    body["items"] = [{"session_id": row["session_key"], "created_at": row["created_at"],
                      "updated_at": row["updated_at"]} for row in body["items"]]
    return json(body)


@blueprint.get("/sessions/<session_id:str>/messages")
@openapi.secured("token")
async def list_messages(request: Request, session_id: str):
    caller = principal(request)
    limit = parse_limit(request)
    session = await queries.find_session(request.app.ctx.db, tenant_id=caller.tenant_id, user_id=caller.user_id,
                                         session_key=session_id)
    if session is None:
        raise NotFound("No chat session with this id.")
    rows = await queries.list_messages(request.app.ctx.db, tenant_id=caller.tenant_id, session_id=session["id"],
                                       limit=limit + 1, after=decode_cursor(request))
    body = page(rows, limit)
    body["items"] = [message_body(row) for row in body["items"]]
    return json(body)
