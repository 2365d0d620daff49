"""Tests of the demo corpus (pydoc rendering of the standard library) and the demo client."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time

import httpx
import pytest

from server.demo import client, corpus
from server.demo.corpus import MAX_TEXT_BYTES, CorpusError, ModuleDoc, render_stdlib_docs

MACHINE_PATHS = {
    "sys.executable": sys.executable,
    "sys.prefix": sys.prefix,
    "sys.base_prefix": sys.base_prefix,
    "home": os.path.expanduser("~"),
}


def assert_clean_text(document: ModuleDoc) -> None:
    assert document.text.strip(), document.module
    assert "MODULE REFERENCE" not in document.text, document.module
    assert "\nFILE\n" not in document.text, document.module
    assert "Python Library Documentation:" not in document.text, document.module
    assert " at 0x" not in document.text, document.module
    assert len(document.text.encode("utf-8")) <= MAX_TEXT_BYTES, document.module
    for label, path in MACHINE_PATHS.items():
        if path not in ("/", "/usr", "/usr/local"):
            assert path not in document.text, f"{document.module} contains {label} {path}"


@pytest.fixture(scope="module")
def first_five() -> list[ModuleDoc]:
    return render_stdlib_docs(min_modules=1, max_modules=5)


def test_small_render_is_sorted_prefix(first_five):
    modules = [document.module for document in first_five]
    assert len(first_five) == 5
    assert modules == sorted(modules)
    assert modules == corpus.list_stdlib_modules()[:5]


def test_small_render_titles(first_five):
    titles = {document.module: document.title for document in first_five}
    assert titles["argparse"] == "argparse — Command-line parsing library"
    assert titles["abc"] == "abc — Abstract Base Classes (ABCs) according to PEP 3119"
    # ast's docstring starts with an underlined "ast" heading, which the title skips.
    assert titles["ast"].startswith("ast — The `ast` module helps")
    for module, title in titles.items():
        assert title.startswith(f"{module} — "), title


def test_small_render_text_is_clean(first_five):
    for document in first_five:
        assert_clean_text(document)
        assert document.text.startswith("NAME\n"), document.module


def test_huge_module_is_capped(first_five):
    ast_document = next(document for document in first_five if document.module == "ast")
    assert len(ast_document.text.encode("utf-8")) <= MAX_TEXT_BYTES
    assert ast_document.text.endswith("this document keeps only its first part.]\n")


def test_render_is_deterministic(first_five):
    assert render_stdlib_docs(min_modules=1, max_modules=5, workers=1) == first_five


def test_full_render_has_150_modules(monkeypatch):
    # A variable of the calling process must not reach the corpus through cgi's environ default.
    monkeypatch.setenv("DEMO_CORPUS_CANARY", "canary-3f9b1c")
    started_at = time.monotonic()
    documents = render_stdlib_docs()
    elapsed = time.monotonic() - started_at
    size = sum(len(document.text.encode("utf-8")) for document in documents)
    print(f"rendered {len(documents)} modules, {size} bytes, in {elapsed:.1f} s")

    modules = [document.module for document in documents]
    assert len(documents) >= 150
    assert modules == sorted(set(modules))
    assert {"argparse", "csv", "json", "subprocess"} <= set(modules)
    assert not {"antigravity", "this", "tkinter", "turtle", "idlelib"} & set(modules)
    assert not [module for module in modules if module.startswith("_")]
    for document in documents:
        assert_clean_text(document)
        assert "canary-3f9b1c" not in document.text, document.module


def test_too_few_modules_raises(monkeypatch):
    monkeypatch.setattr(corpus, "list_stdlib_modules", lambda: ["csv", "no_such_module_x"])
    with pytest.raises(CorpusError, match="only 1 standard library modules rendered"):
        render_stdlib_docs(min_modules=2)


def test_min_above_max_raises():
    with pytest.raises(ValueError, match="min_modules"):
        render_stdlib_docs(min_modules=10, max_modules=5)


def test_lane_skips_failed_import():
    results: queue.Queue = queue.Queue()
    corpus._render_lane(["no_such_module_x", "csv"], 60.0, results, threading.Event())
    outcomes = dict(results.get_nowait() for _ in range(2))
    assert outcomes["no_such_module_x"].startswith("import failed: ModuleNotFoundError")
    assert isinstance(outcomes["csv"], ModuleDoc)
    assert outcomes["csv"].title == "csv — CSV parsing and writing"


def test_lane_skips_unresponsive_renderer(monkeypatch):
    monkeypatch.setattr(corpus, "_RENDERER", "import time; time.sleep(60)")
    monkeypatch.setattr(corpus, "_WATCHDOG_GRACE_SECONDS", 0.0)
    results: queue.Queue = queue.Queue()
    started_at = time.monotonic()
    corpus._render_lane(["csv", "json"], 1.0, results, threading.Event())
    outcomes = dict(results.get_nowait() for _ in range(2))
    assert outcomes == {
        "csv": "renderer stopped responding after 1 s",
        "json": "renderer stopped responding after 1 s",
    }
    assert time.monotonic() - started_at < 10


def test_lane_skips_crashed_renderer(monkeypatch):
    monkeypatch.setattr(corpus, "_RENDERER", "import sys; sys.exit(3)")
    results: queue.Queue = queue.Queue()
    corpus._render_lane(["csv"], 60.0, results, threading.Event())
    assert results.get_nowait() == ("csv", "renderer exited early with status 3")


def test_strip_sections_drops_file_and_reference():
    lines = [
        "NAME",
        "    csv - CSV parsing and writing.",
        "",
        "MODULE REFERENCE",
        "    https://docs.python.org/3.11/library/csv.html",
        "",
        "DESCRIPTION",
        "    Text.",
        "",
        "FILE",
        "    /opt/python/lib/python3.11/csv.py",
    ]
    result = corpus.strip_sections(lines, frozenset({"FILE", "MODULE REFERENCE"}))
    assert result == ["NAME", "    csv - CSV parsing and writing.", "", "DESCRIPTION", "    Text.", ""]


def test_redact_paths_replaces_machine_paths():
    paths = {
        "sys.executable": "/opt/venv/bin/python",
        "sys.prefix": "/opt/venv",
        "sys.base_prefix": "/opt/python/3.11.7",
        "home": "/home/alice",
    }
    text = "\n".join(
        [
            "    executable = '/opt/venv/bin/python'",
            "    prefix = '/opt/venv'",
            "    USER_SITE = '/home/alice/.local/lib/python3.11/site-packages'",
            "    modules = {'abc': <module 'abc' from '/opt/python/3....on3.11/abc.py'>",
        ]
    )
    assert corpus.redact_paths(text, paths).splitlines() == [
        "    executable = '<sys.executable>'",
        "    prefix = '<sys.prefix>'",
        "    USER_SITE = '<home>/.local/lib/python3.11/site-packages'",
        "    modules = {'abc': <module 'abc' from '<sys.base_prefix>...on3.11/abc.py'>",
    ]


def test_redact_paths_keeps_shared_prefixes():
    text = "a directory such as /usr/local/lib/python2.5/site-packages"
    assert corpus.redact_paths(text, {"sys.prefix": "/usr/local"}) == text


@pytest.mark.parametrize(
    ("docstring", "title"),
    [
        ("CSV parsing and writing.\n\nMore text.", "csv — CSV parsing and writing"),
        ("csv -- a parser for\ncomma separated values.", "csv — A parser for comma separated values"),
        ("Module csv -- Helpers.", "csv — Helpers"),
        ("csv\n\nThe main package.", "csv — The main package"),
        ("csv\n~~~\n\nThe module helps.", "csv — The module helps"),
        ("Heap queue (a.k.a. priority queue).", "csv — Heap queue (a.k.a. priority queue)"),
        ("A client based on:\n- RFC 977\n- RFC 2980", "csv — A client based on"),
        ("First sentence. Second sentence.", "csv — First sentence"),
        ("", "csv"),
    ],
)
def test_make_title_cases(docstring, title):
    assert corpus.make_title("csv", docstring) == title


def test_make_title_cuts_long_summary():
    title = corpus.make_title("csv", "word " * 100)
    assert title.endswith("…")
    assert len(title) <= len("csv — ") + corpus.MAX_TITLE_CHARS


def test_cap_text_cuts_at_line_end():
    text = "".join(f"line {index} é\n" for index in range(100))
    capped = corpus.cap_text(text, "csv", limit=300)
    head, notice = capped.rsplit("\n[", 1)
    assert len(capped.encode("utf-8")) <= 300
    assert head.endswith("é\n")
    assert text.startswith(head)
    assert notice.startswith("The pydoc text of csv is")


def test_parser_defaults():
    arguments = client.build_parser().parse_args([])
    assert arguments.url == "http://127.0.0.1:8000"
    assert arguments.modules is None
    assert arguments.email == "test@example.com"
    assert arguments.password == "testpassword"
    assert arguments.tenant == "Demo"
    assert arguments.timeout == 1800.0


def test_parser_reads_options():
    arguments = client.build_parser().parse_args(
        [
            "--url", "http://localhost:9000/",
            "--modules", "20",
            "--email", "a@b.example",
            "--password", "secret-pass",
            "--tenant", "Acme",
            "--timeout", "60",
        ]
    )
    assert arguments.url == "http://localhost:9000"
    assert arguments.modules == 20
    assert arguments.email == "a@b.example"
    assert arguments.password == "secret-pass"
    assert arguments.tenant == "Acme"
    assert arguments.timeout == 60.0


@pytest.mark.parametrize(
    "argv",
    [["--url", "localhost:8000"], ["--modules", "0"], ["--modules", "many"], ["--timeout", "-1"]],
)
def test_parser_rejects_invalid_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        client.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


TOKEN = {"access_token": "token-1", "token_type": "bearer", "expires_in": 3600}


class FakePlatform:
    """In-memory stand-in for the platform's HTTP API, served through httpx.MockTransport.

    The login is rejected until the user registers, the first upload is rate limited once, and
    each GET /documents moves queued documents to processing and then to ready (or failed for
    a title containing "broken").
    """

    def __init__(self, existing: dict[str, dict] | None = None):
        self.registered = False
        self.documents: dict[str, dict] = dict(existing or {})
        self.requests: list[httpx.Request] = []
        self.rate_limited_once = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = (request.method, request.url.path)
        if route == ("POST", "/auth/login"):
            if not self.registered:
                return self.error(401, "invalid_credentials", "The email or password is wrong.")
            return httpx.Response(200, json=TOKEN)
        if route == ("POST", "/auth/register"):
            self.registered = True
            return httpx.Response(201, json={"tenant_id": "t1", "user_id": "u1", **TOKEN})
        if request.headers.get("Authorization") != "Bearer token-1":
            return self.error(401, "unauthorized", "Missing or invalid token.")
        if route == ("POST", "/documents"):
            return self.upload(json.loads(request.content))
        if route == ("GET", "/documents"):
            return self.list_page(request)
        if route == ("POST", "/chat"):
            return self.chat(json.loads(request.content))
        return self.error(404, "not_found", "Not found.")

    @staticmethod
    def error(status: int, code: str, message: str) -> httpx.Response:
        body = {"error": {"code": code, "message": message, "request_id": "req-1"}}
        return httpx.Response(status, json=body)

    def upload(self, body: dict) -> httpx.Response:
        if not self.rate_limited_once:
            self.rate_limited_once = True
            response = self.error(429, "rate_limited", "Too many requests.")
            response.headers["Retry-After"] = "1"
            return response
        document_id = f"doc-{len(self.documents) + 1}"
        document = {
            "id": document_id,
            "title": body["title"],
            "status": "queued",
            "error": None,
            "chunk_count": 0,
            "content_sha256": "sha-of-" + body["title"],
            "metadata": body["metadata"],
        }
        self.documents[document_id] = document
        return httpx.Response(202, json={"document": document, "job_id": f"job-{document_id}"})

    def list_page(self, request: httpx.Request) -> httpx.Response:
        for document in self.documents.values():
            if document["status"] == "processing":
                broken = "broken" in document["title"]
                document["status"] = "failed" if broken else "ready"
                document["error"] = "The text could not be split into chunks." if broken else None
                document["chunk_count"] = 0 if broken else 7
            elif document["status"] == "queued":
                document["status"] = "processing"
        # Pages of one item exercise the cursor.
        ordered = sorted(self.documents.values(), key=lambda document: document["id"], reverse=True)
        start = int(request.url.params.get("cursor", "0"))
        next_cursor = str(start + 1) if start + 1 < len(ordered) else None
        page = {"items": ordered[start : start + 1], "next_cursor": next_cursor}
        return httpx.Response(200, json=page)

    @staticmethod
    def chat(body: dict) -> httpx.Response:
        message = {
            "id": "m1",
            "role": "assistant",
            "content": f"Use the csv module [1]. ({body['message']})",
            "citations": [
                {
                    "n": 1,
                    "document_id": "doc-1",
                    "chunk_id": "c1",
                    "title": "csv — CSV parsing and writing",
                    "snippet": "CSV parsing and writing.",
                }
            ],
            "created_at": "2026-01-01T00:00:00Z",
        }
        answer = {"session_id": body["session_id"], "message": message, "steps": [], "usage": {}}
        return httpx.Response(200, json=answer)


def upload_requests(platform: FakePlatform) -> list[httpx.Request]:
    return [
        request
        for request in platform.requests
        if request.method == "POST" and request.url.path == "/documents"
    ]


def run_fake_demo(platform: FakePlatform, documents: list[ModuleDoc], monkeypatch) -> int:
    monkeypatch.setattr(client, "POLL_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(client, "MAX_POLL_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(client, "MIN_SECONDS_PER_POLL_REQUEST", 0.0)
    return client.run_demo(
        "http://platform.test",
        password="demo-password-1",
        questions=["How can I read and write CSV files?"],
        corpus=documents,
        transport=httpx.MockTransport(platform.handle),
        timeout=30,
    )


def test_demo_against_fake_platform(monkeypatch, capsys):
    platform = FakePlatform()
    documents = [
        ModuleDoc("csv", "csv — CSV parsing and writing", "NAME\n    csv\n"),
        ModuleDoc("json", "json — JSON encoder and decoder", "NAME\n    json\n"),
    ]

    status = run_fake_demo(platform, documents, monkeypatch)

    output = capsys.readouterr()
    assert status == 0, output.err
    assert "Registered test@example.com" in output.out
    assert "documents uploaded:      2" in output.out
    assert "ready:                   2" in output.out
    assert "chunks:                  14" in output.out
    assert "rate limited:            1 responses" in output.out
    assert "A: Use the csv module [1]." in output.out
    assert "   [1] csv — CSV parsing and writing" in output.out
    assert "demo-password-1" not in output.out + output.err
    assert "token-1" not in output.out + output.err
    uploads = [json.loads(request.content) for request in upload_requests(platform)]
    assert {upload["metadata"]["module"] for upload in uploads} == {"csv", "json"}
    assert all(upload["metadata"]["source"] == "python-stdlib" for upload in uploads)


def test_demo_reports_failed_document(monkeypatch, capsys):
    platform = FakePlatform()
    documents = [ModuleDoc("csv", "csv — broken", "NAME\n    csv\n")]

    status = run_fake_demo(platform, documents, monkeypatch)

    output = capsys.readouterr()
    assert status == 1
    assert "failed:                  1" in output.out
    assert "csv failed: The text could not be split into chunks." in output.out


def test_demo_skips_document_with_known_hash(monkeypatch, capsys):
    text = "NAME\n    csv\n"
    known = {
        "doc-9": {
            "id": "doc-9", "title": "csv", "status": "ready", "error": None, "chunk_count": 3,
            "content_sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    }
    platform = FakePlatform(existing=known)

    status = run_fake_demo(platform, [ModuleDoc("csv", "csv — CSV", text)], monkeypatch)

    output = capsys.readouterr()
    assert status == 0, output.err
    assert "already there:           1" in output.out
    assert "no new document was ingested" in output.out
    assert upload_requests(platform) == []


def test_demo_stops_on_taken_email(monkeypatch, capsys):
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/login":
            return FakePlatform.error(401, "invalid_credentials", "The email or password is wrong.")
        return FakePlatform.error(409, "conflict", "The email is already registered.")

    status = client.run_demo("http://platform.test", corpus=[], transport=httpx.MockTransport(handle))

    assert status == 1
    assert "exists but its password was rejected" in capsys.readouterr().err


def test_demo_prints_error_message_and_request_id(capsys):
    def handle(request: httpx.Request) -> httpx.Response:
        return FakePlatform.error(503, "unavailable", "The database is down.")

    status = client.run_demo("http://platform.test", corpus=[], transport=httpx.MockTransport(handle))

    error_output = capsys.readouterr().err
    assert status == 1
    assert "The database is down." in error_output
    assert "req-1" in error_output


def test_demo_reports_unreachable_platform(monkeypatch, capsys):
    monkeypatch.setattr(client, "MAX_TRANSPORT_ATTEMPTS", 1)

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    status = client.run_demo("http://platform.test", corpus=[], transport=httpx.MockTransport(handle))

    error_output = capsys.readouterr().err
    assert status == 1
    assert "POST /auth/login failed with ConnectError: Connection refused." in error_output
    assert "Check that the platform is running at http://platform.test" in error_output


def test_class_gutters_are_removed():
    # pydoc draws class bodies behind "|" bars, which ended up in chunks and quoted answers.
    text = corpus._clean_text("class Parser(object)\n |  parse(self, args)\n |      Parse the args.\n", {})
    assert "|" not in text
    assert "parse(self, args)" in text
