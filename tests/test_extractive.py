"""Tests of the extractive chat answerer on short passages written like Python documentation."""

import re
import time

import pytest

from server.chat import extractive
from server.chat.extractive import (
    MAX_SENTENCE_CHARS,
    MAX_SNIPPET_CHARS,
    NO_ANSWER,
    Answer,
    Hit,
    QuestionPart,
    compose_answer,
    compose_compound_answer,
    split_question,
)

ARGPARSE_INTRO = (
    "The argparse module makes it easy to write user-friendly command-line interfaces. "
    "The program defines what arguments it requires, and argparse will figure out how to parse "
    "those out of sys.argv. The module also generates help and usage messages automatically. "
    "It issues errors when users give the program invalid arguments. "
    "The argparse.ArgumentParser class holds all the information necessary to parse the command "
    "line into Python data types. Most programs create one parser at the top of the script and "
    "keep it for the whole run."
)

ARGPARSE_ADD_ARGUMENT = (
    "Filling an ArgumentParser with information about program arguments is done by making calls "
    "to the add_argument() method. Each call tells the parser how to take strings on the command "
    "line and turn them into objects. Optional arguments such as --verbose start with a dash, "
    "while positional arguments are identified by their order. The parse_args() method inspects "
    "the command line, converts each argument to the appropriate type and then invokes the "
    "appropriate action. In most cases this means a simple Namespace object will be built up "
    "from attributes parsed out of the command line."
)

CSV_READER = (
    "The csv module implements classes to read and write tabular data in CSV format. "
    "The csv.reader() function returns a reader object which will iterate over lines in the "
    "given CSV file. Each row read from the file is returned as a list of strings. "
    "No automatic data type conversion is performed unless the QUOTE_NONNUMERIC format option "
    "is specified. If the file is opened with open(), it should be opened with newline='' so "
    "that quoted fields containing line breaks are read correctly."
)

CSV_DICT_READER = (
    "The csv.DictReader class creates an object that operates like a regular reader but maps "
    "the information in each row to a dict whose keys are given by the optional fieldnames "
    "parameter. If fieldnames is omitted, the values in the first row of the file will be used "
    "as the fieldnames. The csv.writer() function returns a writer object responsible for "
    "converting the user's data into delimited strings on the given file-like object. "
    "Rows are written with the writerow() method, which takes an iterable of strings or numbers."
)

JSON_DUMPS = (
    "The json module exposes an API familiar to users of the standard library marshal and "
    "pickle modules. The json.dumps() function serializes an object to a JSON formatted str. "
    "If indent is a non-negative integer or string, then JSON array elements and object "
    "members will be pretty-printed with that indent level. The json.loads() function "
    "deserializes a str, bytes or bytearray instance containing a JSON document to a Python "
    "object. Keys in key/value pairs of JSON are always of the type str."
)

PASSAGES = [CSV_READER, CSV_DICT_READER, ARGPARSE_INTRO, ARGPARSE_ADD_ARGUMENT, JSON_DUMPS]

# Cosine similarities of a question to each of PASSAGES, in that order, as computed with
# all-MiniLM-L6-v2 (jobs.embedding.encode) on these texts and rounded.
FRANCE_SIMILARITIES = [-0.06, -0.02, 0.03, 0.08, -0.04]  # "What is the capital of France?"
LOGO_SIMILARITIES = [-0.05, 0.10, 0.22, 0.09, 0.25]  # "Who designed the Python logo?"
HTTP_SIMILARITIES = [0.07, 0.10, 0.31, 0.17, 0.35]  # "How do I send an HTTP request in Python?"

MARKER = re.compile(r"\[(\d+)\]")


def make_hit(
    number: int, content: str, similarity: float | None = 0.5, title: str = "Python docs"
) -> Hit:
    return Hit(
        chunk_id=f"chunk-{number}",
        document_id=f"doc-{number}",
        document_title=title,
        content=content,
        score=1.0 / (60 + number),
        similarity=similarity,
    )


