"""Streamed chat with the `openai` provider against a fake OpenAI-compatible server on loopback.

One web server (one worker, a pool of two PostgreSQL connections, a heartbeat of 0.5 s) talks
to tests/fake_openai.py, whose speed and failures each test sets.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from contextlib import contextmanager

import asyncpg
import httpx
import pytest

from tests.conftest import LOG_DIR, Api, _free_port, _start, _stop, running_server, wait_until_ready
from server.chat.extractive import NO_ANSWER
from tests.fake_openai import FakeOpenAI

HEARTBEAT_SECONDS = 0.5
PROVIDER_TIMEOUT_SECONDS = 3
MAX_STEPS = 3
API_KEY = "sk-test-" + uuid.uuid4().hex
SHUTDOWN_TIMEOUT_SECONDS = 6


@pytest.fixture(scope="module")
def fake_llm():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def fresh_fake(fake_llm):
    fake_llm.reset()
    yield


def llm_settings(fake: FakeOpenAI) -> dict:
    return {"LLM_PROVIDER": "openai", "LLM_BASE_URL": fake.base_url, "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "fake-model", "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "LLM_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT_SECONDS), "CHAT_MAX_STEPS": str(MAX_STEPS)}


@pytest.fixture(scope="module")
def llm_server(server_env, fake_llm):
    with running_server(server_env, "web-chat-llm", BACKEND_WORKERS="1", DB_POOL_SIZE="2", DB_MAX_OVERFLOW="0",
                        **llm_settings(fake_llm)) as base_url:
        yield base_url


@pytest.fixture
def llm_api(llm_server, service_urls):
    client = Api(llm_server)
    yield client
    client.http.close()


class EventReader:
    """Reads an SSE response line by line into (id, event, data) tuples and counts pings."""

    def __init__(self, response: httpx.Response):
        self.lines = response.iter_lines()
        self.pings = 0

    def next_event(self) -> tuple[int | None, str, dict]:
        event_id, name = None, None
        for line in self.lines:
            if line == ": ping":
                self.pings += 1
            elif line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                return event_id, name, json.loads(line[6:])
        raise EOFError("the stream ended")

    def until_end(self) -> list[tuple[int | None, str, dict]]:
        events = []
        while True:
            try:
                events.append(self.next_event())
            except EOFError:
                return events


def post_stream(api: Api, user: dict, message: str, **fields):
    return api.http.stream("POST", "/chat", headers=user["headers"],
                           json={"message": message, "stream": True, **fields})


def test_events_arrive_in_order_with_tool_steps(llm_api, fake_llm):
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        events = EventReader(response).until_end()
    names = [name for _, name, _ in events]
    ids = [event_id for event_id, _, _ in events]
    assert names[0] == "meta"
    assert names[1] == "step"
    assert names[-1] == "done"
    assert names.count("done") + names.count("error") == 1
    assert ids == list(range(1, len(events) + 1))
    assert events[1][2] == {"type": "search", "query": "What is the boiling point of water?", "hits": 0}


def test_deltas_form_the_stored_answer(llm_api, fake_llm):
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?", session_id="deltas") as response:
        events = EventReader(response).until_end()
    text = "".join(data["text"] for _, name, data in events if name == "delta")
    assert text == events[-1][2]["message"]["content"]
    stored = llm_api.http.get("/chat/sessions/deltas/messages", headers=user["headers"]).json()["items"]
    assert stored[-1]["content"] == text


def test_answer_cites_the_searched_document(llm_api, fake_llm, rq_worker):
    user = llm_api.register()
    document = llm_api.upload_text(user, "Kettle manual", "Descale the kettle every month with white vinegar. "
                                                          "Rinse it twice with clean water afterwards.").json()
    assert llm_api.wait_for_document(user, document["document"]["id"])["status"] == "ready"
    with post_stream(llm_api, user, "How often should I descale the kettle?") as response:
        events = EventReader(response).until_end()
    citations = [data for _, name, data in events if name == "citation"]
    message = events[-1][2]["message"]
    assert "[1]" in message["content"]
    assert [citation["title"] for citation in citations] == ["Kettle manual"]
    assert message["citations"] == citations


def test_heartbeat_pings_while_provider_is_slow(llm_api, fake_llm):
    fake_llm.behaviour.first_chunk_delay = 4 * HEARTBEAT_SECONDS
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        reader = EventReader(response)
        events = reader.until_end()
    assert events[-1][1] == "done"
    assert reader.pings >= 2


def test_provider_error_becomes_error_event(llm_api, fake_llm):
    fake_llm.behaviour.fail_status = 500
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        events = EventReader(response).until_end()
    assert events[-1][1] == "error"
    assert events[-1][2]["code"] == "provider_error"
    assert "HTTP 500" in events[-1][2]["message"]
    assert [name for _, name, _ in events].count("error") == 1


def test_provider_timeout_becomes_error_event(llm_api, fake_llm):
    fake_llm.behaviour.first_chunk_delay = PROVIDER_TIMEOUT_SECONDS * 3
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        events = EventReader(response).until_end()
    assert events[-1][1] == "error"
    assert events[-1][2]["code"] == "provider_timeout"


def test_non_streamed_provider_error_is_503(llm_api, fake_llm):
    fake_llm.behaviour.fail_status = 502
    user = llm_api.register()
    response = llm_api.http.post("/chat", headers=user["headers"], json={"message": "What is water?"})
    assert response.status_code == 503
    assert "HTTP 502" in response.json()["error"]["message"]


def test_api_key_is_sent_but_never_logged(llm_api, fake_llm):
    user = llm_api.register()
    llm_api.http.post("/chat", headers=user["headers"], json={"message": "What is water?"})
    fake_llm.behaviour.fail_status = 401
    llm_api.http.post("/chat", headers=user["headers"], json={"message": "What is water?"})
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in (LOG_DIR / "web-chat-llm.log").read_text(errors="replace")


def test_step_budget_ends_tool_calls(llm_api, fake_llm):
    fake_llm.behaviour.keep_calling_tools = True
    user = llm_api.register()
    body = llm_api.http.post("/chat", headers=user["headers"], json={"message": "What is water?"}).json()
    assert len(body["steps"]) == MAX_STEPS
    assert "tools" not in fake_llm.requests[-1].body
    assert "tools" in fake_llm.requests[-2].body


def test_earlier_messages_are_sent_as_context(llm_api, fake_llm):
    user = llm_api.register()
    for question in ("What is the boiling point of water?", "And of ethanol?"):
        response = llm_api.http.post("/chat", headers=user["headers"],
                                     json={"message": question, "session_id": "context"})
        assert response.status_code == 200
    last = fake_llm.requests[-1].body["messages"]
    contents = [(message["role"], message["content"]) for message in last
                if message["role"] in ("user", "assistant") and message["content"]]
    assert contents[0] == ("user", "What is the boiling point of water?")
    assert contents[1][0] == "assistant"
    assert contents[-1] == ("user", "And of ethanol?")


def test_disconnect_stops_answer_and_stores_it(llm_api, fake_llm, db_url):
    fake_llm.behaviour.chunk_delay = 0.2
    fake_llm.behaviour.padding_words = 200
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?", session_id="gone") as response:
        reader = EventReader(response)
        seen = []
        while len([name for name in seen if name == "delta"]) < 3:
            seen.append(reader.next_event()[1])
    # Leaving the block closed the connection mid-answer.
    answering = fake_llm.requests[-1]
    assert fake_llm.wait_for_close(answering, timeout=15)

    messages = wait_for_messages(llm_api, user, "gone", count=2)
    stored_words = messages[1]["content"].split()
    assert messages[1]["role"] == "assistant"
    assert stored_words[:3] == NO_ANSWER.split()[:3]
    assert len(stored_words) < len(NO_ANSWER.split()) + fake_llm.behaviour.padding_words
    assert asyncio.run(stored_finish_reasons(db_url)) == ["client_disconnected"]
    assert asyncio.run(busy_connections(db_url)) == 0


def wait_for_messages(api: Api, user: dict, session_id: str, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.http.get(f"/chat/sessions/{session_id}/messages", headers=user["headers"]).json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.2)
    raise AssertionError(f"session {session_id} did not reach {count} messages within {timeout} s")


def wait_for_stored_answers(db_url: str, count: int, timeout: float = 20) -> None:
    """Wait until `count` answers are stored, so that no answer is written while the next test empties the tables."""

    async def stored() -> int:
        connection = await asyncpg.connect(db_url)
        try:
            return await connection.fetchval("SELECT count(*) FROM chat_messages WHERE role = 'assistant'")
        finally:
            await connection.close()

    deadline = time.monotonic() + timeout
    while asyncio.run(stored()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} answers stored within {timeout} s")
        time.sleep(0.2)


async def busy_connections(db_url: str) -> int:
    """Count the server's connections that are inside a query or a transaction."""
    connection = await asyncpg.connect(db_url)
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND state IN ('active', 'idle in transaction',"
            " 'idle in transaction (aborted)')")
    finally:
        await connection.close()


