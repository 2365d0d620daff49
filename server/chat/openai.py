"""The `openai` provider: any OpenAI-compatible chat completions API, streamed, with tool calls.

The model gets the session's earlier messages, the question and the two tools. Each tool call
is one agent step. Search hits and document chunks are numbered as sources `[n]` in the tool
results, and the markers the answer uses become its citations. Once CHAT_MAX_STEPS tool calls
are spent, the model is asked once more without tools, for the answer.

A provider that sends nothing for LLM_TIMEOUT_SECONDS, answers with an HTTP error or sends an
unreadable stream ends the answer with an `error` event. The API key goes only into the
Authorization header and is never logged.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import httpx

from server.chat.extractive import NO_ANSWER
from server.chat.providers import AnswerWriter, ProviderError, Turn
from server.chat.tools import StepBudgetExhausted, Toolbox
from server.settings import Settings

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You answer questions from the user's uploaded documents only. Use the search tool to find "
    "passages and read_document to read a whole document. Tool results number their sources as [n]. "
    "Cite every statement with the [n] of its source. If the documents do not answer the question, "
    f"reply exactly: {NO_ANSWER}"
)
FINAL_ANSWER_PROMPT = "The tool budget is spent. Answer now from the sources above."
TOOLS = [
    {"type": "function", "function": {
        "name": "search",
        "description": "Hybrid (semantic and full-text) search over the uploaded documents.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }},
    {"type": "function", "function": {
        "name": "read_document",
        "description": "Read a document's chunks in order, by the document_id that search returned.",
        "parameters": {"type": "object", "properties": {"document_id": {"type": "string"}},
                       "required": ["document_id"]},
    }},
]
# A tool result sent to the model is cut to this many characters.
MAX_TOOL_RESULT_CHARS = 12_000
MAX_SNIPPET_CHARS = 300
# An error body of the provider is read up to this many bytes, for the log only.
MAX_ERROR_BODY_BYTES = 2048
CONNECT_TIMEOUT_SECONDS = 5.0
_MARKER = re.compile(r"\[(\d+)\]")


def open_http_client(settings: Settings) -> httpx.AsyncClient:
    """Build the worker's client for the provider; a read waits at most LLM_TIMEOUT_SECONDS for data."""
    timeout = httpx.Timeout(settings.llm_timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS,
                                                                      settings.llm_timeout_seconds))
    # Every open stream holds one connection, so the pool is not capped below the stream count.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


