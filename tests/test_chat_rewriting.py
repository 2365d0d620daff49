"""Query rewriting of the extractive agent, and the cutting of answers into deltas."""

import pytest

from server.chat.agent import answer_words, is_weak
from server.chat.extractive import Hit
from server.chat.rewriting import content_words, is_follow_up, rephrase, resolve_follow_up

KETTLE_HISTORY = [
    {"role": "user", "content": "How often should I descale the kettle?"},
    {"role": "assistant", "content": "Descale the kettle every month [1]."},
]


@pytest.mark.parametrize("question", ["And with what?", "How often?", "What about it?", "How do I clean it?"])
def test_short_or_pronoun_questions_are_follow_ups(question):
    assert is_follow_up(question)


@pytest.mark.parametrize("question", ["What pressure should road bicycle tyres have?",
                                      "How do I parse command-line options with argparse?"])
def test_standalone_questions_are_not_follow_ups(question):
    assert not is_follow_up(question)


def test_follow_up_borrows_previous_question_words():
    resolved = resolve_follow_up("And with what?", KETTLE_HISTORY)
    assert resolved.startswith("And with what?")
    assert {"descale", "kettle"} <= set(content_words(resolved))


def test_standalone_question_is_left_unchanged():
    question = "What pressure should road bicycle tyres have?"
    assert resolve_follow_up(question, KETTLE_HISTORY) == question


def test_first_question_of_session_is_left_unchanged():
    assert resolve_follow_up("And with what?", []) == "And with what?"


def test_rephrase_splits_identifiers_and_drops_question_words():
    assert rephrase("How do I call add_argument() on a parser?") == "call add argument parser"


def test_rephrase_of_bare_keywords_is_none():
    assert rephrase("kettle descale") is None


def test_hits_without_close_similarity_are_weak():
    far = Hit("c1", "d1", "Title", "text", score=0.03, similarity=0.1)
    keyword_only = Hit("c2", "d1", "Title", "text", score=0.02, similarity=None)
    close = Hit("c3", "d1", "Title", "text", score=0.01, similarity=0.7)
    assert is_weak([])
    assert is_weak([far, keyword_only])
    assert not is_weak([far, close])


@pytest.mark.parametrize("text", ["According to the documents:\n\nDescale it monthly [1]. Rinse twice [1].",
                                  "One", "Ends with a space ", "Two  spaces"])
def test_answer_words_join_back_to_the_text(text):
    assert "".join(answer_words(text)) == text
