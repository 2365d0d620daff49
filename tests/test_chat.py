"""POST /chat with the extractive answerer, and the stored sessions and messages."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
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


def ask(api, user: dict, question: str, session_id: str) -> dict:
    response = api.http.post("/chat", headers=user["headers"], json={"message": question, "session_id": session_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_compound_question_searches_each_part(api, manuals):
    body = ask(api, manuals, "How often should I descale the kettle and what pressure should bicycle tyres have?",
               "compound")
    queries = [step["query"] for step in body["steps"] if step["type"] == "search"]
    assert queries[:2] == ["How often should I descale the kettle?", "What pressure should bicycle tyres have?"]
    titles = {citation["title"] for citation in body["message"]["citations"]}
    assert titles == {"Kettle manual", "Bicycle guide"}


def test_follow_up_uses_the_previous_question(api, manuals):
    ask(api, manuals, "How often should I descale the kettle?", "follow-up")
    body = ask(api, manuals, "And with what?", "follow-up")
    assert "vinegar" in body["message"]["content"]
    assert "descale" in body["steps"][0]["query"]


def test_follow_up_in_a_new_session_has_no_context(api, manuals):
    body = ask(api, manuals, "And with what?", "fresh")
    assert body["steps"][0]["query"] == "And with what?"


def test_same_session_string_of_two_users_stays_apart(api, rq_worker):
    # Two users in two tenants pick the same session string and ask at the same time.
    kettle_user, bicycle_user = api.register(), api.register()
    for user, title in ((kettle_user, "Kettle manual"), (bicycle_user, "Bicycle guide")):
        document_id = api.upload_text(user, title, PASSAGES[title]).json()["document"]["id"]
        assert api.wait_for_document(user, document_id)["status"] == "ready"
    conversations = {
        "kettle": (kettle_user, ["How often should I descale the kettle?", "And with what?"]),
        "bicycle": (bicycle_user, ["What pressure should road bicycle tyres have?", "And how often?"]),
    }

    def converse(name: str) -> list[dict]:
        user, questions = conversations[name]
        with httpx.Client(base_url=api.base_url, timeout=60) as http:
            return [http.post("/chat", headers=user["headers"],
                              json={"message": question, "session_id": "shared"}).json() for question in questions]

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = dict(zip(conversations, pool.map(converse, conversations)))

    assert "vinegar" in answers["kettle"][1]["message"]["content"]
    assert "psi" in answers["bicycle"][0]["message"]["content"]
    assert "pressure" in answers["bicycle"][1]["steps"][0]["query"]
    for name, (user, questions) in conversations.items():
        items = api.http.get("/chat/sessions/shared/messages", headers=user["headers"]).json()["items"]
        assert [item["content"] for item in items if item["role"] == "user"] == questions