def python_hits(similarities: list[float | None] | None = None) -> list[Hit]:
    """Return one hit per passage of PASSAGES, ranked in that order."""
    similarities = similarities or [0.6, 0.5, 0.3, 0.25, 0.2]
    pairs = zip(PASSAGES, similarities)
    return [make_hit(i, text, similarity) for i, (text, similarity) in enumerate(pairs)]


def marker_numbers(answer: Answer) -> list[int]:
    return [int(number) for number in MARKER.findall(answer.content)]


def quoted_sentences(answer: Answer) -> list[str]:
    """Return the answer's sentences with their markers removed, lead-in excluded."""
    paragraphs = answer.content.split("\n\n")[1:]
    sentences = []
    for paragraph in paragraphs:
        for piece in re.split(r"(?<=\])[.!?]?\s+", paragraph + " "):
            if piece.strip():
                sentences.append(MARKER.sub("", piece).strip())
    return sentences


def test_csv_question_is_answered():
    answer = compose_answer("How do I read a CSV file?", python_hits())

    assert answer.answered
    assert answer.content != NO_ANSWER
    assert answer.citations
    assert "csv.reader()" in answer.content


ANSWERABLE_QUESTIONS = [
    "How do I read a CSV file?",
    "How does argparse parse command-line arguments?",
    "How do I parse command-line options and read a CSV file?",
    "What does json.dumps return?",
    "How do I write rows to a CSV file?",
]


@pytest.mark.parametrize("question", ANSWERABLE_QUESTIONS)
def test_markers_match_citations(question):
    answer = compose_answer(question, python_hits())

    assert answer.citations
    assert set(marker_numbers(answer)) == {citation.n for citation in answer.citations}


