"""Split extracted document text into sentences and into overlapping chunks for embedding.

Chunks end on sentence or paragraph boundaries where the token limit allows. Each chunk
after the first repeats the last whole sentences of the previous one, so that a passage cut
at a chunk boundary can still be found with its context.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# A chunk has at most this many characters per token of its limit. BERT's WordPiece tokenizer
# (max_input_chars_per_word = 100) counts a longer word as one unknown token, so the token
# limit alone would let a base64 blob make one huge chunk. English prose has about 4 to 5
# characters per token (an estimate), so real text stays well under this bound.
MAX_CHARS_PER_TOKEN = 10


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's text, small enough for the embedding model."""

    ordinal: int  # 0-based position in the document
    content: str
    token_count: int


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

# Abbreviations whose period never ends a sentence when a capital letter follows ("Mr. Smith",
# "e.g. Python"). Sentences end at "etc." and "Inc." followed by a capital, because they
# usually do.
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "hon", "gen", "col", "lt",
    "capt", "sgt", "gov", "sen", "rep", "e.g", "i.e", "cf", "vs", "viz", "al", "approx", "ca",
    "dept", "est", "ft",
})
# Abbreviations that continue the sentence only before a number ("Fig. 3", "No. 5", "Jan. 5").
_ABBREVIATIONS_BEFORE_NUMBER = frozenset({
    "no", "nos", "nr", "p", "pp", "vol", "vols", "fig", "figs", "eq", "eqs", "ch", "chap", "sec",
    "art", "ex", "op", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec",
})

# Sentence-ending punctuation with any closing quotes or brackets after it. Latin punctuation
# ends a sentence only before a space. CJK full stops end one without a space.
_SENTENCE_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?= )|[\u3002\uff01\uff1f]+[\"'\u201d\u2019\u300d\u300f\uff09]*"
)
_DOTTED_ABBREVIATION = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
_ENUMERATOR = re.compile(r"(?:\d{1,3}|[A-Za-z]|[ivxlcdm]{1,6}|[IVXLCDM]{1,6})[.)]")
_MAX_ENUMERATOR_CHARS = 8
_OPENING_PUNCTUATION = "([{\"'\u201c\u2018"

_BULLET_LINE = re.compile(r"(?:[-*+\u2022\u2023\u25e6\u25aa\u25cf\u2013]|\d{1,3}[.)]|[a-z][.)]|\(\w{1,3}\))\s")
_CODE_LINE_START = re.compile(
    r"(?:def|class|async def|function|func|fn)\s+\w+\s*[(<:{]"  # a definition
    r"|(?:import|from)\s+[\w.]+(?:\s+import\s.+)?$"  # a Python import
    r"|[\w.\[\]]+\s*[-+*/%|&]?=\s"  # an assignment
    r"|[}\])]"  # the end of a block
)
_CALL_AT_END = re.compile(r"\w\([^()]*\)$")
_CODE_SYMBOL = re.compile(r"[{}\[\]<>=;|&$\\^~`]|\w\(")
# A line is code when at least this share of its visible characters are code symbols.
_MIN_CODE_SYMBOL_SHARE = 0.15


