"""Decisions of the extractive answerer on a labelled set: `python -m tests.benchmark_answers`.

It starts a one-worker web server and an RQ worker on the embedded services under var/bench and
uploads the pydoc text of MODULES into one tenant; csv is left out, as in the demo where the
array module answered a question about CSV files. Then, in this process and against the same
database, it runs the extractive agent's searches for each labelled question and weighs the hits.

Each question is either answered by one module (ANSWERABLE: the answer must cite it) or by none
(NEAR_MISSES: the answer must be NO_ANSWER). The script prints, per question, the evidence (best
coverage, best similarity, words and names that no hit contains) and the decision of the current
rule and of the previous one, which answered whenever the coverage reached MIN_COVERAGE or the
similarity reached MIN_SIMILARITY, on the same hits. It ends with the share of each group that
each rule gets right and the similarity range of each group. Server logs go to var/bench/logs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from uuid import UUID

import httpx

from tests.benchmark_ingestion import BENCH_DATA_DIR, ROOT, start
from tests.conftest import _free_port, _stop, wait_until_ready

MODULES = ["array", "base64", "configparser", "filecmp", "fileinput", "json", "shlex", "tempfile"]

# (question, module whose document answers it). The second half are paraphrases that share few
# words with the module's text.
ANSWERABLE = [
    ("How do I write all items of an array to a file?", "array"),
    ("How do I serialize an object to a JSON formatted string?", "json"),
    ("How do I decode a Base64 encoded string?", "base64"),
    ("How do I split a string using shell-like syntax?", "shlex"),
    ("How do I create a temporary directory?", "tempfile"),
    ("How do I compare two directories?", "filecmp"),
    ("How do I read an INI configuration file?", "configparser"),
    ("What type codes does the array module support?", "array"),
    ("How can I turn a Python dictionary into JSON text?", "json"),
    ("How can I convert binary data to printable ASCII characters?", "base64"),
    ("How can I save the numbers of an array to disk?", "array"),
    ("How do I pretty-print JSON with indentation?", "json"),
    ("How do I iterate over lines from multiple input files?", "fileinput"),
    ("Where can I make a scratch file that is deleted automatically?", "tempfile"),
    ("How can I check whether two files have identical contents?", "filecmp"),
    ("How do I break a command line into tokens the way a shell does?", "shlex"),
]

# Questions that none of MODULES answers, though their generic words occur in it.
NEAR_MISSES = [
    "How do I read a CSV file?",
    "how do i read a csv file?",
    "How do I parse an XML file?",
    "How do I compress a file with gzip?",
    "How do I encrypt a string with AES?",
    "How do I sort an array in place?",
    "How do I pickle an object to a file?",
    "How do I read a YAML configuration file?",
    "How do I send an HTTP request?",
    "How do I read an Excel spreadsheet?",
    "How do I delete a directory tree?",
    "How do I copy a file?",
    "How do I zip a directory?",
]


@dataclass(frozen=True)
class Outcome:
    question: str
    expected_module: str | None
    answered: bool
    previous_rule_answered: bool
    cited_modules: list[str]
    coverage: float
    similarity: float | None
    missing_words: list[str]
    missing_names: list[str]

    @property
    def correct(self) -> bool:
        if self.expected_module is None:
            return not self.answered
        return self.answered and self.expected_module in self.cited_modules

    @property
    def previous_rule_correct(self) -> bool:
        # The previous rule quoted the same kind of sentences, so only its decision is compared.
        return self.previous_rule_answered == (self.expected_module is not None)


def upload_modules(http: httpx.Client, headers: dict) -> dict[str, str]:
    """Upload the pydoc text of MODULES and wait until it is ready; return module by document id."""
    from server.demo.corpus import render_stdlib_docs

    modules = {}
    for document in render_stdlib_docs(min_modules=len(MODULES), only=MODULES):
        response = http.post("/documents", headers=headers, json={"title": document.title, "text": document.text})
        response.raise_for_status()
        modules[response.json()["document"]["id"]] = document.module
    deadline = time.monotonic() + 900
    for document_id in modules:
        while http.get(f"/documents/{document_id}", headers=headers).json()["status"] != "ready":
            if time.monotonic() > deadline:
                raise SystemExit(f"document {document_id} was not ready within 900 s")
            time.sleep(0.5)
    return modules


async def weigh_questions(database_url: str, tenant_id: UUID, modules: dict[str, str]) -> list[Outcome]:
    from server.chat.agent import ExtractiveProvider
    from server.chat.agent import merge_hits
    from server.chat.extractive import (MIN_COVERAGE, MIN_SIMILARITY, QuestionPart, compose_compound_answer,
                                        split_question, weigh_evidence)
    from server.chat.tools import Toolbox
    from server.database import create_database
    from server.settings import get_settings

    async def ignore_step(step: dict) -> None:
        return None

    settings = get_settings()
    db = create_database(settings, database_url)
    await db.connect()
    provider = ExtractiveProvider()
    labelled = [*ANSWERABLE, *((question, None) for question in NEAR_MISSES)]
    outcomes = []
    try:
        for question, expected_module in labelled:
            tools = Toolbox(db, tenant_id=tenant_id, top_k=5, max_steps=settings.chat_max_steps,
                            record_step=ignore_step)
            parts = split_question(question)
            hits_per_part = await provider.search_parts(parts, tools)
            answer = compose_compound_answer([QuestionPart(part, part, hits)
                                              for part, hits in zip(parts, hits_per_part)])
            # The evidence printed is that of the whole question over the hits of all its parts.
            merged: dict = {}
            for hits in hits_per_part:
                merge_hits(merged, hits)
            evidence = weigh_evidence(" ".join(parts), sorted(merged.values(), key=lambda hit: -hit.score))
            previous = evidence is not None and (
                evidence.coverage >= MIN_COVERAGE
                or (evidence.similarity is not None and evidence.similarity >= MIN_SIMILARITY))
            outcomes.append(Outcome(
                question=question, expected_module=expected_module, answered=answer.answered,
                previous_rule_answered=previous,
                cited_modules=sorted({modules[citation.document_id] for citation in answer.citations}),
                coverage=evidence.coverage if evidence else 0.0,
                similarity=evidence.similarity if evidence else None,
                missing_words=sorted(evidence.missing_words) if evidence else [],
                missing_names=sorted(evidence.missing_names) if evidence else [],
            ))
    finally:
        await db.disconnect()
    return outcomes


def print_outcomes(outcomes: list[Outcome]) -> None:
    print("| question | expected | cited | coverage | similarity | words in no hit | names in no hit "
          "| current rule | previous rule |")
    print("|---|---|---|---|---|---|---|---|---|")
    for outcome in outcomes:
        similarity = "-" if outcome.similarity is None else f"{outcome.similarity:.2f}"
        print(f"| {outcome.question} | {outcome.expected_module or 'none'} | {', '.join(outcome.cited_modules) or '-'} "
              f"| {outcome.coverage:.2f} | {similarity} | {', '.join(outcome.missing_words) or '-'} "
              f"| {', '.join(outcome.missing_names) or '-'} | {'right' if outcome.correct else 'WRONG'} "
              f"| {'right' if outcome.previous_rule_correct else 'WRONG'} |")

    print()
    for label, group in (("answerable", [o for o in outcomes if o.expected_module]),
                         ("near misses", [o for o in outcomes if not o.expected_module])):
        current = sum(outcome.correct for outcome in group)
        previous = sum(outcome.previous_rule_correct for outcome in group)
        similarities = [outcome.similarity for outcome in group if outcome.similarity is not None]
        # Only the similarity can decide a question with a word in no hit and no name missing.
        undecided = [outcome.similarity for outcome in group
                     if outcome.missing_words and not outcome.missing_names and outcome.similarity is not None]
        print(f"{label}: current rule right on {current}/{len(group)}, previous rule on {previous}/{len(group)}; "
              f"best hit similarity {min(similarities):.2f} to {max(similarities):.2f}, "
              f"{min(undecided, default=0):.2f} to {max(undecided, default=0):.2f} with a word but no name in no hit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()

    os.environ["DATA_DIR"] = str(BENCH_DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from server.services import export_service_urls
    from server.settings import get_settings

    database_url, _ = export_service_urls(get_settings())
    port = _free_port()
    env = {**os.environ, "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1", "BACKEND_WORKERS": "1",
           "RATE_LIMIT_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    processes = [start("web", ["-m", "server"], env), start("worker", ["-m", "jobs.worker"], env)]
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, processes[0])
        with httpx.Client(base_url=base_url, timeout=60) as http:
            email = f"bench-answers-{os.getpid()}-{int(time.time())}@example.com"
            response = http.post("/auth/register", json={"tenant": "Answers benchmark", "email": email,
                                                         "password": "correct-horse-battery"})
            response.raise_for_status()
            body = response.json()
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            modules = upload_modules(http, headers)
        outcomes = asyncio.run(weigh_questions(database_url, UUID(body["tenant_id"]), modules))
        print_outcomes(outcomes)
    finally:
        for process in processes:
            _stop(process)


if __name__ == "__main__":
    main()