@pytest.mark.parametrize("question", ANSWERABLE_QUESTIONS)
def test_citation_numbers_contiguous_from_one(question):
    answer = compose_answer(question, python_hits())

    numbers = [citation.n for citation in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("question", ANSWERABLE_QUESTIONS)
def test_citations_numbered_by_first_use(question):
    answer = compose_answer(question, python_hits())

    first_use = list(dict.fromkeys(marker_numbers(answer)))
    assert first_use == list(range(1, len(first_use) + 1))


def test_compound_question_cites_both_topics():
    question = "How do I parse command-line options and read a CSV file?"

    answer = compose_answer(question, python_hits())

    assert "command line" in answer.content
    assert "CSV file" in answer.content


def test_one_citation_per_chunk():
    answer = compose_answer("How does argparse parse the command line?", python_hits())

    chunk_ids = [citation.chunk_id for citation in answer.citations]
    assert len(chunk_ids) == len(set(chunk_ids))


def test_citation_fields_come_from_hit():
    hits = python_hits()
    by_chunk = {hit.chunk_id: hit for hit in hits}

    answer = compose_answer("What does json.dumps return?", hits)

    assert answer.citations
    for citation in answer.citations:
        hit = by_chunk[citation.chunk_id]
        assert citation.document_id == hit.document_id
        assert citation.title == hit.document_title
        assert citation.snippet
        assert len(citation.snippet) <= MAX_SNIPPET_CHARS


def test_quoted_sentences_come_from_cited_hit():
    hits = python_hits()
    by_number = {}
    answer = compose_answer("How do I read a CSV file?", hits)
    for citation in answer.citations:
        by_number[citation.n] = next(hit for hit in hits if hit.chunk_id == citation.chunk_id)

    for paragraph in answer.content.split("\n\n")[1:]:
        numbers = set(MARKER.findall(paragraph))
        assert len(numbers) == 1, paragraph
        source = by_number[int(numbers.pop())].content
        for sentence in quoted_sentences(Answer(f"lead\n\n{paragraph}", [], True)):
            assert sentence.rstrip(".") in source, sentence


def test_each_sentence_carries_a_marker():
    answer = compose_answer("How do I read a CSV file?", python_hits())

    for paragraph in answer.content.split("\n\n")[1:]:
        assert paragraph.rstrip().endswith(("].", "]", "]?", "]!"))
    assert len(marker_numbers(answer)) == len(quoted_sentences(answer))


def test_max_sentences_is_respected():
    question = "How does argparse parse command-line arguments?"

    answer = compose_answer(question, python_hits(), max_sentences=2)

    assert len(marker_numbers(answer)) <= 2


def test_max_sentences_below_one_raises():
    with pytest.raises(ValueError, match="max_sentences"):
        compose_answer("How do I read a CSV file?", python_hits(), max_sentences=0)


def test_off_topic_question_is_not_answered():
    answer = compose_answer("What is the capital of France?", python_hits(FRANCE_SIMILARITIES))

    assert answer == Answer(NO_ANSWER, [], False)


def test_off_topic_keyword_only_hits_not_answered():
    hits = python_hits([None, None, None, None, None])

    answer = compose_answer("How long should I bake sourdough bread?", hits)

    assert not answer.answered
    assert answer.content == NO_ANSWER
    assert answer.citations == []


def test_one_shared_word_is_not_enough():
    # "Python" appears in the hits, but the question is about something else.
    answer = compose_answer("Who designed the Python logo?", python_hits(LOGO_SIMILARITIES))

    assert answer == Answer(NO_ANSWER, [], False)


def test_grey_zone_similarity_is_not_enough():
    # The JSON passage scores 0.35 against this question, which it does not answer.
    question = "How do I send an HTTP request in Python?"

    answer = compose_answer(question, python_hits(HTTP_SIMILARITIES))

    assert answer == Answer(NO_ANSWER, [], False)


def test_empty_hits_give_no_answer():
    answer = compose_answer("How do I read a CSV file?", [])

    assert answer == Answer(NO_ANSWER, [], False)


def test_no_answer_is_one_sentence():
    assert NO_ANSWER.count(".") == 1
    assert NO_ANSWER.endswith(".")


def test_similar_hit_without_shared_words_is_quoted():
    # No word of the question occurs in the passage. The similarity is set above MIN_SIMILARITY
    # to stand for an embedding that recognises the paraphrase. The question names nothing, since
    # a name that no hit contains ("CLI") is never answered.
    hits = [make_hit(0, CSV_READER, similarity=0.2), make_hit(1, ARGPARSE_INTRO, similarity=0.45)]

    answer = compose_answer("Which package deals with switches passed at startup?", hits)

    assert answer.answered
    assert [citation.chunk_id for citation in answer.citations] == ["chunk-1"]
    assert marker_numbers(answer) == [1, 1]
    assert "argparse module makes it easy" in answer.content


def test_inflected_forms_match():
    hits = [make_hit(0, ARGPARSE_ADD_ARGUMENT, similarity=None)]

    answer = compose_answer("Which method parses the arguments?", hits)

    assert answer.answered
    assert "parse_args()" in answer.content


def test_identifier_question_finds_its_sentence():
    answer = compose_answer("What is argparse.ArgumentParser for?", python_hits())

    assert answer.answered
    assert "The argparse.ArgumentParser class holds" in answer.content


def test_best_sentence_comes_first():
    answer = compose_answer("What does json.loads deserialize?", python_hits())

    first = quoted_sentences(answer)[0]
    assert "json.loads()" in first


def test_overlapping_chunks_quote_sentence_once():
    shared = (
        "The csv.reader() function returns a reader object which will iterate over lines "
        "in the given CSV file."
    )
    opening = "The csv module implements classes to read and write tabular data in CSV format."
    closing = "Each row read from the file is returned as a list of strings."
    first = make_hit(0, f"{opening} {shared}")
    second = make_hit(1, f"{shared} {closing}")

    answer = compose_answer("How do I read lines of a CSV file with csv.reader?", [first, second])

    assert answer.content.count("returns a reader object") == 1


def test_truncated_overlap_counts_as_duplicate():
    tail = "returns a reader object which will iterate over lines in the given CSV file."
    first = make_hit(0, f"The csv.reader() function {tail}")
    second = make_hit(1, f"function {tail}")
    question = "How does csv.reader iterate over lines of a CSV file?"

    answer = compose_answer(question, [first, second])

    assert answer.content.count("iterate over lines") == 1
    assert [citation.chunk_id for citation in answer.citations] == ["chunk-0"]


def test_very_long_sentence_is_truncated():
    long_sentence = "The csv reader reads " + " ".join(["rows"] * 5000) + " from a CSV file."
    hits = [make_hit(0, long_sentence)]

    answer = compose_answer("How does the csv reader read rows?", hits)

    assert answer.answered
    assert len(answer.content) < MAX_SENTENCE_CHARS + 100
    assert len(answer.citations[0].snippet) <= MAX_SNIPPET_CHARS


def test_markup_in_content_does_not_crash():
    markup = (
        "<div class='note'><script>alert('x')</script> The <code>csv.reader()</code> function "
        "reads rows from a CSV file.</div> ```python\nimport csv\n``` | a | b |\n|---|---|"
    )

    answer = compose_answer("How do I read rows from a CSV file?", [make_hit(0, markup)])

    assert answer.answered
    assert marker_numbers(answer) == [1]


def test_empty_content_does_not_crash():
    hits = [make_hit(0, ""), make_hit(1, "   \n\t "), make_hit(2, CSV_READER)]

    answer = compose_answer("How do I read a CSV file?", hits)

    assert answer.answered
    assert [citation.chunk_id for citation in answer.citations] == ["chunk-2"]


def test_only_empty_content_gives_no_answer():
    hits = [make_hit(0, "", similarity=0.9), make_hit(1, "...", similarity=0.9)]

    answer = compose_answer("How do I read a CSV file?", hits)

    assert answer == Answer(NO_ANSWER, [], False)


def test_footnote_numbers_not_taken_as_markers():
    footnoted = (
        "The csv.reader() function reads rows from a CSV file [7]. See the dialect notes [12]."
    )

    answer = compose_answer("How do I read rows from a CSV file?", [make_hit(0, footnoted)])

    assert set(marker_numbers(answer)) == {1}


def test_question_of_stop_words_unanswered():
    answer = compose_answer("How do I do it?", python_hits([0.1, 0.1, 0.1, 0.1, 0.1]))

    assert answer == Answer(NO_ANSWER, [], False)


def test_compose_answer_timing():
    # Five hits of 220 to 250 all-MiniLM-L6-v2 word pieces each. The time is printed, not asserted,
    # because it depends on the machine. "cold" clears the chunk and token caches before each call.
    hits = [make_hit(i, PASSAGES[i] + " " + PASSAGES[(i + 1) % 5]) for i in range(5)]
    question = "How do I parse command-line options and read a CSV file?"
    runs = 200

    started = time.perf_counter()
    for _ in range(runs):
        extractive._analyze_content.cache_clear()
        extractive._token_terms.cache_clear()
        compose_answer(question, hits)
    cold_ms = (time.perf_counter() - started) * 1000 / runs

    started = time.perf_counter()
    for _ in range(runs):
        compose_answer(question, hits)
    warm_ms = (time.perf_counter() - started) * 1000 / runs

    words = sum(len(hit.content.split()) for hit in hits)
    print(
        f"\ncompose_answer on 5 hits ({words} words): "
        f"cold {cold_ms:.2f} ms, warm {warm_ms:.2f} ms per call"
    )


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "How do I parse command-line options and how do I read a CSV file?",
            ["How do I parse command-line options?", "How do I read a CSV file?"],
        ),
        (
            "What does json.dumps return? And how do I pretty-print it?",
            ["What does json.dumps return?", "And how do I pretty-print it?"],
        ),
        (
            "How do I read a CSV file, and what does csv.reader return?",
            ["How do I read a CSV file?", "What does csv.reader return?"],
        ),
        (
            "What is argparse for; can I use it with subcommands?",
            ["What is argparse for?", "Can I use it with subcommands?"],
        ),
        (
            "What are zebras? And what do koalas eat?",
            ["What are zebras?", "And what do koalas eat?"],
        ),
    ],
)
def test_split_question_compound(question, expected):
    assert split_question(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "How do I read a CSV file?",
        "How do I read and write CSV files?",
        "What is the difference between json.load and json.loads?",
        "Should I use argparse or optparse?",
        "What and why?",
    ],
)
def test_split_question_simple_returns_question(question):
    assert split_question(question) == [question]


