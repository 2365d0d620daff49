"""Command-line demo: ingest the standard library documentation and ask cited questions.

Start the platform, then run:

    python -m server.demo.client --url http://127.0.0.1:8000

The demo logs in (registering the demo user and tenant on first use), uploads one document per
standard library module through POST /documents, waits until ingestion has finished, asks a few
questions through POST /chat, and prints the cited answers and a summary. Every step goes
through the platform's HTTP API at --url and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import sys
import time
from collections.abc import Sequence

import httpx
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from server.demo.corpus import CorpusError, ModuleDoc, cap_text, render_stdlib_docs

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_EMAIL = "test@example.com"
DEFAULT_PASSWORD = "testpassword"
DEFAULT_TENANT = "Demo"
DEFAULT_TIMEOUT_SECONDS = 1800.0
# Each module's text is cut to this many bytes: its overview and first sections. The whole
# corpus (about 4 MB, 7,600 chunks) takes over 20 minutes to embed on 2 cores; cut, it is about
# 2 MB and 3,700 chunks.
DEFAULT_MAX_BYTES_PER_MODULE = 20_000
DEFAULT_MIN_MODULES = 150

CHAT_SESSION_ID = "demo"
DOCUMENT_SOURCE = "python-stdlib"
UPLOAD_CONCURRENCY = 4
PAGE_LIMIT = 100

# The list of documents is polled every 2 s while documents change state. While nothing changes
# the interval grows to 15 s, which keeps a long ingestion within the default rate limits of
# 60 requests per minute per user and 1000 per hour per tenant. A poll that needs several pages
# waits at least 1 s per request sent, so polling alone stays under 60 requests per minute.
POLL_INTERVAL_SECONDS = 2.0
MAX_POLL_INTERVAL_SECONDS = 15.0
MIN_SECONDS_PER_POLL_REQUEST = 1.0

# A chat answer can take several search steps and a language model call, so /chat gets a
# longer timeout than the other requests.
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
CHAT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)

# Attempts for a request that fails before any response arrives. Only requests that are safe to
# repeat are retried: reads, and uploads, which the platform deduplicates by content.
MAX_TRANSPORT_ATTEMPTS = 3

QUESTIONS = (
    "How do I parse command-line options?",
    "How can I read and write CSV files?",
    "How do I serialize an object to JSON?",
    "How do I run a shell command and capture its output?",
    # Off topic: the platform should reply that the documents do not cover it.
    "What is the capital of France?",
)


class DemoError(Exception):
    """A failure that stops the demo, with a message the user can act on."""


class ApiError(Exception):
    """An error response of the platform, with the message and request id from its body."""

    def __init__(
        self, method: str, path: str, status: int, code: str, message: str, request_id: str | None
    ):
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    @classmethod
    def from_response(cls, method: str, path: str, response: httpx.Response) -> ApiError:
        """Read `{"error": {"code", "message", "request_id"}}`, or the raw text of another body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or "unknown")
            message = str(error.get("message") or response.reason_phrase)
            request_id = error.get("request_id")
        else:
            code = "unknown"
            message = response.text.strip()[:200] or response.reason_phrase
            request_id = None
        request_id = request_id or response.headers.get("X-Request-ID")
        return cls(method, path, response.status_code, code, message, request_id)

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path} failed with HTTP {self.status} ({self.code}): {self.message} "
            f"[request_id {self.request_id or 'missing'}]"
        )


