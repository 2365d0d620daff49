"""The extractive agent: plan searches for each part of the question, then quote the best sentences.

It needs no model. A compound question is split into parts and each part is searched. When the
best hit of a part is weak, the part is searched again in other words. A follow-up question
borrows the content words of the session's previous question. Each part is answered from the
best sentences of its own hits, with citations, or the answer says that the documents do not
answer it.

NOTE: this agent never calls `read_document`, because quoting whole documents would let weak
sentences into the answer. The `openai` provider offers the tool to the model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from server.chat.extractive import (
    MIN_SIMILARITY,
    Hit,
    QuestionPart,
    compose_compound_answer,
    split_question,
)
from server.chat.providers import AnswerWriter, Turn
from server.chat.rewriting import rephrase, resolve_follow_up
from server.chat.tools import StepBudgetExhausted, Toolbox

logger = logging.getLogger(__name__)


def is_weak(hits: list[Hit]) -> bool:
    """Tell whether no hit is close to the query in meaning (cosine similarity below MIN_SIMILARITY)."""
    similarities = [hit.similarity for hit in hits if hit.similarity is not None]
    return not similarities or max(similarities) < MIN_SIMILARITY


def merge_hits(known: dict[str, Hit], found: list[Hit]) -> None:
    """Keep each chunk once, with the best score any search gave it."""
    for hit in found:
        earlier = known.get(hit.chunk_id)
        if earlier is None or hit.score > earlier.score:
            known[hit.chunk_id] = hit


def answer_words(text: str) -> list[str]:
    """Cut the answer into deltas of one word each, keeping every space and newline, so that the
    deltas joined give the text back exactly."""
    pieces, start = [], 0
    for index, character in enumerate(text):
        if character in " \n" and index + 1 < len(text) and text[index + 1] not in " \n":
            pieces.append(text[start:index + 1])
            start = index + 1
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


class ExtractiveProvider:
    name = "extractive"

    async def answer(self, turn: Turn, tools: Toolbox, writer: AnswerWriter) -> None:
        # The question is split before the borrowed words are added, as they end no sentence.
        written = split_question(turn.question)
        queries = [resolve_follow_up(part, turn.history) for part in written]
        hits_per_part = await self.search_parts(queries, tools)
        parts = [QuestionPart(question, query, hits)
                 for question, query, hits in zip(written, queries, hits_per_part)]
        answer = compose_compound_answer(parts)
        for word in answer_words(answer.content):
            await writer.delta(word)
        for citation in answer.citations:
            await writer.citation(asdict(citation))
        chunk_ids = {hit.chunk_id for hits in hits_per_part for hit in hits}
        writer.add_usage(hits=len(chunk_ids))

    async def search_parts(self, parts: list[str], tools: Toolbox) -> list[list[Hit]]:
        """Search each part of the question, again in other words when its hits are weak, and
        return the hits of each part, best score first.

        NOTE: a part left unsearched because the step budget ran out gets no hits, so its
        section of the answer says that the documents do not answer it.
        """
        hits_per_part: list[list[Hit]] = []
        try:
            for part in parts:
                found = await tools.search(part)
                if is_weak(found):
                    other_words = rephrase(part)
                    if other_words is not None and tools.remaining > 0:
                        found += await tools.search(other_words)
                hits: dict[str, Hit] = {}
                merge_hits(hits, found)
                hits_per_part.append(sorted(hits.values(), key=lambda hit: -hit.score))
        except StepBudgetExhausted:
            logger.info("chat step budget spent max_steps=%d", tools.max_steps)
        hits_per_part += [[] for _ in parts[len(hits_per_part):]]
        return hits_per_part
