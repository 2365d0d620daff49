"""Give the load-test platform its tenants, users and documents, once, and tokens for each run.

Accounts (email, password, tenant, a token and its expiry) are kept in the data folder, so the
next run reuses the same users and their tokens instead of registering new ones. The same
documents uploaded again are recognized as duplicates (by their SHA-256) and not ingested twice. The accounts file with tokens that the
load generators read also stays in the data folder, outside the run folders, because tokens
are credentials.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from notebooks.loadtest.workload import CORPUS_MODULES

logger = logging.getLogger(__name__)

DOCUMENT_MAX_BYTES = 4000
# A stored token is reused while it stays valid for at least this long, which spares a slow
# password hash per user and run. The load-test platform issues tokens valid for a day.
TOKEN_REUSE_MARGIN_SECONDS = 4 * 3600
INGESTION_TIMEOUT_SECONDS = 900
MAX_429_RETRIES = 20


STORED_FIELDS = ("tenant", "email", "password", "role", "registered", "token", "token_expires_at")


class SeedingError(RuntimeError):
    """Raised when the platform rejects a seeding step or ingestion fails."""


def _send(http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    """Send a request, waiting out 429 responses for their Retry-After seconds."""
    for _ in range(MAX_429_RETRIES):
        response = http.request(method, path, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise SeedingError(f"{method} {path} was still rate limited after {MAX_429_RETRIES} retries")


def _expect(response: httpx.Response, *statuses: int) -> dict:
    if response.status_code not in statuses:
        raise SeedingError(f"{response.request.method} {response.request.url.path} returned "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json()


def plan_accounts(tenants: int, users_per_tenant: int, existing: list[dict]) -> list[dict]:
    """Return the accounts to use: the existing ones that fit, plus new ones to register."""
    accounts = []
    for tenant in range(tenants):
        name = f"Load test tenant {tenant + 1}"
        known = [account for account in existing if account["tenant"] == name]
        for user in range(users_per_tenant):
            if user < len(known):
                accounts.append(known[user])
            else:
                accounts.append({"tenant": name, "email": f"load-{tenant + 1}-{user + 1}-{secrets.token_hex(4)}@example.com",
                                 "password": secrets.token_urlsafe(16), "role": "admin" if user == 0 else "member",
                                 "registered": False})
    return accounts


def register_accounts(http: httpx.Client, accounts: list[dict]) -> None:
    """Register each tenant's first user with its tenant, then the others as its members."""
    admins: dict[str, dict] = {}
    for account in accounts:
        if account["role"] == "admin":
            admins[account["tenant"]] = account
    for account in tqdm(accounts, desc="Accounts", unit="user"):
        if not account.get("registered"):
            if account["role"] == "admin":
                _expect(_send(http, "POST", "/auth/register", json={
                    "tenant": account["tenant"], "email": account["email"], "password": account["password"]}), 201)
            else:
                admin = admins[account["tenant"]]
                _expect(_send(http, "POST", "/users", headers=admin["headers"], json={
                    "email": account["email"], "password": account["password"], "role": "member"}), 201)
            account["registered"] = True
        if account.get("token_expires_at", 0) < time.time() + TOKEN_REUSE_MARGIN_SECONDS:
            body = _expect(_send(http, "POST", "/auth/login", json={
                "email": account["email"], "password": account["password"]}), 200)
            account["token"] = body["access_token"]
            account["token_expires_at"] = time.time() + body["expires_in"]
        account["headers"] = {"Authorization": f"Bearer {account['token']}"}


def render_corpus(max_bytes: int = DOCUMENT_MAX_BYTES) -> list[dict]:
    """Render the workload's standard-library modules as documents cut to `max_bytes`."""
    from server.demo.corpus import cap_text, render_stdlib_docs

    documents = render_stdlib_docs(min_modules=len(CORPUS_MODULES), only=list(CORPUS_MODULES))
    return [{"title": document.title, "text": cap_text(document.text, document.module, max_bytes),
             "metadata": {"source": "load-test", "module": document.module}} for document in documents]


def upload_corpus(http: httpx.Client, admins: list[dict], corpus: list[dict]) -> None:
    """Upload the corpus to every tenant and wait until all its documents are ready."""
    for admin in admins:
        for document in corpus:
            _expect(_send(http, "POST", "/documents", headers=admin["headers"], json=document), 200, 202)

    expected = len(corpus) * len(admins)
    deadline = time.monotonic() + INGESTION_TIMEOUT_SECONDS
    with tqdm(total=expected, desc="Ingested", unit="document") as bar:
        while True:
            statuses = []
            for admin in admins:
                body = _expect(_send(http, "GET", "/documents?limit=100", headers=admin["headers"]), 200)
                statuses += [item["status"] for item in body["items"]]
            failed = statuses.count("failed")
            if failed:
                raise SeedingError(f"{failed} load-test documents failed to ingest; see the worker log")
            bar.n = statuses.count("ready")
            bar.refresh()
            if bar.n >= expected:
                return
            if time.monotonic() > deadline:
                raise SeedingError(f"ingestion not finished within {INGESTION_TIMEOUT_SECONDS} s "
                                   f"({bar.n} of {expected} documents ready)")
            time.sleep(2)


def seed(url: str, data_dir: Path, tenants: int, users_per_tenant: int,
         document_max_bytes: int = DOCUMENT_MAX_BYTES) -> Path:
    """Make sure the tenants, users and documents exist; write the accounts with fresh tokens.

    Returns the path of the accounts file that the load generators read.
    """
    registry = data_dir / "loadtest-accounts.json"
    existing = json.loads(registry.read_text()) if registry.exists() else []
    accounts = plan_accounts(tenants, users_per_tenant, existing)
    with httpx.Client(base_url=url, timeout=120) as http:
        try:
            register_accounts(http, accounts)
        finally:
            kept = {account["email"]: account for account in existing}
            kept.update({account["email"]: account for account in accounts if account.get("registered")})
            registry.write_text(json.dumps([{key: account[key] for key in STORED_FIELDS if key in account}
                                            for account in kept.values()], indent=1))
            registry.chmod(0o600)
        admins = [account for account in accounts if account["role"] == "admin"]
        upload_corpus(http, admins, render_corpus(document_max_bytes))

    tokens = data_dir / "loadtest-tokens.json"
    tokens.write_text(json.dumps([{"tenant": account["tenant"], "email": account["email"], "token": account["token"]}
                                  for account in accounts]))
    tokens.chmod(0o600)
    return tokens