class PlatformClient:
    """Calls to the platform's HTTP API with the demo user's token.

    A 429 response is retried after its Retry-After seconds, and a 401 response to a request
    with a token is retried once after logging in again, because the token can expire during a
    long ingestion.
    """

    def __init__(self, http: httpx.AsyncClient, email: str, password: str, max_wait_seconds: float):
        self._http = http
        self._email = email
        self._password = password
        self._token: str | None = None
        self._max_wait_seconds = max_wait_seconds
        self.requests_sent = 0
        self.rate_limited_responses = 0
        self.rate_limit_wait_seconds = 0.0

    async def sign_in(self, tenant: str) -> bool:
        """Log in, or register the user with a new tenant when the login is rejected.

        Returns True when the user was registered.
        """
        try:
            await self.log_in()
            return False
        except ApiError as error:
            if error.status != 401:
                raise

        body = {"tenant": tenant, "email": self._email, "password": self._password}
        try:
            response = await self.request("POST", "/auth/register", json=body, authenticated=False)
        except ApiError as error:
            if error.status == 409:
                raise DemoError(
                    f"the user {self._email} exists but its password was rejected. "
                    f"Pass its --password or choose another --email."
                ) from error
            if error.status == 403:
                raise DemoError(
                    f"logging in as {self._email} failed and the platform does not allow sign-up "
                    f"(ALLOW_SIGNUP=false). Pass the --email and --password of an existing user."
                ) from error
            raise
        self._token = response.json()["access_token"]
        return True

    async def log_in(self) -> None:
        """Log in with the demo user's email and password and keep the access token."""
        body = {"email": self._email, "password": self._password}
        response = await self.request("POST", "/auth/login", json=body, authenticated=False)
        self._token = response.json()["access_token"]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: dict[str, str | int] | None = None,
        timeout: httpx.Timeout | None = None,
        authenticated: bool = True,
        retry_transport_errors: bool = True,
    ) -> httpx.Response:
        """Send a request and return its 2xx response.

        Raises ApiError for an error response and DemoError when the platform cannot be reached.
        """
        token_renewed = False
        transport_failures = 0
        while True:
            headers = {"Authorization": f"Bearer {self._token}"} if authenticated else {}
            self.requests_sent += 1
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeout or REQUEST_TIMEOUT,
                )
            except httpx.TransportError as error:
                transport_failures += 1
                if not retry_transport_errors or transport_failures >= MAX_TRANSPORT_ATTEMPTS:
                    raise DemoError(
                        f"{method} {path} failed with {type(error).__name__}: {error or 'no details'}. "
                        f"Check that the platform is running at {self._http.base_url}."
                    ) from error
                delay = 2.0**transport_failures
                logger.warning(
                    "request failed, retrying method=%s path=%s error=%s retry_in_seconds=%s",
                    method, path, type(error).__name__, delay,
                )
                await asyncio.sleep(delay)
                continue

            if response.status_code == 429:
                await self._wait_for_rate_limit(method, path, response)
                continue
            if response.status_code == 401 and authenticated and not token_renewed:
                token_renewed = True
                await self.log_in()
                continue
            if response.is_success:
                return response
            raise ApiError.from_response(method, path, response)

    async def _wait_for_rate_limit(self, method: str, path: str, response: httpx.Response) -> None:
        """Sleep for the Retry-After seconds of a 429 response (1 s when the header is missing)."""
        try:
            delay = max(1.0, float(response.headers.get("Retry-After", "1")))
        except ValueError:
            delay = 1.0
        if delay > self._max_wait_seconds:
            raise DemoError(
                f"{method} {path} is rate limited for {delay:g} s, longer than the "
                f"{self._max_wait_seconds:g} s the demo waits. Run it again later or raise "
                f"RATE_LIMIT_PER_MINUTE and RATE_LIMIT_PER_HOUR on the platform."
            )
        self.rate_limited_responses += 1
        self.rate_limit_wait_seconds += delay
        # Uploads hit the limit many times in a row, so only the long waits are worth a line.
        level = logging.INFO if delay >= 10 else logging.DEBUG
        logger.log(
            level, "rate limited, waiting method=%s path=%s retry_after_seconds=%g", method, path, delay
        )
        await asyncio.sleep(delay)


@dataclasses.dataclass
class UploadReport:
    """Outcome of uploading the corpus: document ids by module, and errors by module."""

    uploaded: dict[str, str] = dataclasses.field(default_factory=dict)
    duplicates: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class IngestionReport:
    """Last seen state of each tracked document, and whether waiting for them timed out."""

    document_ids: set[str]
    documents: dict[str, dict]
    missing: set[str]
    timed_out: bool
    finished_at: float


async def list_documents(
    client: PlatformClient, stop_when_seen: set[str] | None = None
) -> dict[str, dict]:
    """Page through GET /documents, newest first, and return the documents by id.

    With stop_when_seen, paging stops as soon as all of those ids have been seen.
    """
    documents: dict[str, dict] = {}
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        if cursor:
            params["cursor"] = cursor
        page = (await client.request("GET", "/documents", params=params)).json()
        for document in page["items"]:
            documents[document["id"]] = document
        cursor = page.get("next_cursor")
        if not cursor:
            return documents
        if stop_when_seen is not None and stop_when_seen <= documents.keys():
            return documents