@dataclass
class Sources:
    """The passages shown to the model, numbered in order of first appearance."""

    by_chunk: dict[str, dict] = field(default_factory=dict)

    def number(self, *, chunk_id: str, document_id: str, title: str, content: str) -> int:
        known = self.by_chunk.get(chunk_id)
        if known is None:
            known = {"n": len(self.by_chunk) + 1, "document_id": document_id, "chunk_id": chunk_id,
                     "title": title, "snippet": " ".join(content.split())[:MAX_SNIPPET_CHARS]}
            self.by_chunk[chunk_id] = known
        return known["n"]

    def cited_in(self, text: str) -> list[dict]:
        by_number = {source["n"]: source for source in self.by_chunk.values()}
        cited = []
        for marker in dict.fromkeys(int(n) for n in _MARKER.findall(text)):
            if marker in by_number:
                cited.append(by_number[marker])
        return cited


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Completion:
    """What one streamed completion produced: its text and the tool calls it requests."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None):
        if client is None:
            raise ValueError("the openai provider needs an HTTP client")
        self.client = client
        self.url = settings.llm_base_url.rstrip("/") + "/chat/completions"
        self.model = settings.llm_model
        self.timeout_seconds = settings.llm_timeout_seconds
        self.headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}

    async def answer(self, turn: Turn, tools: Toolbox, writer: AnswerWriter) -> None:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": item["role"], "content": item["content"]} for item in turn.history]
        messages.append({"role": "user", "content": turn.question})
        sources = Sources()
        text = ""
        rounds = 0
        while True:
            # Calls of unknown tools spend no step, so the rounds are bounded too.
            rounds += 1
            offer_tools = tools.remaining > 0 and rounds <= tools.max_steps
            if not offer_tools:
                messages.append({"role": "system", "content": FINAL_ANSWER_PROMPT})
            completion = await self._complete(messages, writer, offer_tools)
            text += completion.text
            if not completion.tool_calls or not offer_tools:
                break
            messages.append(_assistant_message(completion))
            for call in completion.tool_calls:
                result = await self._call_tool(call, tools, sources)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        for citation in sources.cited_in(text):
            await writer.citation(citation)

    async def _complete(self, messages: list[dict], writer: AnswerWriter, offer_tools: bool) -> Completion:
        payload = {"model": self.model, "messages": messages, "stream": True,
                   "stream_options": {"include_usage": True}}
        if offer_tools:
            payload["tools"] = TOOLS
        try:
            async with self.client.stream("POST", self.url, json=payload, headers=self.headers) as response:
                if response.status_code >= 400:
                    await self._fail_on_status(response)
                return await self._read_stream(response, writer)
        except httpx.TimeoutException as error:
            logger.warning("llm provider timed out url=%s timeout_s=%s error=%s", self.url, self.timeout_seconds,
                           type(error).__name__)
            raise ProviderError("provider_timeout", f"The language model sent nothing for {self.timeout_seconds:g} s, "
                                                    f"so the answer stopped. Ask again later.") from None
        except httpx.HTTPError as error:
            logger.warning("llm provider unreachable url=%s error=%s", self.url, type(error).__name__)
            raise ProviderError("provider_unavailable", "The language model could not be reached. "
                                                        "Ask again later.") from None

    async def _fail_on_status(self, response: httpx.Response) -> None:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= MAX_ERROR_BODY_BYTES:
                break
        logger.warning("llm provider returned an error url=%s status=%d body=%r", self.url, response.status_code,
                       body[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace"))
        raise ProviderError("provider_error", f"The language model returned HTTP {response.status_code}. "
                                              f"Ask again later.")

    async def _read_stream(self, response: httpx.Response, writer: AnswerWriter) -> Completion:
        completion = Completion()
        calls: dict[int, ToolCall] = {}
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                logger.warning("llm provider sent an invalid chunk url=%s", self.url)
                raise ProviderError("provider_error", "The language model sent an unreadable stream.") from None
            usage = chunk.get("usage") or {}
            writer.add_usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                             completion_tokens=int(usage.get("completion_tokens") or 0))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    completion.text += delta["content"]
                    await writer.delta(delta["content"])
                for part in delta.get("tool_calls") or []:
                    call = calls.setdefault(int(part.get("index", 0)), ToolCall())
                    call.id = part.get("id") or call.id
                    function = part.get("function") or {}
                    call.name = function.get("name") or call.name
                    call.arguments += function.get("arguments") or ""
        completion.tool_calls = [calls[index] for index in sorted(calls)]
        return completion

    async def _call_tool(self, call: ToolCall, tools: Toolbox, sources: Sources) -> str:
        """Run one tool call and return its result as text for the model."""
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return f"Error: the arguments of {call.name} are not a JSON object."
        try:
            if call.name == "search" and isinstance(arguments.get("query"), str):
                hits = await tools.search(arguments["query"])
                return _cut("\n\n".join(
                    f"[{sources.number(chunk_id=hit.chunk_id, document_id=hit.document_id, title=hit.document_title, content=hit.content)}]"
                    f" {hit.document_title} (document_id {hit.document_id}): {hit.content}"
                    for hit in hits) or "No passage matches this query.")
            if call.name == "read_document" and isinstance(arguments.get("document_id"), str):
                found = await tools.read_document(arguments["document_id"])
                if found is None:
                    return "Error: no document has this id."
                title, chunks = found
                return _cut("\n\n".join(
                    f"[{sources.number(chunk_id=str(chunk['chunk_id']), document_id=arguments['document_id'], title=title, content=chunk['content'])}]"
                    f" {chunk['content']}" for chunk in chunks) or "The document has no text.")
        except StepBudgetExhausted:
            return "Error: the tool budget is spent; answer from the sources above."
        return f"Error: unknown tool {call.name!r} or missing arguments; use search(query) or read_document(document_id)."


def _assistant_message(completion: Completion) -> dict:
    return {"role": "assistant", "content": completion.text or None,
            "tool_calls": [{"id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}
                           for call in completion.tool_calls]}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TOOL_RESULT_CHARS else text[:MAX_TOOL_RESULT_CHARS] + " …"