def test_split_question_blank_returns_empty():
    assert split_question("  \n ") == []


def test_split_question_caps_parts():
    question = " and ".join(f"how do I use module{i}" for i in range(10)) + "?"

    parts = split_question(question)

    assert len(parts) == 4
    assert "module9" in parts[-1]


ARRAY_FILES = (
    "The fromfile() method reads items from a file object and appends them to the array. "
    "The tofile() method writes every item to a file object as machine values. "
    "An array holds values of one basic type, such as integers or floating point numbers."
)

FILEINPUT_LINES = (
    "The fileinput module iterates over the lines of several input files in turn. "
    "Each file is opened when the iteration reaches it and closed after its last line."
)

# Cosine similarities of "How do I read a CSV file?" to the chunks of the array and fileinput
# modules about files, measured with all-MiniLM-L6-v2 on their pydoc text. The fileinput chunk
# was found by the second search, "read csv file".
CSV_TO_ARRAY_SIMILARITY = 0.37
CSV_TO_FILEINPUT_SIMILARITY = 0.40


def test_name_missing_from_hits_not_answered():
    # Regression: with the array and fileinput modules uploaded but not csv, the array module's
    # sentence about reading items from a file was quoted as the answer.
    hits = [
        make_hit(0, ARRAY_FILES, similarity=CSV_TO_ARRAY_SIMILARITY, title="array"),
        make_hit(1, FILEINPUT_LINES, similarity=CSV_TO_FILEINPUT_SIMILARITY, title="fileinput"),
    ]

    answer = compose_answer("How do I read a CSV file?", hits)

    assert answer == Answer(NO_ANSWER, [], False)