async def upload_corpus(client: PlatformClient, corpus: Sequence[ModuleDoc]) -> UploadReport:
    """Upload each module as a JSON document, skipping those the tenant already has.

    A module whose SHA-256 matches a document of the tenant is counted as a duplicate without a
    request. The platform also responds 200 with "duplicate": true when it has the content.
    """
    report = UploadReport()
    existing = {
        document.get("content_sha256"): document_id
        for document_id, document in (await list_documents(client)).items()
    }
    pending: list[ModuleDoc] = []
    for module_doc in corpus:
        document_id = existing.get(hashlib.sha256(module_doc.text.encode("utf-8")).hexdigest())
        if document_id:
            report.duplicates[module_doc.module] = document_id
        else:
            pending.append(module_doc)

    semaphore = asyncio.Semaphore(UPLOAD_CONCURRENCY)
    bar = tqdm(total=len(corpus), initial=len(report.duplicates), desc="Uploading", unit="doc")

    async def upload(module_doc: ModuleDoc) -> None:
        body = {
            "title": module_doc.title,
            "text": module_doc.text,
            "metadata": {"source": DOCUMENT_SOURCE, "module": module_doc.module},
        }
        async with semaphore:
            try:
                response = await client.request("POST", "/documents", json=body)
            except ApiError as error:
                report.errors[module_doc.module] = str(error)
                logger.warning("upload failed module=%s error=%s", module_doc.module, error)
            else:
                payload = response.json()
                if payload.get("duplicate"):
                    report.duplicates[module_doc.module] = payload["document"]["id"]
                else:
                    report.uploaded[module_doc.module] = payload["document"]["id"]
        bar.update(1)
        bar.set_postfix(duplicates=len(report.duplicates), rate_limited=client.rate_limited_responses)

    with bar:
        tasks = [asyncio.create_task(upload(module_doc)) for module_doc in pending]
        try:
            await asyncio.gather(*tasks)
        finally:
            # After a DemoError (platform unreachable) the other uploads are stopped.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return report


async def wait_for_ingestion(
    client: PlatformClient, document_ids: set[str], deadline: float
) -> IngestionReport:
    """Poll the document list until every document is ready or failed, or the deadline passes.

    The deadline is in time.monotonic() seconds. One unfiltered pass over the list returns the
    status, error and chunk count of every document, where filtering by status would take a
    pass per status.
    """
    documents: dict[str, dict] = {}
    missing: set[str] = set()
    interval = POLL_INTERVAL_SECONDS
    bar = tqdm(total=len(document_ids), desc="Ingesting", unit="doc")
    with bar:
        while True:
            previous = {document_id: document["status"] for document_id, document in documents.items()}
            requests_before = client.requests_sent
            listed = await list_documents(client, stop_when_seen=document_ids - missing)
            documents.update({key: value for key, value in listed.items() if key in document_ids})
            await _look_up_unlisted(client, document_ids - listed.keys() - missing, documents, missing)

            statuses = [document["status"] for document in documents.values()]
            bar.update(statuses.count("ready") - bar.n)
            bar.set_postfix(failed=statuses.count("failed"))
            finished_at = time.monotonic()
            if statuses.count("ready") + statuses.count("failed") + len(missing) >= len(document_ids):
                return IngestionReport(document_ids, documents, missing, False, finished_at)
            if finished_at >= deadline:
                return IngestionReport(document_ids, documents, missing, True, finished_at)

            current = {document_id: document["status"] for document_id, document in documents.items()}
            changed = current != previous
            if changed:
                interval = POLL_INTERVAL_SECONDS
            else:
                interval = min(interval * 1.5, MAX_POLL_INTERVAL_SECONDS)
            request_pause = (client.requests_sent - requests_before) * MIN_SECONDS_PER_POLL_REQUEST
            pause = max(interval, request_pause)
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))


async def _look_up_unlisted(
    client: PlatformClient, document_ids: set[str], documents: dict[str, dict], missing: set[str]
) -> None:
    """Fetch the documents that a pass over the list did not return, and record 404s as missing."""
    for document_id in sorted(document_ids):
        try:
            response = await client.request("GET", f"/documents/{document_id}")
        except ApiError as error:
            if error.status != 404:
                raise
            missing.add(document_id)
            logger.warning("document not found, probably deleted document_id=%s", document_id)
        else:
            documents[document_id] = response.json()