def test_pool_serves_requests_after_disconnects(llm_api, fake_llm, db_url):
    # The pool has two connections; streams that leaked theirs would leave none for this request.
    fake_llm.behaviour.chunk_delay = 0.2
    fake_llm.behaviour.padding_words = 100
    user = llm_api.register()
    for index in range(4):
        with post_stream(llm_api, user, "What is the boiling point of water?", session_id=f"leak-{index}") as response:
            reader = EventReader(response)
            while reader.next_event()[1] != "delta":
                pass
    response = llm_api.http.get("/chat/sessions", headers=user["headers"], timeout=10)
    assert response.status_code == 200
    assert len(response.json()["items"]) == 4
    wait_for_stored_answers(db_url, 4)


def test_resume_replays_after_last_event_id_once(llm_api, fake_llm, live_server):
    fake_llm.behaviour.chunk_delay = 0.05
    fake_llm.behaviour.padding_words = 30
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        original = EventReader(response).until_end()
    message_id = original[0][2]["message_id"]
    # The other server, a separate instance, reads the same events from Redis.
    with httpx.Client(base_url=live_server, timeout=30) as other:
        with other.stream("GET", f"/chat/messages/{message_id}/events",
                          headers={**user["headers"], "Last-Event-ID": "3"}) as response:
            assert response.status_code == 200
            replayed = EventReader(response).until_end()
    assert [event_id for event_id, _, _ in replayed] == list(range(4, len(original) + 1))
    assert replayed == original[3:]


