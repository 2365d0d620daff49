"""A fake OpenAI-compatible chat completions server on 127.0.0.1, for tests of the `openai` provider.

It runs an asyncio server in a thread of the test process. To a request whose last message is
the user's, it streams a call of the `search` tool with the question as query. To a request with
tool results, it streams an answer that quotes the first numbered source of the last result and
cites it, or the no-answer sentence when the result has no source. The attributes slow it down,
make it fail or keep it calling tools; `requests` records what it received.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field

from server.chat.extractive import NO_ANSWER

_SOURCE = re.compile(r"\[(\d+)\][^:]*?:\s*(.+)", re.DOTALL)


@dataclass
class Behaviour:
    first_chunk_delay: float = 0.0  # seconds before the response headers
    chunk_delay: float = 0.0  # seconds between streamed chunks
    fail_status: int | None = None  # answer every request with this HTTP status
    keep_calling_tools: bool = False  # call search again whenever tools are offered
    padding_words: int = 0  # words added to each answer, to make it last longer


@dataclass
class ReceivedRequest:
    headers: dict
    body: dict
    closed_early: bool = False  # the client closed the connection before the stream ended


@dataclass
class FakeOpenAI:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0

    def start(self) -> "FakeOpenAI":
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20, backlog=1024))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.requests.clear()

    def wait_for_close(self, received: ReceivedRequest, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if received.closed_early:
                return True
            time.sleep(0.05)
        return received.closed_early

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            writer.close()
            return
        received = ReceivedRequest(headers, body)
        self.requests.append(received)
        behaviour = self.behaviour
        try:
            await self._respond(reader, writer, received, behaviour)
        except ConnectionError:
            received.closed_early = True
        finally:
            writer.close()

    async def _respond(self, reader, writer, received: ReceivedRequest, behaviour: Behaviour) -> None:
        if behaviour.fail_status is not None:
            payload = json.dumps({"error": {"message": "fake failure", "type": "server_error"}}).encode()
            writer.write(f"HTTP/1.1 {behaviour.fail_status} Error\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
            return
        # The client closing its end shows as end of file on the reader.
        closed = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({closed}, timeout=behaviour.first_chunk_delay)
            if closed.done():
                received.closed_early = True
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for chunk in self._plan(received.body, behaviour):
                writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await writer.drain()
                await asyncio.wait({closed}, timeout=behaviour.chunk_delay)
                if closed.done():
                    received.closed_early = True
                    return
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        finally:
            closed.cancel()

    def _plan(self, body: dict, behaviour: Behaviour) -> list[dict]:
        messages = body["messages"]
        offered = bool(body.get("tools"))
        if offered and (messages[-1]["role"] == "user" or behaviour.keep_calling_tools):
            question = next(message["content"] for message in reversed(messages) if message["role"] == "user")
            return _tool_call_chunks(question)
        tool_results = [message["content"] for message in messages if message["role"] == "tool"]
        match = _SOURCE.search(tool_results[-1]) if tool_results else None
        if match is None:
            text = NO_ANSWER
        else:
            quoted = " ".join(match.group(2).split()[:12])
            text = f"The documents say: {quoted} [{match.group(1)}]."
        words = text.split(" ") + ["more"] * behaviour.padding_words
        chunks = [_chunk({"content": word if index == 0 else " " + word}) for index, word in enumerate(words)]
        chunks.append(_chunk({}, finish_reason="stop"))
        chunks.append({"id": "fake", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 40, "completion_tokens": len(words)}})
        return chunks


def _chunk(delta: dict, finish_reason: str | None = None) -> dict:
    return {"id": "fake", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _tool_call_chunks(query: str) -> list[dict]:
    arguments = json.dumps({"query": query})
    half = len(arguments) // 2
    return [
        _chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": f"call-{time.monotonic_ns()}", "type": "function",
                                                     "function": {"name": "search", "arguments": arguments[:half]}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
        _chunk({}, finish_reason="tool_calls"),
    ]