def test_missing_name_outweighs_similarity():
    hits = [make_hit(0, ARRAY_FILES, similarity=0.45, title="array")]

    answer = compose_answer("How do I read a CSV file?", hits)

    assert answer == Answer(NO_ANSWER, [], False)


def test_missing_word_needs_similarity():
    # "csv" in lower case is an ordinary word, yet no hit contains it. Among these sentences
    # "read" and "file" are rare, so they alone cover more than MIN_COVERAGE of the question.
    hits = [
        make_hit(0, ARRAY_FILES, similarity=CSV_TO_ARRAY_SIMILARITY, title="array"),
        make_hit(1, ARGPARSE_INTRO, similarity=0.2),
        make_hit(2, ARGPARSE_ADD_ARGUMENT, similarity=0.15),
        make_hit(3, JSON_DUMPS, similarity=0.1),
    ]

    answer = compose_answer("how do i read a csv file?", hits)

    assert answer == Answer(NO_ANSWER, [], False)


def test_missing_word_needs_more_than_min_similarity():
    # Measured: the lower-case question reached 0.40 on the fileinput chunk, which does not
    # answer it.
    hits = [
        make_hit(0, ARRAY_FILES, similarity=CSV_TO_ARRAY_SIMILARITY, title="array"),
        make_hit(1, FILEINPUT_LINES, similarity=CSV_TO_FILEINPUT_SIMILARITY, title="fileinput"),
    ]

    answer = compose_answer("how do i read a csv file?", hits)

    assert answer == Answer(NO_ANSWER, [], False)