def test_resume_follows_live_events_to_done(llm_api, fake_llm):
    fake_llm.behaviour.chunk_delay = 0.1
    fake_llm.behaviour.padding_words = 30
    user = llm_api.register()
    with post_stream(llm_api, user, "What is the boiling point of water?") as response:
        reader = EventReader(response)
        first = reader.next_event()
        message_id = first[2]["message_id"]
        with llm_api.http.stream("GET", f"/chat/messages/{message_id}/events",
                                 headers={**user["headers"], "Last-Event-ID": "1"}) as follower:
            followed = EventReader(follower).until_end()
        rest = reader.until_end()
    assert followed[-1][1] == "done"
    assert [event_id for event_id, _, _ in followed] == list(range(2, len(followed) + 2))
    assert followed == rest


@pytest.mark.parametrize("offset", [0, 1000])
def test_resume_after_the_last_event_answers_204(llm_api, fake_llm, offset):
    # An EventSource reconnects after `done` with that event's id; the stream used to stay open with
    # pings only, holding one of the user's stream slots.
    user = llm_api.register()
    with post_stream(llm_api, user, "What is water?") as response:
        original = EventReader(response).until_end()
    message_id = original[0][2]["message_id"]
    last_id = original[-1][0] + offset
    response = llm_api.http.get(f"/chat/messages/{message_id}/events",
                                headers={**user["headers"], "Last-Event-ID": str(last_id)}, timeout=10)
    assert response.status_code == 204


