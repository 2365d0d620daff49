"""The tools of the chat agent, `search` and `read_document`, under a step budget.

Every call is one step: it is reported through the `record_step` callback (a `step` event and an
entry of the message's `steps`) and spends one unit of CHAT_MAX_STEPS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from databases import Database

from db import chunks as chunk_queries
from db import documents as document_queries
from server.cache import Cache
from server.chat.extractive import Hit
from server.search import SearchRequest, search

# read_document returns at most this many chunks of a document, in order.
MAX_DOCUMENT_CHUNKS = 50


class StepBudgetExhausted(Exception):
    """Raised when a tool is called after CHAT_MAX_STEPS steps."""


def as_hit(row: dict) -> Hit:
    return Hit(chunk_id=str(row["chunk_id"]), document_id=str(row["document_id"]),
               document_title=row["document_title"], content=row["content"], score=float(row["score"]),
               similarity=None if row.get("similarity") is None else float(row["similarity"]))


class Toolbox:
    """The tools one answer may call, scoped to the caller's tenant."""

    def __init__(self, db: Database, *, tenant_id: UUID, top_k: int, max_steps: int,
                 record_step: Callable[[dict], Awaitable[None]], cache: Cache | None = None):
        self.db = db
        # Reuses the query embeddings that searches cached; the results themselves are not cached here.
        self.cache = cache
        self.tenant_id = tenant_id
        self.top_k = top_k
        self.max_steps = max_steps
        self.steps_taken = 0
        self.record_step = record_step

    @property
    def remaining(self) -> int:
        return self.max_steps - self.steps_taken

    def _spend(self) -> None:
        if self.remaining <= 0:
            raise StepBudgetExhausted(f"the step budget of {self.max_steps} is spent")
        self.steps_taken += 1

    async def search(self, query: str) -> list[Hit]:
        """Run the platform's hybrid search and return up to `top_k` hits, best first."""
        self._spend()
        rows = await search(self.db, SearchRequest(tenant_id=self.tenant_id, query=query, limit=self.top_k), self.cache)
        await self.record_step({"type": "search", "query": query, "hits": len(rows)})
        return [as_hit(row) for row in rows]

    async def read_document(self, document_id: str) -> tuple[str, list[dict]] | None:
        """Return a document's title and its chunks in order, or None when the tenant has no such document."""
        self._spend()
        document = None
        try:
            parsed_id = UUID(document_id)
        except ValueError:
            parsed_id = None
        if parsed_id is not None:
            document = await document_queries.get_document(self.db, tenant_id=self.tenant_id, document_id=parsed_id)
        if document is None:
            await self.record_step({"type": "read_document", "document_id": document_id, "chunks": 0,
                                    "error": "not_found"})
            return None
        chunks = await chunk_queries.document_chunks(self.db, tenant_id=self.tenant_id, document_id=parsed_id,
                                                     limit=MAX_DOCUMENT_CHUNKS)
        await self.record_step({"type": "read_document", "document_id": document_id, "chunks": len(chunks)})
        return document["title"], chunks
