"""The workload both load generators send: the request mix, the questions and their popularity.

A user's request is one of: list documents, search, chat, health check, in the ratio 3 : 2 : 1 : 1.
Search and chat text comes from QUESTIONS, about the standard-library modules that seeding
uploads (CORPUS_MODULES). Popularity follows a Zipf law over the list order, so the first few
questions are asked most of the time and the rest rarely. That skew is also what gives the
search cache something to hit.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

# Modules whose documentation seeding uploads to every tenant. Each is cut to a few KB, so a
# tenant's corpus is a few dozen chunks and is embedded in under a minute.
CORPUS_MODULES = ("argparse", "csv", "json", "subprocess", "pathlib", "datetime", "re", "logging")

QUESTIONS = (
    "How do I parse command-line options?",
    "How can I read and write CSV files?",
    "How do I serialize an object to JSON?",
    "How do I run a shell command and capture its output?",
    "How do I join two filesystem paths?",
    "How do I match a regular expression against a string?",
    "How do I format a date as a string?",
    "How do I write log messages to a file?",
    "How do I add a positional argument to a parser?",
    "What does json.loads do with invalid input?",
    "How do I read a CSV file into dictionaries?",
    "How do I get the current time in UTC?",
    "How do I set a timeout on a subprocess?",
    "How do I list the files in a directory?",
    "How do I replace text matching a pattern?",
    "What log levels are there?",
    "How do I pretty-print JSON with indentation?",
    "How do I choose the CSV delimiter?",
    "How do I compute the difference between two dates?",
    "How do I check whether a path exists?",
    "How do I pass environment variables to a child process?",
    "How do I define mutually exclusive options?",
    "How do I compile a regular expression with flags?",
    "How do I configure a logger's format?",
    "How do I parse an ISO 8601 timestamp?",
    "How do I read the whole contents of a file with pathlib?",
    "How do I pipe the output of one process into another?",
    "How do I escape special characters in a regular expression?",
    "What is a JSON encoder and how do I subclass it?",
    "How do I quote fields that contain commas in CSV?",
)

# The mix of request kinds, by weight.
MIX = {"documents": 3, "search": 2, "chat": 1, "health": 1}

# Zipf exponent: with s = 1.1 over 30 questions the most popular one is about 29% of the requests,
# the top five about 62% and the ten least popular together about 8%.
ZIPF_EXPONENT = 1.1


@dataclass(frozen=True)
class Request:
    """One request to send: the statsd route name, the method, the path and the JSON body."""

    kind: str
    method: str
    path: str
    body: dict | None

    @property
    def name(self) -> str:
        return f"{self.method} /{self.kind}"


def zipf_weights(count: int, exponent: float = ZIPF_EXPONENT) -> list[float]:
    """Return normalized Zipf weights 1/k^s for ranks k = 1..count."""
    raw = [1.0 / (rank ** exponent) for rank in range(1, count + 1)]
    total = sum(raw)
    return [weight / total for weight in raw]


class Workload:
    """Draws requests of the mix, with questions by Zipf popularity, from a seeded generator."""

    def __init__(self, seed: int | None = None, exponent: float = ZIPF_EXPONENT):
        self.random = random.Random(seed)
        self.question_weights = zipf_weights(len(QUESTIONS), exponent)
        self.kinds = list(MIX)
        self.kind_weights = [MIX[kind] for kind in self.kinds]

    def question(self) -> str:
        return self.random.choices(QUESTIONS, weights=self.question_weights)[0]

    def request(self, kind: str | None = None, session_id: str = "load-test") -> Request:
        kind = kind or self.random.choices(self.kinds, weights=self.kind_weights)[0]
        if kind == "documents":
            return Request(kind, "GET", "/documents?limit=20", None)
        if kind == "search":
            return Request(kind, "POST", "/search", {"query": self.question(), "limit": 5})
        if kind == "chat":
            return Request(kind, "POST", "/chat", {"message": self.question(), "session_id": session_id})
        if kind == "health":
            return Request(kind, "GET", "/health", None)
        raise ValueError(f"unknown request kind {kind!r}; expected one of {', '.join(MIX)}")


def load_accounts(path: str | None = None) -> list[dict]:
    """Read the seeded accounts ({"email", "tenant", "token"}) from LOADTEST_ACCOUNTS or `path`."""
    path = path or os.environ["LOADTEST_ACCOUNTS"]
    with open(path) as handle:
        accounts = json.load(handle)
    if not accounts:
        raise ValueError(f"no accounts in {path}; run the seeding step first")
    return accounts


RESULT_COLUMNS = ("model", "phase", "target", "name", "kind", "scheduled", "start", "end", "latency_ms",
                  "service_ms", "status", "ok", "error")
