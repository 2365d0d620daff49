"""The chat agent: search for each part of the question, then compose a cited answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from uuid import UUID

from databases import Database

from server.chat.extractive import Answer, Hit, compose_answer, split_question
from server.search import SearchRequest, search


@dataclass
class AgentResult:
    answer: Answer
    steps: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)

    def citations(self) -> list[dict]:
        return [asdict(citation) for citation in self.answer.citations]


def _as_hit(row: dict) -> Hit:
    return Hit(chunk_id=str(row["chunk_id"]), document_id=str(row["document_id"]),
               document_title=row["document_title"], content=row["content"], score=float(row["score"]),
               similarity=None if row.get("similarity") is None else float(row["similarity"]))


async def answer_question(db: Database, *, tenant_id: UUID, question: str, top_k: int) -> AgentResult:
    steps: list[dict] = []
    hits: dict[str, Hit] = {}
    for part in split_question(question):
        rows = await search(db, SearchRequest(tenant_id=tenant_id, query=part, limit=top_k))
        steps.append({"type": "search", "query": part, "hits": len(rows)})
        for row in rows:
            hit = _as_hit(row)
            known = hits.get(hit.chunk_id)
            if known is None or hit.score > known.score:
                hits[hit.chunk_id] = hit
    ranked = sorted(hits.values(), key=lambda hit: -hit.score)
    answer = compose_answer(question, ranked)
    usage = {"searches": len(steps), "hits": len(ranked), "prompt_tokens": 0, "completion_tokens": 0,
             "provider": "extractive"}
    return AgentResult(answer=answer, steps=steps, usage=usage)
