"""Extractive answerer for chat: quote the hit sentences that best match the question.

No model is called. Each sentence of each search hit is scored by the question terms it contains,
weighted by how rare each term is among the sentences at hand, plus a small bonus for the hit's
rank. The best few sentences are quoted with a ``[n]`` marker, and ``n`` indexes the citation of
the chunk the sentence came from. When neither the words nor the embedding similarity of the hits
relate to the question, the answer is ``NO_ANSWER``.

Words vouch for an answer only when every content word of the question occurs in the hits. A
question with a word that no hit contains must be vouched for by the embedding instead, and one
that names something no hit mentions ("CSV", "json.dumps") is not answered at all: sentences that
share the question's generic words ("read", "file") are near misses, not answers.

A compound question is answered part by part, each part from the hits of its own searches and
under the same rules, so that a part the documents answer is never crowded out by another.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from jobs.chunking import split_sentences

logger = logging.getLogger(__name__)

NO_ANSWER = "The uploaded documents do not answer this question."

# The answer counts as found when the best sentence covers at least this share of the question's
# IDF-weighted content words. Against the passages of tests/test_extractive.py, questions they
# answer reached 0.59 to 1.0, and off-topic ones at most 0.31 ("How do I sort a list in Python?").
MIN_COVERAGE = 0.5

# The answer also counts as found when a hit's cosine similarity to the question reaches this,
# even if the wording differs. With all-MiniLM-L6-v2, the Python documentation passages of
# tests/test_extractive.py scored 0.54 to 0.74 against questions they answer, but up to 0.35
# against "How do I send an HTTP request in Python?", which they do not answer. Below 0.4 the
# question must share words with the hits. `python -m tests.benchmark_answers` measures this on
# ingested pydoc text; docs/benchmarks.md records its figures.
MIN_SIMILARITY = 0.4

# The similarity needed instead when a content word of the question occurs in no hit, as "csv" in
# "how do i read a csv file?" asked of the array and fileinput modules. In two runs of
# `python -m tests.benchmark_answers` on pydoc text (2026-12-05), such near misses reached at most
# 0.41 and the paraphrases that the documents answer at least 0.45, and this is the midpoint.
MIN_SIMILARITY_WITH_MISSING_WORDS = 0.43

# Score bonus of the top hit. The hit at 0-based rank r gets RANK_WEIGHT / (r + 1), which is small
# next to coverage (0..1), so it orders sentences of similar coverage by search rank.
RANK_WEIGHT = 0.1

# Score bonus for sentences that contain the question's identifiers whole (argparse.ArgumentParser),
# scaled by the share of those identifiers they contain.
IDENTIFIER_WEIGHT = 0.1

# A sentence is quoted only if its coverage reaches this share of the best sentence's coverage, so
# that weak matches do not pad the answer.
RELATIVE_CUTOFF = 0.4

# A sentence below MIN_COVERAGE is quoted only if it contains this many of the question's content
# words (or all of them, when the question has fewer), so that one shared generic word such as
# "return" is not enough.
MIN_MATCHED_TERMS = 2

# Two sentences whose word sets have at least this Jaccard similarity count as one.
DUPLICATE_JACCARD = 0.8

# Sentences with fewer words are headings or fragments and are never quoted.
MIN_SENTENCE_WORDS = 3

MAX_SENTENCE_CHARS = 600
MAX_SNIPPET_CHARS = 300

# Sentences quoted from the most similar hit when it shares no word with the question.
FALLBACK_SENTENCES = 2

MAX_QUESTION_PARTS = 4

LEAD_IN = "According to the uploaded documents:"
FALLBACK_LEAD_IN = "The closest passage in the uploaded documents says:"

STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can cannot could did do does doing done down during each
    either else etc even ever every few for from further get gets getting got had has have having
    he her here hers him his how however i if in into is it its itself just let like may me might
    more most much must my myself need needs no nor not now of off on once one only or other our
    ours out over own per please rather really same shall she should so some such tell than that
    the their theirs them then there these they this those through thus to too under until up
    upon us use used uses using very via want wants was way ways we were what whatever when where
    whether which while who whom whose why will with within without would yes yet you your yours
    """.split()
)

