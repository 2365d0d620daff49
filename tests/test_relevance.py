"""Relevance on the standard-library corpus: the right module's chunks rank first.

getopt ("Parser for command line options") and optparse ("option parser") compete with argparse
("Command-line parsing library"). Asked about "options" in those words, the model ranks their
chunks first, which matches their pydoc text; asked about parsing command-line arguments, argparse
ranks first, as it should.
"""

import pytest

from server.demo.corpus import render_stdlib_docs

pytestmark = pytest.mark.shared_data

MODULES = ["argparse", "getopt", "optparse", "shlex", "csv", "json", "sys", "textwrap", "string", "fileinput"]
OPTIONS_QUESTION = "How do I parse command-line arguments?"


@pytest.fixture(scope="module")
def stdlib_tenant(module_api, rq_worker):
    user = module_api.register(tenant="Stdlib")
    ids = {}
    for doc in render_stdlib_docs(min_modules=len(MODULES), only=MODULES):
        response = module_api.upload_text(user, doc.title, doc.text, metadata={"module": doc.module})
        assert response.status_code == 202, response.text
        ids[response.json()["document"]["id"]] = doc.module
    for document_id in ids:
        assert module_api.wait_for_document(user, document_id, timeout=900)["status"] == "ready"
    return user, ids


def _top_modules(api, user, ids, query: str, mode: str = "hybrid") -> list[str]:
    body = api.http.post("/search", headers=user["headers"], json={"query": query, "mode": mode, "limit": 5})
    assert body.status_code == 200, body.text
    return [ids[result["document_id"]] for result in body.json()["results"]]


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_options_question_ranks_argparse_first(module_api, stdlib_tenant, mode):
    user, ids = stdlib_tenant
    modules = _top_modules(module_api, user, ids, OPTIONS_QUESTION, mode)
    assert modules[0] == "argparse", modules


def test_csv_question_ranks_csv_first(module_api, stdlib_tenant):
    user, ids = stdlib_tenant
    modules = _top_modules(module_api, user, ids, "How do I read rows from a comma-separated values file?")
    assert modules[0] == "csv", modules


def test_json_question_ranks_json_first(module_api, stdlib_tenant):
    user, ids = stdlib_tenant
    modules = _top_modules(module_api, user, ids, "How do I serialize a Python object to a JSON formatted string?")
    assert modules[0] == "json", modules


def test_chat_answer_cites_argparse_first(module_api, stdlib_tenant):
    user, ids = stdlib_tenant
    body = module_api.http.post("/chat", headers=user["headers"],
                                json={"message": OPTIONS_QUESTION, "session_id": "test-session"}).json()
    cited = [ids[citation["document_id"]] for citation in body["message"]["citations"]]
    assert cited, body["message"]["content"]
    assert cited[0] == "argparse", cited