def test_missing_word_answered_by_similarity():
    hits = [make_hit(0, ARRAY_FILES, similarity=0.5, title="array")]

    answer = compose_answer("How do I load array items from a file quickly?", hits)

    assert answer.answered
    assert "fromfile()" in answer.content


def test_name_found_in_title_is_covered():
    hits = [make_hit(0, ARRAY_FILES, similarity=0.3, title="array — Python arrays")]

    answer = compose_answer("How does fromfile read items into a Python array?", hits)

    assert answer.answered
    assert "fromfile()" in answer.content


def test_capital_opening_a_sentence_is_no_name():
    hits = [make_hit(0, ARRAY_FILES, similarity=0.3, title="array")]

    answer = compose_answer("Read items from a file with which method?", hits)

    assert answer.answered
    assert "fromfile()" in answer.content


ZEBRAS = (
    "Zebras are African equines with black and white striped coats. "
    "Three species live today: the plains zebra, the mountain zebra and the Grevy's zebra. "
    "Zebras graze on grasses and live in herds on open savannas."
)

KOALAS = (
    "The koala is a tree-dwelling marsupial native to eastern Australia. "
    "Koalas eat eucalyptus leaves almost exclusively and sleep up to twenty hours a day. "
    "Young koalas eat a substance called pap to prepare for a eucalyptus diet. "
    "Koalas rarely drink water because the leaves they eat contain enough moisture."
)

# Cosine similarities of each question to ZEBRAS and KOALAS, in that order, measured with
# all-MiniLM-L6-v2 (jobs.embedding.encode) and rounded.
ZEBRA_QUESTION_SIMILARITIES = (0.70, 0.09)  # "What are zebras?"
KOALA_QUESTION_SIMILARITIES = (0.17, 0.76)  # "What do koalas eat?"
PENGUIN_QUESTION_SIMILARITIES = (0.23, 0.37)  # "What do penguins eat?"


def animal_part(question: str, similarities: tuple[float, float]) -> QuestionPart:
    """Return ``question`` with hits on both animal passages, the more similar one first, as the
    hybrid search ranks them."""
    zebras = make_hit(1, ZEBRAS, similarity=similarities[0], title="Zebras")
    koalas = make_hit(2, KOALAS, similarity=similarities[1], title="Koalas")
    hits = [zebras, koalas] if similarities[0] >= similarities[1] else [koalas, zebras]
    return QuestionPart(question, question, hits)


def zebra_and_koala_parts() -> list[QuestionPart]:
    return [
        animal_part("What are zebras?", ZEBRA_QUESTION_SIMILARITIES),
        animal_part("What do koalas eat?", KOALA_QUESTION_SIMILARITIES),
    ]


def test_compound_answer_cites_every_answered_part():
    # Regression: composed from the joined parts over the hits of both searches, the answer
    # quoted three koala sentences and no zebra one.
    answer = compose_compound_answer(zebra_and_koala_parts())

    assert answer.answered
    assert {citation.title for citation in answer.citations} == {"Zebras", "Koalas"}
    assert "striped coats" in answer.content
    assert "eucalyptus leaves" in answer.content


def test_compound_answer_follows_part_order():
    answer = compose_compound_answer(zebra_and_koala_parts())

    assert answer.content.index("What are zebras?") < answer.content.index("striped coats")
    assert answer.content.index("striped coats") < answer.content.index("What do koalas eat?")
    assert answer.content.index("What do koalas eat?") < answer.content.index("eucalyptus leaves")
    assert [citation.title for citation in answer.citations] == ["Zebras", "Koalas"]


def test_compound_answer_markers_match_citations():
    answer = compose_compound_answer(zebra_and_koala_parts())

    assert marker_numbers(answer) == sorted(marker_numbers(answer))
    assert set(marker_numbers(answer)) == {citation.n for citation in answer.citations}
    assert [citation.n for citation in answer.citations] == [1, 2]