# A word or an identifier: runs of word characters joined by ".", "-" or "_", such as
# "argparse.ArgumentParser", "add_argument", "command-line" or "utf-8".
_TOKEN = re.compile(r"\w+(?:[.\-]\w+)*")
_SEPARATORS = re.compile(r"[._\-]+")
# Dots and underscores join the parts of code identifiers, while hyphens also join plain words.
_IDENTIFIER_MARK = re.compile(r"\w[._]\w")
_CAMEL_CASE_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_WORD = re.compile(r"\w+")
_WHITESPACE = re.compile(r"\s+")

# Footnote markers such as "[3]" inside document text would be taken for this answer's citations.
_BRACKETED_NUMBER = re.compile(r"\s*\[\d+\]")

_QUESTION_WORDS = r"(?:how|what|which|why|when|where|who|whom|whose)"
_AUXILIARY_WITH_SUBJECT = (
    r"(?:can|could|should|would|will|do|does|did|is|are|was|were)\s+"
    r"(?:i|we|you|it|they|there|this|that|one)"
)
# "and how ...", "or what ...", "and can I ...": a conjunction that opens a second question.
_QUESTION_JOINT = re.compile(
    r"[,;]?\s+(?:and|or|also|plus)\s+(?:also\s+)?"
    rf"(?=(?:{_QUESTION_WORDS}|{_AUXILIARY_WITH_SUBJECT})\b)",
    re.IGNORECASE,
)
_QUESTION_END = re.compile(r"(?<=\?)\s+|\s*;\s*")


@dataclass(frozen=True)
class Hit:
    """A chunk returned by hybrid search for the question."""

    chunk_id: str
    document_id: str
    document_title: str
    content: str
    score: float  # fused score, higher is better, and hits arrive sorted by it
    similarity: float | None  # cosine similarity to the question, None for keyword-only hits


@dataclass(frozen=True)
class Citation:
    """A source of the answer, referred to by ``[n]`` markers in the answer text."""

    n: int
    document_id: str
    chunk_id: str
    title: str
    snippet: str  # the cited sentences, at most MAX_SNIPPET_CHARS characters


@dataclass(frozen=True)
class Answer:
    """Answer text with its citations, or NO_ANSWER with ``answered`` False."""

    content: str
    citations: list[Citation]
    answered: bool


@dataclass(frozen=True)
class QuestionPart:
    """A part of a compound question with the hits of its own searches, best score first."""

    question: str  # as the user wrote it, repeated in the answer
    query: str  # the part with any words borrowed from the previous question, matched to sentences
    hits: list[Hit]


@dataclass(frozen=True)
class Evidence:
    """The word coverage, similarity and missing terms of a question's hits, and their verdict."""

    coverage: float  # the best sentence's IDF-weighted share of the question's content words
    similarity: float | None  # the best cosine similarity of a hit, None when no hit has one
    missing_names: frozenset[str]  # stemmed names of the question (see _is_name) in no hit
    missing_words: frozenset[str]  # stemmed content words of the question in no hit

    @property
    def by_words(self) -> bool:
        """Whether the words vouch for an answer.

        A question word that no hit contains means the words match only in part, however rare
        the matched ones are, so the words vouch only when every one of them is found.
        """
        return not self.missing_words and self.coverage >= MIN_COVERAGE

    @property
    def similarity_needed(self) -> float:
        """The similarity at which a hit vouches for an answer by its meaning."""
        return MIN_SIMILARITY_WITH_MISSING_WORDS if self.missing_words else MIN_SIMILARITY

    @property
    def by_meaning(self) -> bool:
        """Whether the embedding similarity vouches for an answer."""
        return self.similarity is not None and self.similarity >= self.similarity_needed

    @property
    def answered(self) -> bool:
        """Whether the hits answer the question. A name of the question that no hit contains
        means they answer another question, however similar they are."""
        return not self.missing_names and (self.by_words or self.by_meaning)


@dataclass(frozen=True)
class _Sentence:
    text: str
    hit: Hit
    rank: int  # 0-based rank of the hit
    position: int  # 0-based index of the sentence in the hit
    terms: tuple[str, ...]  # distinct stemmed words and identifiers
    words: tuple[str, ...]  # distinct lowercased words, for duplicate detection


@dataclass(frozen=True)
class _QueryTerms:
    atoms: frozenset[str]  # stemmed words and identifier parts
    identifiers: frozenset[str]  # identifiers kept whole, lowercased
    names: frozenset[str]  # the atoms of words written as names, see _is_name