@dataclass(frozen=True)
class _Unit:
    """A sentence with the whitespace that separates it from the previous one in the text."""

    text: str
    separator: str  # "" before the first unit, " ", "\n" (line break) or "\n\n" (paragraph)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences without surrounding whitespace.

    A blank line always ends a sentence, and so does the end of a bullet line, a code-like
    line or a table row. Other line breaks are read as wrapped lines and joined with a space.
    Periods after abbreviations (e.g., Mr.), initials, list numbers and inside numbers (3.14)
    do not end a sentence.
    """
    return [unit.text for unit in _split_units(text)]


def _split_units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _paragraphs(text):
        for line_index, line in enumerate(_logical_lines(paragraph)):
            for sentence_index, sentence in enumerate(_sentences_in_line(line)):
                if not units:
                    separator = ""
                elif sentence_index > 0:
                    separator = " "
                elif line_index > 0:
                    separator = "\n"
                else:
                    separator = "\n\n"
                units.append(_Unit(sentence, separator))
    return units


def _paragraphs(text: str) -> list[list[str]]:
    """Group the stripped, non-empty lines of ``text`` into paragraphs at blank lines."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for raw_line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = " ".join(raw_line.split())
        if line:
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _logical_lines(lines: list[str]) -> list[str]:
    """Join wrapped lines of a paragraph, keeping bullet lines, code lines and table rows apart."""
    logical: list[list[str]] = []
    previous_stands_alone = True
    for line in lines:
        stands_alone = _is_code_line(line) or " | " in line
        if logical and not previous_stands_alone and not stands_alone and not _BULLET_LINE.match(line):
            logical[-1].append(line)
        else:
            logical.append([line])
        previous_stands_alone = stands_alone
    return [" ".join(parts) for parts in logical]


def _is_code_line(line: str) -> bool:
    if line.endswith(("{", "}", ";")) or _CODE_LINE_START.match(line) or _CALL_AT_END.search(line):
        return True
    visible = len(line) - line.count(" ")
    symbols = len(_CODE_SYMBOL.findall(line))
    return symbols >= 2 and symbols >= visible * _MIN_CODE_SYMBOL_SHARE


def _sentences_in_line(line: str) -> list[str]:
    if _is_code_line(line):
        return [line]
    sentences = []
    start = 0
    for end_mark in _SENTENCE_END.finditer(line):
        end = end_mark.end()
        if end >= len(line) or not _ends_sentence(line, start, end_mark):
            continue
        sentences.append(line[start:end].strip())
        start = end
    rest = line[start:].strip()
    if rest:
        sentences.append(rest)
    return [sentence for sentence in sentences if sentence]


def _ends_sentence(line: str, start: int, end_mark: re.Match) -> bool:
    """Decide whether the punctuation in ``end_mark`` ends the sentence that began at ``start``."""
    punctuation = end_mark.group()
    if punctuation[0] in "\u3002\uff01\uff1f":
        return True

    next_character = line[end_mark.end() + 1] if end_mark.end() + 1 < len(line) else ""
    if next_character.islower():
        return False
    if end_mark.end() - start <= _MAX_ENUMERATOR_CHARS and _ENUMERATOR.fullmatch(line[start:end_mark.end()].strip()):
        return False  # "1. Install it." is one sentence, not "1." and "Install it."
    if punctuation.rstrip("\"'\u201d\u2019)]") != ".":
        return True

    word_start = line.rfind(" ", start, end_mark.start()) + 1
    word = line[word_start:end_mark.start()].lstrip(_OPENING_PUNCTUATION)
    lowered = word.lower()
    if lowered in _ABBREVIATIONS:
        return False
    if lowered in _ABBREVIATIONS_BEFORE_NUMBER and next_character.isdigit():
        return False
    if len(word) == 1 and word.isupper():
        return False  # an initial, as in "John F. Kennedy"
    return not _DOTTED_ABBREVIATION.fullmatch(word)  # "U.S.", "Ph.D."


# ---------------------------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """A sentence, or a part of a sentence too long for one chunk, with its token count."""

    text: str
    separator: str
    tokens: int


class _TokenCounter:
    """Count tokens with the caller's tokenizer, once per distinct string."""

    def __init__(self, count_tokens: Callable[[str], int]):
        self._count_tokens = count_tokens
        self._counts: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        count = self._counts.get(text)
        if count is None:
            count = self._count_tokens(text)
            self._counts[text] = count
        return count

    def count_once(self, text: str) -> int:
        """Count without caching, for strings that are counted only once."""
        return self._count_tokens(text)


