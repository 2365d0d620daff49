"""POST /chat with a compound question: the extractive answerer answers each part from its own hits."""

import re

import pytest

from server.chat.extractive import NO_ANSWER

ANIMALS = {
    "Zebras": "Zebras are African equines with black and white striped coats. "
              "Three species live today: the plains zebra, the mountain zebra and the Grevy's zebra. "
              "Zebras graze on grasses and live in herds on open savannas.",
    "Koalas": "The koala is a tree-dwelling marsupial native to eastern Australia. "
              "Koalas eat eucalyptus leaves almost exclusively and sleep up to twenty hours a day. "
              "Young koalas eat a substance called pap to prepare for a eucalyptus diet. "
              "Koalas rarely drink water because the leaves they eat contain enough moisture.",
}


@pytest.fixture
def animals(api, rq_worker):
    user = api.register()
    for title, text in ANIMALS.items():
        document_id = api.upload_text(user, title, text).json()["document"]["id"]
        assert api.wait_for_document(user, document_id)["status"] == "ready"
    return user


def ask(api, user: dict, question: str) -> dict:
    response = api.http.post("/chat", headers=user["headers"], json={"message": question})
    assert response.status_code == 200, response.text
    return response.json()


def test_compound_question_cites_both_documents(api, animals):
    # Regression: both parts were searched, but only the koala sentences were quoted.
    body = ask(api, animals, "What are zebras? And what do koalas eat?")

    message = body["message"]
    assert [step["type"] for step in body["steps"]] == ["search", "search"]
    assert {citation["title"] for citation in message["citations"]} == {"Zebras", "Koalas"}
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", message["content"])}
    assert markers == {citation["n"] for citation in message["citations"]}


def test_compound_question_answers_parts_in_order(api, animals):
    content = ask(api, animals, "What are zebras? And what do koalas eat?")["message"]["content"]

    assert "striped coats" in content
    assert "eucalyptus leaves" in content
    assert content.index("striped coats") < content.index("And what do koalas eat?")
    assert content.index("And what do koalas eat?") < content.index("eucalyptus leaves")


def test_compound_question_unanswered_part_says_so(api, animals):
    message = ask(api, animals, "What are zebras? And what do penguins eat?")["message"]

    assert "striped coats" in message["content"]
    assert message["content"].endswith(f"And what do penguins eat?\n{NO_ANSWER}")
    assert [citation["title"] for citation in message["citations"]] == ["Zebras"]


def test_single_question_has_no_part_heading(api, animals):
    message = ask(api, animals, "What do koalas eat?")["message"]

    assert "eucalyptus leaves" in message["content"]
    assert "What do koalas eat?" not in message["content"]
    assert [citation["title"] for citation in message["citations"]] == ["Koalas"]