def compose_answer(question: str, hits: list[Hit], max_sentences: int = 4) -> Answer:
    """Build an answer from at most ``max_sentences`` hit sentences, each followed by its ``[n]``.

    Returns ``Answer(NO_ANSWER, [], False)`` when there are no usable hits, when a name in the
    question occurs in no hit, or when no hit is similar enough and the words do not vouch for
    the answer either (see ``Evidence``).
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")

    selection = _select(question, hits, max_sentences)
    if selection is None:
        return Answer(NO_ANSWER, [], False)

    chosen, fallback = selection
    cited: dict[str, list[_Sentence]] = {}
    paragraphs = _quote(chosen, cited)
    lead_in = FALLBACK_LEAD_IN if fallback else LEAD_IN
    return Answer("\n\n".join([lead_in, *paragraphs]), _citations(cited), True)


def compose_compound_answer(parts: list[QuestionPart], max_sentences: int = 4) -> Answer:
    """Build an answer with a section per part of a compound question, in the order of ``parts``.

    Each part is answered from its own hits only, under the rules of ``compose_answer``, so the
    best sentences of one part cannot crowd out those of another. A section repeats the part as
    written, then quotes its sentences or, when its hits do not answer it, NO_ANSWER. The parts
    share ``max_sentences`` evenly, with at least one sentence each, and citations are numbered
    by first use across the whole answer. A single part gets ``compose_answer``'s answer, and
    parts that no hit answers give ``Answer(NO_ANSWER, [], False)``.
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")
    if not parts:
        return Answer(NO_ANSWER, [], False)
    if len(parts) == 1:
        return compose_answer(parts[0].query, parts[0].hits, max_sentences)

    per_part = max(1, max_sentences // len(parts))
    selections = [_select(part.query, part.hits, per_part) for part in parts]
    if all(selection is None for selection in selections):
        return Answer(NO_ANSWER, [], False)

    cited: dict[str, list[_Sentence]] = {}
    sections = [LEAD_IN]
    for part, selection in zip(parts, selections):
        if selection is None:
            sections.append(f"{part.question}\n{NO_ANSWER}")
            continue
        chosen, fallback = selection
        paragraphs = _quote(chosen, cited)
        if fallback:
            paragraphs[0] = f"{FALLBACK_LEAD_IN} {paragraphs[0]}"
        sections.append("\n".join([part.question, "\n\n".join(paragraphs)]))
    return Answer("\n\n".join(sections), _citations(cited), True)


def _select(
    question: str, hits: list[Hit], max_sentences: int
) -> tuple[list[_Sentence], bool] | None:
    """Pick the sentences of ``hits`` that answer ``question``, and whether they are the fallback
    opening of the most similar hit; None when the hits do not answer it."""
    sentences = _collect_sentences(hits)
    if not sentences:
        logger.debug("extractive answer: no usable sentences hits=%d", len(hits))
        return None

    query = _query_terms(question)
    coverages = _coverages(sentences, query)
    evidence = _weigh(query, sentences, coverages, hits)
    logger.debug(
        "extractive answer: by_words=%s by_meaning=%s coverage=%.2f similarity=%s"
        " missing_names=%s hits=%d",
        evidence.by_words,
        evidence.by_meaning,
        evidence.coverage,
        evidence.similarity,
        ",".join(sorted(evidence.missing_names)),
        len(hits),
    )
    if not evidence.answered:
        return None

    if not evidence.by_words:
        # Quote only the passages that the embedding vouches for.
        needed = evidence.similarity_needed
        kept = [
            index
            for index, sentence in enumerate(sentences)
            if sentence.hit.similarity is not None and sentence.hit.similarity >= needed
        ]
        sentences = [sentences[index] for index in kept]
        coverages = [coverages[index] for index in kept]

    chosen = _select_by_score(sentences, coverages, query, max_sentences)
    if chosen:
        return chosen, False

    # Only the embedding relates a hit to the question, as with a paraphrase that shares no
    # content word with it, so quote the opening of the most similar hit.
    return _select_fallback(sentences, max_sentences), True


def weigh_evidence(question: str, hits: list[Hit]) -> Evidence | None:
    """Return the evidence of ``hits`` for ``question``, or None when no sentence of them is usable.

    ``compose_answer`` returns an answer exactly when the returned ``Evidence.answered`` is true.
    """
    sentences = _collect_sentences(hits)
    if not sentences:
        return None
    query = _query_terms(question)
    return _weigh(query, sentences, _coverages(sentences, query), hits)


def _weigh(
    query: _QueryTerms, sentences: list[_Sentence], coverages: list[float], hits: list[Hit]
) -> Evidence:
    found_terms = _terms_in_hits(sentences, hits)
    similarities = [hit.similarity for hit in hits if hit.similarity is not None]
    return Evidence(
        coverage=max(coverages),
        similarity=max(similarities, default=None),
        missing_names=query.names - found_terms,
        missing_words=query.atoms - found_terms,
    )


def _coverages(sentences: list[_Sentence], query: _QueryTerms) -> list[float]:
    idf = _inverse_document_frequencies(sentences)
    unseen_idf = _idf(0, len(sentences))
    return [_coverage(sentence, query, idf, unseen_idf) for sentence in sentences]


def split_question(question: str) -> list[str]:
    """Split a compound question into parts to search separately.

    "How do I parse options and how do I read a CSV file?" gives two parts. A question with one
    part is returned unchanged as ``[question]``, and a blank one gives ``[]``. Parts beyond
    MAX_QUESTION_PARTS are joined to the last part.
    """
    if not question.strip():
        return []

    parts: list[str] = []
    for clause in _QUESTION_END.split(question.strip()):
        parts.extend(_QUESTION_JOINT.split(clause))
    parts = [_as_question(part) for part in parts if part.strip()]

    # Splitting off a part without a content word ("what and why?") loses its meaning.
    if len(parts) < 2 or any(not _query_terms(part).atoms for part in parts):
        return [question]

    if len(parts) > MAX_QUESTION_PARTS:
        tail = " ".join(parts[MAX_QUESTION_PARTS - 1 :])
        parts = parts[: MAX_QUESTION_PARTS - 1] + [tail]
    return list(dict.fromkeys(parts))


def _as_question(part: str) -> str:
    part = part.strip(" \t\r\n,;")
    if not part:
        return part
    part = part[0].upper() + part[1:]
    if part[-1] not in ".?!":
        part += "?"
    return part


def _collect_sentences(hits: list[Hit]) -> list[_Sentence]:
    sentences = []
    for rank, hit in enumerate(hits):
        for position, text, terms, words in _analyze_content(hit.content or ""):
            sentences.append(_Sentence(text, hit, rank, position, terms, words))
    return sentences


# Popular chunks come back for many questions, so their analysis is cached by content. Terms are
# stored as tuples, which take half the memory of sets. Measured with tracemalloc on chunks of
# about 170 words, each entry took about 16 KB, so the cache stays near 8 MB per process.
@lru_cache(maxsize=512)
def _analyze_content(content: str) -> tuple[tuple[int, str, tuple[str, ...], tuple[str, ...]], ...]:
    """Split ``content`` into quotable sentences as (position, text, terms, lowercased words)."""
    analyzed = []
    for position, raw in enumerate(split_sentences(content)):
        text = _clean(raw)
        words = _WORD.findall(text.lower())
        if len(words) < MIN_SENTENCE_WORDS:
            continue
        atoms, identifiers = _terms(text)
        analyzed.append((position, text, tuple(atoms | identifiers), tuple(set(words))))
    return tuple(analyzed)


def _clean(text: str) -> str:
    text = _BRACKETED_NUMBER.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return _truncate(text, MAX_SENTENCE_CHARS)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _query_terms(question: str) -> _QueryTerms:
    atoms, identifiers = _terms(question)
    names: set[str] = set()
    for match in _TOKEN.finditer(question):
        if _is_name(match.group(), question[: match.start()]):
            names.update(_token_terms(match.group())[0])
    return _QueryTerms(frozenset(atoms), frozenset(identifiers), frozenset(names))


def _is_name(token: str, before: str) -> bool:
    """Tell whether a question word names a thing: "CSV", "ArgumentParser", "json.dumps",
    "add_argument", "base64", or "Excel" past the first word of a sentence.

    Such a word is what the question is about, so a hit that lacks it answers another question.
    NOTE: a name typed in lower case ("csv") counts as an ordinary word, so only the embedding
    similarity keeps near misses for it out.
    """
    if token.lower() in STOP_WORDS:
        return False
    if _IDENTIFIER_MARK.search(token):
        return True
    has_digit = any(character.isdigit() for character in token)
    if has_digit and any(character.isalpha() for character in token):
        return True
    if any(character.isupper() for character in token[1:]):
        return True
    opens_sentence = not before.strip() or before.rstrip()[-1] in ".?!;:"
    return token[0].isupper() and not opens_sentence


def _terms_in_hits(sentences: list[_Sentence], hits: list[Hit]) -> set[str]:
    """Return every term of the quotable sentences and of the hits' document titles."""
    found: set[str] = set()
    for sentence in sentences:
        found.update(sentence.terms)
    for hit in hits:
        atoms, identifiers = _terms(hit.document_title or "")
        found.update(atoms, identifiers)
    return found


def _terms(text: str) -> tuple[set[str], set[str]]:
    """Return the stemmed content words of ``text`` and its lowercased multi-part identifiers."""
    atoms: set[str] = set()
    identifiers: set[str] = set()
    for token in _TOKEN.findall(text):
        token_atoms, token_identifiers = _token_terms(token)
        atoms.update(token_atoms)
        identifiers.update(token_identifiers)
    return atoms, identifiers


# Documentation reuses a limited vocabulary, so caching per token makes term extraction a lookup.
@lru_cache(maxsize=65536)
def _token_terms(token: str) -> tuple[frozenset[str], frozenset[str]]:
    """Return the stemmed words and the whole identifiers of one token.

    ``argparse.ArgumentParser`` gives the identifiers ``argparse.argumentparser`` and
    ``argumentparser`` and the words ``argpars``, ``argument`` and ``pars``.
    """
    pieces = [piece for piece in _SEPARATORS.split(token) if piece]
    parts = [part for piece in pieces for part in _split_camel_case(piece)]

    identifiers = set()
    if len(parts) > 1:
        identifiers.add(token.lower())
        identifiers.update(piece.lower() for piece in pieces if len(_split_camel_case(piece)) > 1)

    atoms = set()
    for part in parts:
        word = part.lower()
        if len(word) > 1 and word not in STOP_WORDS:
            atoms.add(_stem(word))
    return frozenset(atoms), frozenset(identifiers)


def _split_camel_case(piece: str) -> list[str]:
    parts = _CAMEL_CASE_PART.findall(piece)
    # Words in other scripts, or with digits inside, are kept as they are.
    if "".join(parts) != piece:
        return [piece]
    return parts


def _stem(word: str) -> str:
    """Strip common English suffixes so that "parse", "parses", "parsing" and "parser" match.

    Deliberately cruder than Porter: both the question and the sentences go through it, so it only
    has to map related forms to the same key, not to a real word. Some unrelated words collide,
    such as "listen" and "list".
    """
    if len(word) <= 2 or not word.isalpha():
        return word

    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 4 and word.endswith(("ches", "shes", "ses", "xes", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]

    for suffix in ("ing", "ed", "er", "en"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "running" -> "run", but "called" stays "call" and "passed" stays "pass".
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break

    if word.endswith("e") and len(word) > 2:
        word = word[:-1]
    return word


def _inverse_document_frequencies(sentences: list[_Sentence]) -> dict[str, float]:
    """Compute a smoothed IDF per term, treating each sentence as a document."""
    counts: dict[str, int] = {}
    for sentence in sentences:
        for term in sentence.terms:
            counts[term] = counts.get(term, 0) + 1
    total = len(sentences)
    return {term: _idf(count, total) for term, count in counts.items()}


def _idf(document_frequency: int, total: int) -> float:
    # Always positive. A question term found in no sentence gets the highest weight, log(2N + 2),
    # which is what keeps the coverage of an off-topic question low.
    return math.log(1 + (total - document_frequency + 0.5) / (document_frequency + 0.5))


def _coverage(
    sentence: _Sentence, query: _QueryTerms, idf: dict[str, float], unseen: float
) -> float:
    """Return the IDF-weighted share of the question's content words found in ``sentence``."""
    total = sum(idf.get(term, unseen) for term in query.atoms)
    if total == 0:
        return 0.0
    matched = sum(idf.get(term, unseen) for term in query.atoms.intersection(sentence.terms))
    return matched / total


def _score(sentence: _Sentence, coverage: float, query: _QueryTerms) -> float:
    score = coverage + RANK_WEIGHT / (sentence.rank + 1)
    if query.identifiers:
        found = len(query.identifiers.intersection(sentence.terms))
        score += IDENTIFIER_WEIGHT * found / len(query.identifiers)
    return score


def _select_by_score(
    sentences: list[_Sentence], coverages: list[float], query: _QueryTerms, limit: int
) -> list[_Sentence]:
    """Pick up to ``limit`` of the best-scoring sentences, skipping weak matches and repeats."""
    floor = RELATIVE_CUTOFF * max(coverages)
    min_matched = min(MIN_MATCHED_TERMS, len(query.atoms))
    ranked = sorted(
        (
            (_score(sentence, coverage, query), -sentence.rank, -sentence.position, sentence)
            for sentence, coverage in zip(sentences, coverages)
            if coverage > 0
            and coverage >= floor
            and (
                coverage >= MIN_COVERAGE
                or len(query.atoms.intersection(sentence.terms)) >= min_matched
            )
        ),
        key=lambda entry: entry[:3],
        reverse=True,
    )

    chosen: list[_Sentence] = []
    for _score_value, _rank, _position, sentence in ranked:
        if any(_is_near_duplicate(sentence, earlier) for earlier in chosen):
            continue
        chosen.append(sentence)
        if len(chosen) == limit:
            break
    return chosen


def _select_fallback(sentences: list[_Sentence], limit: int) -> list[_Sentence]:
    def similarity(sentence: _Sentence) -> float:
        value = sentence.hit.similarity
        return -math.inf if value is None else value

    best = max(sentences, key=lambda sentence: (similarity(sentence), -sentence.rank))
    same_hit = [sentence for sentence in sentences if sentence.rank == best.rank]
    return same_hit[: min(limit, FALLBACK_SENTENCES)]


def _is_near_duplicate(first: _Sentence, second: _Sentence) -> bool:
    """Tell whether two sentences repeat the same text, as overlapping chunks do."""
    first_words = set(first.words)
    union = first_words.union(second.words)
    if union and len(first_words.intersection(second.words)) / len(union) >= DUPLICATE_JACCARD:
        return True
    # A chunk that starts mid-sentence holds only the tail of a sentence of its neighbour.
    shorter, longer = sorted((first.text.lower(), second.text.lower()), key=len)
    return shorter.rstrip(".!?…") in longer


def _quote(chosen: list[_Sentence], cited: dict[str, list[_Sentence]]) -> list[str]:
    """Write one paragraph per chunk of ``chosen``, each sentence followed by its ``[n]``.

    Chunks appear in the order of their best sentence in ``chosen`` and sentences of one chunk in
    document order, so text from the same passage reads as it was written. ``cited`` maps each
    chunk id to its quoted sentences, in order of first use in the answer, so that order numbers
    the citations. The sentences of ``chosen`` are added to it.
    """
    groups: dict[str, list[_Sentence]] = {}
    for sentence in chosen:
        groups.setdefault(sentence.hit.chunk_id, []).append(sentence)

    paragraphs = []
    for chunk_id, group in groups.items():
        group.sort(key=lambda sentence: sentence.position)
        quoted = cited.setdefault(chunk_id, [])
        quoted_positions = {sentence.position for sentence in quoted}
        quoted.extend(sentence for sentence in group if sentence.position not in quoted_positions)
        n = list(cited).index(chunk_id) + 1
        paragraphs.append(" ".join(_add_marker(sentence.text, n) for sentence in group))
    return paragraphs


def _citations(cited: dict[str, list[_Sentence]]) -> list[Citation]:
    """Return a citation per chunk of ``cited``, numbered from 1 in its order, whose snippet
    is the chunk's quoted sentences in document order."""
    citations = []
    for n, quoted in enumerate(cited.values(), start=1):
        ordered = sorted(quoted, key=lambda sentence: sentence.position)
        hit = ordered[0].hit
        snippet = _truncate(" ".join(sentence.text for sentence in ordered), MAX_SNIPPET_CHARS)
        citations.append(Citation(n, hit.document_id, hit.chunk_id, hit.document_title, snippet))
    return citations


def _add_marker(text: str, n: int) -> str:
    """Put ``[n]`` before the closing full stop, or after the text when it has none."""
    marker = f"[{n}]"
    if text[-1] in ".!?" and not text.endswith(".."):
        return f"{text[:-1]} {marker}{text[-1]}"
    return f"{text} {marker}"