def split_into_chunks(
    text: str,
    count_tokens: Callable[[str], int],
    max_tokens: int = 200,
    overlap_tokens: int = 40,
) -> list[Chunk]:
    """Cut text into chunks of at most ``max_tokens`` tokens, in document order.

    Chunks end at sentence boundaries where possible. A sentence longer than a chunk is cut
    between words into parts of at most ``overlap_tokens`` tokens, and a word that is still
    too long is cut between characters. Each chunk after the first starts with the last
    whole sentences (or parts) of the previous chunk, as many as fit in ``overlap_tokens``.
    A chunk also has at most ``max_tokens * MAX_CHARS_PER_TOKEN`` characters.

    ``count_tokens`` runs once per distinct sentence and once per chunk, plus once per
    distinct word and part of an overlong sentence. ``Chunk.token_count`` is its count of
    the chunk's content.

    An empty or whitespace-only text gives no chunks. Raises ValueError unless
    0 <= overlap_tokens < max_tokens.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(
            f"overlap_tokens must be at least 0 and below max_tokens ({max_tokens}), got {overlap_tokens}."
        )

    counter = _TokenCounter(count_tokens)
    max_chars = max_tokens * MAX_CHARS_PER_TOKEN
    # Parts of an overlong sentence are no bigger than the overlap, so that the overlap can
    # repeat the last of them when the chunk boundary falls inside the sentence.
    part_tokens = overlap_tokens if overlap_tokens > 0 else max_tokens
    pieces = _measure_pieces(_split_units(text), counter, max_tokens, part_tokens, max_chars)
    return _pack_chunks(pieces, counter, max_tokens, overlap_tokens, max_chars)


def _measure_pieces(
    units: list[_Unit], counter: _TokenCounter, max_tokens: int, part_tokens: int, max_chars: int
) -> list[_Piece]:
    pieces = []
    for unit in units:
        # A sentence over max_chars is split without counting it, because it needs splitting
        # anyway and tokenizing a long text takes time.
        tokens = counter(unit.text) if len(unit.text) <= max_chars else None
        if tokens is not None and tokens <= max_tokens:
            pieces.append(_Piece(unit.text, unit.separator, tokens))
            continue
        for index, (part, part_count) in enumerate(_split_long_text(unit.text, counter, part_tokens, max_chars)):
            pieces.append(_Piece(part, unit.separator if index == 0 else " ", part_count))
    return pieces


def _split_long_text(text: str, counter: _TokenCounter, max_tokens: int, max_chars: int) -> list[tuple[str, int]]:
    """Cut a sentence between words into parts of at most ``max_tokens`` tokens and ``max_chars`` characters.

    Word counts are added up, which equals the count of the joined words for WordPiece
    tokenizers. Each part is then counted whole, and halved when the sum was too low.
    """
    # NOTE: this makes one tokenizer call per distinct word. A long text without sentence
    # punctuation and with few repeated words, such as a table of numbers, is therefore
    # chunked several times slower than prose of the same size.
    parts: list[tuple[str, int]] = []
    words: list[str] = []
    word_tokens = 0
    word_chars = -1

    def finish_part() -> None:
        if words:
            parts.extend(_counted_parts(words, counter, max_tokens))
            words.clear()

    for word in text.split(" "):
        tokens = counter(word) if len(word) <= max_chars else max_tokens + 1
        if tokens > max_tokens:
            finish_part()
            parts.extend(_split_long_word(word, counter, max_tokens, max_chars))
            word_tokens, word_chars = 0, -1
            continue
        if word_tokens + tokens > max_tokens or word_chars + 1 + len(word) > max_chars:
            finish_part()
            word_tokens, word_chars = 0, -1
        words.append(word)
        word_tokens += tokens
        word_chars += 1 + len(word)
    finish_part()
    return parts


def _counted_parts(words: list[str], counter: _TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    text = " ".join(words)
    tokens = counter(text)
    if tokens <= max_tokens or len(words) == 1:
        return [(text, tokens)]
    middle = len(words) // 2
    return _counted_parts(words[:middle], counter, max_tokens) + _counted_parts(words[middle:], counter, max_tokens)


def _split_long_word(word: str, counter: _TokenCounter, max_tokens: int, max_chars: int) -> list[tuple[str, int]]:
    """Cut a word into the longest prefixes that fit, found by binary search on the length."""
    parts = []
    start = 0
    while start < len(word):
        low, high = 1, min(max_chars, len(word) - start)
        best = 1
        while low <= high:
            middle = (low + high) // 2
            if counter.count_once(word[start:start + middle]) <= max_tokens:
                best = middle
                low = middle + 1
            else:
                high = middle - 1
        # NOTE: when a single character has more tokens than max_tokens (only possible with a
        # very small max_tokens), that character becomes a part that exceeds the limit.
        part = word[start:start + best]
        parts.append((part, counter(part)))
        start += best
    return parts


def _pack_chunks(
    pieces: list[_Piece], counter: _TokenCounter, max_tokens: int, overlap_tokens: int, max_chars: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    first_new = 0  # index of the first piece that no earlier chunk contains
    previous_first_new = 0
    while first_new < len(pieces):
        first = first_new
        if chunks:
            first = _overlap_start(pieces, previous_first_new, first_new, overlap_tokens)
            first = _trim_overlap(pieces, first, first_new, max_tokens, max_chars)
        end = _fill(pieces, first, first_new, max_tokens, max_chars)

        # Sums of sentence counts can differ from the count of the joined text by a token or
        # two, so the chunk is counted whole and shrunk in the rare case that it is too long.
        # Each piece was counted exactly on its own, so a chunk of one piece fits.
        content = _join(pieces[first:end])
        tokens = counter(content)
        while tokens > max_tokens and end - first > 1:
            if first < first_new:
                first += 1
            else:
                end -= 1
            content = _join(pieces[first:end])
            tokens = counter(content)

        chunks.append(Chunk(ordinal=len(chunks), content=content, token_count=tokens))
        previous_first_new = first_new
        first_new = end
    return chunks


def _overlap_start(pieces: list[_Piece], previous_first_new: int, first_new: int, overlap_tokens: int) -> int:
    """Return where the next chunk's overlap starts, within the previous chunk's new pieces."""
    start = first_new
    total = 0
    while start > previous_first_new and total + pieces[start - 1].tokens <= overlap_tokens:
        start -= 1
        total += pieces[start].tokens
    return start


def _trim_overlap(pieces: list[_Piece], first: int, first_new: int, max_tokens: int, max_chars: int) -> int:
    """Drop overlap pieces from the front until the first new piece fits after them."""
    while first < first_new:
        candidate = pieces[first:first_new + 1]
        if _total_tokens(candidate) <= max_tokens and _total_chars(candidate) <= max_chars:
            break
        first += 1
    return first


def _fill(pieces: list[_Piece], first: int, first_new: int, max_tokens: int, max_chars: int) -> int:
    """Return the end of the chunk that starts at ``first``, taking at least one new piece."""
    tokens = _total_tokens(pieces[first:first_new])
    chars = _total_chars(pieces[first:first_new])
    end = first_new
    while end < len(pieces):
        piece = pieces[end]
        tokens += piece.tokens
        chars += len(piece.separator) + len(piece.text)
        if end > first_new and (tokens > max_tokens or chars > max_chars):
            break
        end += 1
    return end


def _total_tokens(pieces: list[_Piece]) -> int:
    return sum(piece.tokens for piece in pieces)


def _total_chars(pieces: list[_Piece]) -> int:
    """Return the length of the pieces joined, plus the separator of the first one."""
    return sum(len(piece.separator) + len(piece.text) for piece in pieces)


def _join(pieces: list[_Piece]) -> str:
    parts = [pieces[0].text]
    for piece in pieces[1:]:
        parts.append(piece.separator)
        parts.append(piece.text)
    return "".join(parts)
