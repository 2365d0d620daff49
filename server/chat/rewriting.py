"""Query rewriting for the extractive agent: follow-up questions and a second wording of a query."""

from __future__ import annotations

import re

from server.chat.extractive import STOP_WORDS

# Words, and identifiers such as "argparse.ArgumentParser" or "add_argument".
_TOKEN = re.compile(r"\w+(?:[.\-]\w+)*")
_IDENTIFIER_SEPARATORS = re.compile(r"[._\-]+")

# A question with fewer content words than this leans on the one before it ("And for it?").
MIN_STANDALONE_CONTENT_WORDS = 2
# A question this short that names its subject with a pronoun is a follow-up ("How do I clean it?").
MAX_PRONOUN_FOLLOW_UP_WORDS = 3
PRONOUNS = frozenset({"it", "its", "they", "them", "their", "this", "these", "those"})
# Openings of a follow-up question, lowercased.
FOLLOW_UP_OPENINGS = ("and ", "what about ", "how about ", "also ", "then ")


def content_words(text: str) -> list[str]:
    """Return the distinct lowercased words of `text` that carry meaning, in order of first use."""
    words = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) > 1 and token not in STOP_WORDS and token not in words:
            words.append(token)
    return words


def is_follow_up(question: str) -> bool:
    """Tell whether `question` needs the previous question to be understood."""
    words = content_words(question)
    if len(words) < MIN_STANDALONE_CONTENT_WORDS:
        return True
    lowered = question.strip().lower()
    if lowered.startswith(FOLLOW_UP_OPENINGS):
        return True
    tokens = set(_TOKEN.findall(lowered))
    return bool(tokens & PRONOUNS) and len(words) <= MAX_PRONOUN_FOLLOW_UP_WORDS


def previous_question(history: list[dict]) -> str | None:
    for message in reversed(history):
        if message["role"] == "user":
            return message["content"]
    return None


def resolve_follow_up(question: str, history: list[dict]) -> str:
    """Add the content words of the previous user question to a follow-up question.

    "How often should I descale the kettle?" followed by "And with what?" gives
    "And with what? descale kettle often". A standalone question is returned unchanged.
    """
    earlier = previous_question(history)
    if earlier is None or not is_follow_up(question):
        return question
    own = set(content_words(question))
    borrowed = [word for word in content_words(earlier) if word not in own]
    if not borrowed:
        return question
    return f"{question.strip()} {' '.join(borrowed)}"


def rephrase(query: str) -> str | None:
    """Return the query as its bare content words with identifiers split into words, or None
    when that wording is the query itself.

    Full text then matches "add argument" where the question said "add_argument()", and the
    embedding of a keyword list differs from that of a question with the same words.
    """
    words = []
    for word in content_words(query):
        for part in _IDENTIFIER_SEPARATORS.split(word):
            if len(part) > 1 and part not in STOP_WORDS and part not in words:
                words.append(part)
    rephrased = " ".join(words)
    if not rephrased or rephrased == query.strip().lower():
        return None
    return rephrased
