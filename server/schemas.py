"""Response bodies of the HTTP API as pydantic models, for the OpenAPI description.

Handlers build their responses as dicts; these models only describe them. Request bodies are
the models the handlers validate with, in their route modules.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

DocumentStatus = Literal["queued", "processing", "ready", "failed"]
JobStatus = Literal["queued", "started", "finished", "failed", "scheduled", "deferred"]


class ErrorDetail(BaseModel):
    field: str = Field(description="Request field, query parameter or header that is invalid.")
    problem: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable snake_case code, such as `validation_failed` or `rate_limited`.")
    message: str = Field(description="A sentence for people, saying what to change.")
    request_id: str = Field(description="The response's X-Request-ID.")
    details: list[ErrorDetail] | None = Field(None, description="Present on validation errors.")


class ErrorBody(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel, extra="allow"):
    status: Literal["ok", "degraded", "loading", "down"]


class ReadyChecks(BaseModel):
    database: Check
    redis: Check
    queue: Check
    model: Check


class Ready(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: ReadyChecks


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the token expires.")


class Registered(Token):
    tenant_id: UUID
    user_id: UUID


class TenantRef(BaseModel):
    id: UUID
    name: str


class Me(BaseModel):
    id: UUID
    email: str
    role: Literal["member", "admin"]
    tenant: TenantRef


class User(BaseModel):
    id: UUID
    email: str
    role: Literal["member", "admin"]
    tenant_id: UUID
    created_at: datetime


class Document(BaseModel):
    id: UUID
    title: str
    status: DocumentStatus
    error: str | None = Field(description="Why ingestion failed, null unless `status` is `failed`.")
    content_type: str
    bytes: int
    content_sha256: str
    chunk_count: int
    metadata: dict[str, object]
    created_at: datetime
    updated_at: datetime


class UploadAccepted(BaseModel):
    document: Document
    job_id: str


class UploadDuplicate(BaseModel):
    document: Document
    duplicate: Literal[True]


class DocumentPage(BaseModel):
    items: list[Document]
    next_cursor: str | None = Field(description="The `cursor` of the next page, null on the last page.")


class Job(BaseModel):
    id: str
    kind: str = Field(description="`ingestion` for a document's ingestion.")
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    attempts: int
    error: str | None
    document_id: UUID | None
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    queue_position: int | None = Field(None, description="Jobs expected to start before this one, present only while queued.")
    estimated_start: datetime | None = Field(None, description="An estimate, present only while queued.")


class SearchResult(BaseModel):
    rank: int
    score: float
    chunk_id: UUID
    document_id: UUID
    document_title: str
    content: str


class SearchResults(BaseModel):
    results: list[SearchResult]
    took_ms: float
    cached: bool


class Citation(BaseModel):
    n: int = Field(description="The number of the `[n]` marker in the answer.")
    document_id: UUID
    chunk_id: UUID
    title: str
    snippet: str


class ChatMessage(BaseModel):
    id: UUID
    role: Literal["user", "assistant"]
    content: str
    citations: list[Citation]
    created_at: datetime


class ChatStep(BaseModel, extra="allow"):
    type: Literal["search", "read_document"]


class ChatAnswer(BaseModel):
    session_id: str
    message: ChatMessage
    steps: list[ChatStep]
    usage: dict[str, object] = Field(description="Provider, token counts, steps and finish reason.")


class ChatSession(BaseModel):
    session_id: str
    created_at: datetime
    updated_at: datetime


class ChatSessionPage(BaseModel):
    items: list[ChatSession]
    next_cursor: str | None


class ChatMessagePage(BaseModel):
    items: list[ChatMessage]
    next_cursor: str | None


class UsageCounts(BaseModel):
    documents: int
    chunks: int
    searches: int
    chats: int


class UsageDay(UsageCounts):
    day: date


class Usage(BaseModel):
    totals: UsageCounts
    items: list[UsageDay]
    next_cursor: str | None
