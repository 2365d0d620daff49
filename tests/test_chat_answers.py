"""POST /chat with the extractive answerer on ingested pydoc text: real answers and near misses.

The tenant holds the array and fileinput modules but not csv, as in the demo where the array
module's sentence about reading items from a file was quoted for a question about CSV files.
"""

import pytest

from server.chat.extractive import NO_ANSWER
from server.demo.corpus import render_stdlib_docs

pytestmark = pytest.mark.shared_data

MODULES = ["array", "fileinput"]


@pytest.fixture(scope="module")
def stdlib_tenant(module_api, rq_worker):
    user = module_api.register(tenant="Stdlib answers")
    titles = {}
    for document in render_stdlib_docs(min_modules=len(MODULES), only=MODULES):
        response = module_api.upload_text(user, document.title, document.text)
        assert response.status_code == 202, response.text
        titles[document.module] = document.title
        document_id = response.json()["document"]["id"]
        assert module_api.wait_for_document(user, document_id, timeout=600)["status"] == "ready"
    return user, titles


def ask(api, user: dict, question: str) -> dict:
    response = api.http.post("/chat", headers=user["headers"], json={"message": question})
    assert response.status_code == 200, response.text
    return response.json()["message"]


def test_csv_question_near_miss_not_answered(module_api, stdlib_tenant):
    # Regression: answered from the array module's sentence about reading items from a file.
    user, _ = stdlib_tenant

    message = ask(module_api, user, "How do I read a CSV file?")

    assert message["content"] == NO_ANSWER
    assert message["citations"] == []


def test_present_answer_cites_its_module(module_api, stdlib_tenant):
    user, titles = stdlib_tenant

    message = ask(module_api, user, "How do I write all items of an array to a file?")

    assert message["citations"]
    assert message["citations"][0]["title"] == titles["array"]
    assert "tofile" in message["content"]


def test_paraphrased_question_is_answered(module_api, stdlib_tenant):
    # The module "iterates over the lines of all files"; the question puts it in other words.
    user, titles = stdlib_tenant

    message = ask(module_api, user, "How can I go through the lines of many files one after another?")

    assert message["content"] != NO_ANSWER
    assert {citation["title"] for citation in message["citations"]} == {titles["fileinput"]}