async def ask_questions(client: PlatformClient, questions: Sequence[str]) -> int:
    """Ask each question in the demo chat session and print the cited answers.

    Returns the number of questions that failed.
    """
    failures = 0
    for question in questions:
        print(f"\nQ: {question}")
        try:
            response = await client.request(
                "POST",
                "/chat",
                json={"message": question, "session_id": CHAT_SESSION_ID},
                timeout=CHAT_TIMEOUT,
                retry_transport_errors=False,
            )
        except ApiError as error:
            failures += 1
            print(f"   failed: {error.message} (request_id {error.request_id or 'missing'})")
            continue
        message = response.json()["message"]
        print(f"A: {message['content'].strip()}")
        for citation in message.get("citations") or []:
            print(f"   [{citation['n']}] {citation['title']}")
    return failures


def run_demo(
    url: str = DEFAULT_URL,
    *,
    modules: int | None = None,
    max_bytes_per_module: int = DEFAULT_MAX_BYTES_PER_MODULE,
    email: str = DEFAULT_EMAIL,
    password: str = DEFAULT_PASSWORD,
    tenant: str = DEFAULT_TENANT,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    questions: Sequence[str] = QUESTIONS,
    corpus: Sequence[ModuleDoc] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Run the demo against the platform at url and return the exit status (0 when all went well).

    `modules` caps the number of standard library modules, `timeout` is the number of seconds
    from the first upload until every document must be ready or failed, `corpus` replaces the
    rendered standard library, and `transport` replaces the network (for tests).
    """
    try:
        # Signing in before the rendering makes a wrong URL or password fail within seconds.
        # The rendering runs outside the event loop, so that Ctrl-C stops its renderers at once.
        registered = asyncio.run(_sign_in(url, email, password, tenant, transport))
        if registered:
            print(f"Registered {email} with a new tenant {tenant!r} at {url}")
        else:
            print(f"Logged in as {email} at {url}")
        if corpus is None:
            corpus = _render_corpus(modules, max_bytes_per_module)
        return asyncio.run(
            _ingest_and_ask(url, email, password, timeout, questions, corpus, transport)
        )
    except (DemoError, ApiError) as error:
        print(f"Demo failed: {error}", file=sys.stderr)
        return 1


def _http_client(url: str, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, transport=transport)


async def _sign_in(
    url: str, email: str, password: str, tenant: str, transport: httpx.AsyncBaseTransport | None
) -> bool:
    """Log in or register the demo user, and return True when it was registered."""
    async with _http_client(url, transport) as http:
        return await PlatformClient(http, email, password, DEFAULT_TIMEOUT_SECONDS).sign_in(tenant)


async def _ingest_and_ask(
    url: str,
    email: str,
    password: str,
    timeout: float,
    questions: Sequence[str],
    corpus: Sequence[ModuleDoc],
    transport: httpx.AsyncBaseTransport | None,
) -> int:
    """Upload the corpus, wait for ingestion, print the summary and the answers.

    Returns the exit status.
    """
    async with _http_client(url, transport) as http:
        client = PlatformClient(http, email, password, max_wait_seconds=timeout)
        await client.log_in()

        started_at = time.monotonic()
        uploads = await upload_corpus(client, corpus)
        document_ids = set(uploads.uploaded.values()) | set(uploads.duplicates.values())
        ingestion = await wait_for_ingestion(client, document_ids, deadline=started_at + timeout)
        elapsed_seconds = ingestion.finished_at - started_at
        _print_summary(uploads, ingestion, client, elapsed_seconds)

        if ingestion.timed_out:
            print(
                f"\nGave up after waiting {timeout:g} s for ingestion. Raise --timeout "
                f"(--demo-timeout of up.py), or check that the platform's workers are running.",
                file=sys.stderr,
            )
            return 1
        chat_failures = await ask_questions(client, questions)

    statuses = [document["status"] for document in ingestion.documents.values()]
    if uploads.errors or "failed" in statuses or ingestion.missing or chat_failures:
        return 1
    return 0


def _render_corpus(modules: int | None, max_bytes_per_module: int) -> list[ModuleDoc]:
    """Render the standard library documentation, cut each module's text, and print the size."""
    min_modules = DEFAULT_MIN_MODULES if modules is None else min(DEFAULT_MIN_MODULES, modules)
    started_at = time.monotonic()
    try:
        corpus = render_stdlib_docs(min_modules, modules, progress=True)
    except CorpusError as error:
        raise DemoError(str(error)) from error
    corpus = [dataclasses.replace(doc, text=cap_text(doc.text, doc.module, max_bytes_per_module)) for doc in corpus]
    size = sum(len(module_doc.text.encode("utf-8")) for module_doc in corpus)
    elapsed = time.monotonic() - started_at
    print(f"Rendered {len(corpus)} modules, {size:,} bytes of text, in {elapsed:.1f} s")
    return corpus


def _print_summary(
    uploads: UploadReport, ingestion: IngestionReport, client: PlatformClient, elapsed_seconds: float
) -> None:
    """Print the upload and ingestion counts, the failures and the ingestion rate."""
    documents = ingestion.documents
    ready = [document for document in documents.values() if document["status"] == "ready"]
    failed = {key: document for key, document in documents.items() if document["status"] == "failed"}
    pending = len(ingestion.document_ids) - len(ready) - len(failed) - len(ingestion.missing)
    chunks = sum(document.get("chunk_count") or 0 for document in ready)
    new_ids = set(uploads.uploaded.values())
    new_chunks = sum(
        document.get("chunk_count") or 0 for document in ready if document["id"] in new_ids
    )

    print("\nSummary")
    print(f"  documents uploaded:      {len(uploads.uploaded)}")
    print(f"  already there:           {len(uploads.duplicates)}")
    print(f"  upload errors:           {len(uploads.errors)}")
    print(f"  ready:                   {len(ready)}")
    print(f"  failed:                  {len(failed)}")
    if pending:
        print(f"  still queued/processing: {pending}")
    if ingestion.missing:
        print(f"  deleted during the demo: {len(ingestion.missing)}")
    print(f"  chunks:                  {chunks}")
    print(f"  ingestion wall time:     {elapsed_seconds:.1f} s (uploads and processing)")
    if new_chunks:
        rate = new_chunks / max(elapsed_seconds, 1e-9)
        print(f"  chunks per second:       {rate:.1f} (new documents only)")
    else:
        print("  chunks per second:       not measured, no new document was ingested")
    if client.rate_limited_responses:
        print(
            f"  rate limited:            {client.rate_limited_responses} responses, "
            f"{client.rate_limit_wait_seconds:.0f} s of waiting"
        )

    modules_by_id = {
        document_id: module
        for module, document_id in {**uploads.duplicates, **uploads.uploaded}.items()
    }
    for module, error in sorted(uploads.errors.items()):
        print(f"  upload of {module} failed: {error}")
    for document_id, document in failed.items():
        module = modules_by_id.get(document_id, document_id)
        print(f"  {module} failed: {document.get('error') or 'no error given'}")


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"invalid URL {value!r}, expected http://HOST:PORT or https://HOST"
        )
    return value.rstrip("/")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser of the demo."""
    parser = argparse.ArgumentParser(
        prog="python -m server.demo.client",
        description=(
            "Upload the Python standard library documentation to a running platform, wait for "
            "ingestion, then ask questions and print the cited answers."
        ),
    )
    parser.add_argument(
        "--url",
        type=_http_url,
        default=DEFAULT_URL,
        help=f"base URL of the platform (default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--modules",
        type=_positive_int,
        default=None,
        help="maximum number of standard library modules to upload (default: all that render)",
    )
    parser.add_argument(
        "--max-bytes-per-module",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES_PER_MODULE,
        help=f"cut each module's text to this many bytes (default {DEFAULT_MAX_BYTES_PER_MODULE})",
    )
    parser.add_argument(
        "--email", default=DEFAULT_EMAIL, help=f"email of the demo user (default {DEFAULT_EMAIL})"
    )
    parser.add_argument(
        "--password",
        default=DEFAULT_PASSWORD,
        help="password of the demo user, at least 8 characters (default: the demo password)",
    )
    parser.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help=f"tenant name used when the demo user has to be registered (default {DEFAULT_TENANT})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=(
            "seconds from the first upload until every document must be ready or failed "
            f"(default {DEFAULT_TIMEOUT_SECONDS:g})"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run the demo and exit with its status."""
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO, which would bury the demo's own output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        with logging_redirect_tqdm():
            status = run_demo(
                arguments.url,
                modules=arguments.modules,
                max_bytes_per_module=arguments.max_bytes_per_module,
                email=arguments.email,
                password=arguments.password,
                tenant=arguments.tenant,
                timeout=arguments.timeout,
            )
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