def test_events_of_another_user_are_not_found(llm_api, fake_llm):
    owner, stranger = llm_api.register(), llm_api.register()
    with post_stream(llm_api, owner, "What is water?") as response:
        message_id = EventReader(response).until_end()[0][2]["message_id"]
    response = llm_api.http.get(f"/chat/messages/{message_id}/events", headers=stranger["headers"])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_last_event_id_is_422(llm_api, fake_llm):
    user = llm_api.register()
    with post_stream(llm_api, user, "What is water?") as response:
        message_id = EventReader(response).until_end()[0][2]["message_id"]
    response = llm_api.http.get(f"/chat/messages/{message_id}/events",
                                headers={**user["headers"], "Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def keep_answers_open(fake: FakeOpenAI) -> None:
    """Make answers last minutes, sending a chunk well within the provider timeout."""
    fake.behaviour.chunk_delay = PROVIDER_TIMEOUT_SECONDS / 3
    fake.behaviour.padding_words = 300


def test_fifth_open_stream_gets_429(llm_api, fake_llm, db_url):
    keep_answers_open(fake_llm)
    user = llm_api.register()
    streams = [post_stream(llm_api, user, "What is water?") for _ in range(4)]
    try:
        # Each reader is kept: a discarded line iterator closes its connection.
        readers = []
        for stream in streams:
            response = stream.__enter__()
            assert response.status_code == 200
            readers.append(EventReader(response))
            readers[-1].next_event()
        refused = llm_api.http.post("/chat", headers=user["headers"], json={"message": "What is water?",
                                                                             "stream": True})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
    wait_for_stored_answers(db_url, 4)


def test_closed_streams_free_their_slots(llm_api, fake_llm, db_url):
    keep_answers_open(fake_llm)
    user = llm_api.register()
    streams = [post_stream(llm_api, user, "What is water?") for _ in range(4)]
    try:
        assert [stream.__enter__().status_code for stream in streams] == [200] * 4
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)

    # Closing a stream releases its slot after the answer is stored, so give that a moment.
    statuses = []
    deadline = time.monotonic() + 15
    while len(statuses) < 4 and time.monotonic() < deadline:
        stream = post_stream(llm_api, user, "What is water?")
        response = stream.__enter__()
        if response.status_code == 200:
            streams.append(stream)
            statuses.append(200)
        else:
            stream.__exit__(None, None, None)
            time.sleep(0.2)
    for stream in streams[4:]:
        stream.__exit__(None, None, None)
    assert statuses == [200] * 4
    wait_for_stored_answers(db_url, 8)


@contextmanager
def server_process(server_env: dict, name: str, **overrides: str):
    """Like running_server, but yield the process too, so that a test can signal it."""
    port = _free_port()
    env = {**server_env, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port), **overrides}
    process = _start(name, ["-m", "server"], env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        yield base_url, process
    finally:
        _stop(process)


def test_shutdown_ends_open_stream_with_error(server_env, fake_llm, db_url):
    fake_llm.behaviour.chunk_delay = 0.5
    fake_llm.behaviour.padding_words = 200
    overrides = {**llm_settings(fake_llm), "BACKEND_WORKERS": "1",
                 "GRACEFUL_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT_SECONDS)}
    with server_process(server_env, "web-chat-shutdown", **overrides) as (base_url, process):
        api = Api(base_url)
        user = api.register()
        with post_stream(api, user, "What is the boiling point of water?", session_id="restart") as response:
            reader = EventReader(response)
            while reader.next_event()[1] != "delta":
                pass
            os.kill(process.pid, signal.SIGTERM)
            rest = reader.until_end()
        api.http.close()
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS * 3) is not None

    assert rest[-1][1] == "error"
    assert rest[-1][2]["code"] == "server_restarting"
    assert "restarting" in rest[-1][2]["message"]
    stored = asyncio.run(stored_finish_reasons(db_url))
    assert stored == ["server_restarting"]


async def stored_finish_reasons(db_url: str) -> list[str]:
    connection = await asyncpg.connect(db_url)
    try:
        rows = await connection.fetch("SELECT usage FROM chat_messages WHERE role = 'assistant'")
    finally:
        await connection.close()
    return [json.loads(row["usage"])["finish_reason"] for row in rows]