def test_compound_answer_quotes_only_own_hits_per_part():
    answer = compose_compound_answer(zebra_and_koala_parts())

    zebra_section, koala_section = answer.content.split("\n\n")[1:]
    assert "[2]" not in zebra_section
    assert "[1]" not in koala_section


def test_compound_part_without_answer_says_so():
    parts = [
        animal_part("What are zebras?", ZEBRA_QUESTION_SIMILARITIES),
        animal_part("What do penguins eat?", PENGUIN_QUESTION_SIMILARITIES),
    ]

    answer = compose_compound_answer(parts)

    assert answer.answered
    assert answer.content.endswith(f"What do penguins eat?\n{NO_ANSWER}")
    assert "striped coats" in answer.content
    assert "eucalyptus" not in answer.content
    assert [citation.title for citation in answer.citations] == ["Zebras"]


def test_compound_part_missing_name_not_answered():
    # "YAML" occurs in no hit, so the hits that share "read" and "file" are a near miss for the
    # second part, while the first part is answered from the same passages.
    hits = python_hits()
    parts = [
        QuestionPart("How do I read a CSV file?", "How do I read a CSV file?", hits),
        QuestionPart("How do I read a YAML file?", "How do I read a YAML file?", hits),
    ]

    answer = compose_compound_answer(parts)

    assert answer.answered
    assert "csv.reader()" in answer.content
    assert answer.content.endswith(f"How do I read a YAML file?\n{NO_ANSWER}")


def test_compound_answer_without_answered_part():
    parts = [
        animal_part("What do penguins eat?", PENGUIN_QUESTION_SIMILARITIES),
        QuestionPart("Who won the world cup in 1966?", "Who won the world cup in 1966?", []),
    ]

    answer = compose_compound_answer(parts)

    assert answer == Answer(NO_ANSWER, [], False)


def test_compound_answer_of_one_part_is_compose_answer():
    part = animal_part("What are zebras?", ZEBRA_QUESTION_SIMILARITIES)

    answer = compose_compound_answer([part], max_sentences=3)

    assert answer == compose_answer(part.query, part.hits, max_sentences=3)


def test_compound_answer_of_no_parts():
    assert compose_compound_answer([]) == Answer(NO_ANSWER, [], False)


def test_compound_answer_shares_max_sentences():
    answer = compose_compound_answer(zebra_and_koala_parts(), max_sentences=2)

    assert len(marker_numbers(answer)) == 2


def test_compound_answer_cites_shared_chunk_once():
    hits = python_hits()
    parts = [
        QuestionPart("What does json.dumps do?", "What does json.dumps do?", hits),
        QuestionPart("What does json.loads do?", "What does json.loads do?", hits),
    ]

    answer = compose_compound_answer(parts)

    assert [citation.chunk_id for citation in answer.citations] == ["chunk-4"]
    assert "json.dumps()" in answer.citations[0].snippet
    assert "json.loads()" in answer.citations[0].snippet
    assert set(marker_numbers(answer)) == {1}


def test_compound_answer_shows_part_as_written():
    # The query carries words borrowed from the previous question, which the section omits.
    part = animal_part("What are zebras?", ZEBRA_QUESTION_SIMILARITIES)
    koalas = animal_part("What do they eat?", KOALA_QUESTION_SIMILARITIES)
    follow_up = QuestionPart(koalas.question, "What do they eat? koalas", koalas.hits)

    answer = compose_compound_answer([part, follow_up])

    assert "\nWhat do they eat?\n" in answer.content
    assert "What do they eat? koalas" not in answer.content
    assert "eucalyptus leaves" in answer.content


def test_compound_answer_max_sentences_below_one_raises():
    with pytest.raises(ValueError):
        compose_compound_answer(zebra_and_koala_parts(), max_sentences=0)
