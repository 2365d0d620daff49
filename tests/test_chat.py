"""POST /chat with the extractive answerer, and the stored sessions and messages."""

import json
import re

import pytest

PASSAGES = {
    "Kettle manual": "Descale the kettle every month by boiling a mixture of water and white vinegar. "
                     "Rinse it twice with clean water afterwards.",
    "Bicycle guide": "Inflate road bicycle tyres to between 80 and 100 psi. Check the pressure weekly.",
}


@pytest.fixture
def manuals(api, rq_worker):
    user = api.register()
    for title, text in PASSAGES.items():
        document_id = api.upload_text(user, title, text).json()["document"]["id"]
        assert api.wait_for_document(user, document_id)["status"] == "ready"
    return user


def test_answer_cites_its_sources(api, manuals):
    response = api.http.post("/chat", headers=manuals["headers"],
                             json={"message": "How often should I descale the kettle?", "session_id": "test-session"})
    assert response.status_code == 200
    body = response.json()
    message = body["message"]
    assert body["session_id"] == "test-session"
    assert message["role"] == "assistant"
    assert "vinegar" in message["content"]
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", message["content"])}
    assert markers == {citation["n"] for citation in message["citations"]}
    assert message["citations"][0]["title"] == "Kettle manual"
    assert body["steps"][0]["type"] == "search"


def test_off_topic_question_says_documents_do_not_answer(api, manuals):
    body = api.http.post("/chat", headers=manuals["headers"],
                         json={"message": "Who won the football world cup in 1966?"}).json()
    assert body["message"]["citations"] == []
    assert "do not answer" in body["message"]["content"]


def test_session_is_created_when_omitted(api, manuals):
    body = api.http.post("/chat", headers=manuals["headers"], json={"message": "tyre pressure"}).json()
    assert body["session_id"]
    sessions = api.http.get("/chat/sessions", headers=manuals["headers"]).json()["items"]
    assert [session["session_id"] for session in sessions] == [body["session_id"]]


def test_messages_are_stored_oldest_first(api, manuals):
    for question in ("tyre pressure?", "descale kettle?"):
        api.http.post("/chat", headers=manuals["headers"], json={"message": question, "session_id": "s1"})
    items = api.http.get("/chat/sessions/s1/messages", headers=manuals["headers"]).json()["items"]
    assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
    assert items[0]["content"] == "tyre pressure?"
    assert items[2]["content"] == "descale kettle?"


def test_streamed_chat_sends_meta_first_and_done_last(api, manuals):
    events = []
    with api.http.stream("POST", "/chat", headers=manuals["headers"],
                         json={"message": "How often should I descale the kettle?", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        ids, name = [], None
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [name for name, _ in events]
    assert names[0] == "meta"
    assert names[-1] == "done"
    assert names.count("done") == 1
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == events[-1][1]["message"]["content"]


def test_streamed_deltas_rebuild_the_answer_exactly(api, manuals):
    # Regression: every delta ended with a space, so the joined text had one at the end.
    deltas, done = [], None
    with api.http.stream("POST", "/chat", headers=manuals["headers"],
                         json={"message": "How often should I descale the kettle?", "stream": True}) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "delta":
                deltas.append(json.loads(line[6:])["text"])
            elif line.startswith("data: ") and name == "done":
                done = json.loads(line[6:])
    assert "".join(deltas) == done["message"]["content"]
