"""Format detection and text extraction on small real files built by the tests."""

from __future__ import annotations

import codecs

import pypdf
import pytest

from jobs.parsing import (
    PDF_ENCRYPTED_MESSAGE,
    PDF_NO_PAGES_MESSAGE,
    DocumentParseError,
    EmptyDocument,
    UnsupportedContentType,
    detect_content_type,
    extract_text,
)
from tests.samples import build_pdf, encrypt_pdf, text_stream, zip_bytes

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


@pytest.fixture(scope="module")
def two_page_pdf() -> bytes:
    return build_pdf([text_stream(["Hello PDF world.", "Second line here."]), text_stream(["Page two text."])])


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


def test_pdf_magic_is_detected_as_pdf(two_page_pdf):
    assert detect_content_type(two_page_pdf) == "application/pdf"


def test_text_named_pdf_is_plain_text():
    assert detect_content_type(b"Just a note, not a PDF.", filename="x.pdf") == "text/plain"


def test_png_declared_as_text_is_rejected():
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(PNG_BYTES, filename="notes.txt", declared="text/plain")
    assert raised.value.detected == "image/png"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00", "image/gif"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/gzip"),
        (b"\x7fELF\x02\x01\x01\x00", "application/x-elf"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00", "video/mp4"),
        (b"{\\rtf1\\ansi Hello}", "application/rtf"),
    ],
)
def test_known_binary_format_is_named(data, expected):
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(data, declared="text/plain")
    assert raised.value.detected == expected


def test_zip_archive_is_rejected_as_zip():
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(zip_bytes({"notes.txt": b"hello"}), filename="notes.txt")
    assert raised.value.detected == "application/zip"


def test_docx_is_rejected_as_word_document():
    docx = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(docx, filename="report.docx")
    assert raised.value.detected == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_svg_is_rejected_as_image():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><text>Hi</text></svg>'
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(svg, filename="logo.svg")
    assert raised.value.detected == "image/svg+xml"


def test_nul_bytes_are_rejected_as_unknown():
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(b"looks like text\x00but is not")
    assert raised.value.detected is None


def test_invalid_utf8_is_rejected():
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    assert raised.value.detected is None


def test_mostly_control_characters_are_rejected():
    with pytest.raises(UnsupportedContentType):
        detect_content_type(bytes(range(1, 9)) * 20 + b"some text")


def test_rejection_message_names_detected_type():
    with pytest.raises(UnsupportedContentType) as raised:
        detect_content_type(PNG_BYTES)
    assert "image/png" in str(raised.value)
    assert "Markdown, HTML or PDF" in str(raised.value)


def test_empty_bytes_raise_empty_document():
    with pytest.raises(EmptyDocument):
        detect_content_type(b"")


@pytest.mark.parametrize(
    "data",
    [b"   \n\t\r\n  ", codecs.BOM_UTF8 + b"\n\n", codecs.BOM_UTF16_LE + "  \n ".encode("utf-16-le")],
    ids=["ascii", "utf8-bom", "utf16"],
)
def test_whitespace_only_raises_empty_document(data):
    with pytest.raises(EmptyDocument):
        detect_content_type(data)


def test_utf16_with_bom_is_plain_text():
    data = "Hello, UTF-16 world.".encode("utf-16")
    assert data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    assert detect_content_type(data) == "text/plain"


def test_utf16_big_endian_is_plain_text():
    assert detect_content_type(codecs.BOM_UTF16_BE + "Big endian text.".encode("utf-16-be")) == "text/plain"


def test_text_with_ftyp_at_offset_four_is_plain():
    assert detect_content_type(b"the ftyp box starts an MP4 file.") == "text/plain"


def test_plain_prose_is_plain_text():
    prose = b"Meeting notes.\n\nWe agreed to ship on Friday. Costs rose by 3.5% - see the budget.\n"
    assert detect_content_type(prose) == "text/plain"


def test_html_doctype_is_html():
    assert detect_content_type(b"<!DOCTYPE html>\n<title>x</title><p>Hi</p>") == "text/html"


def test_html_after_leading_comment_is_html():
    assert detect_content_type(b"<!-- generated -->\n<html><p>Hi</p></html>", filename="page.txt") == "text/html"


def test_html_body_tag_is_html():
    assert detect_content_type(b"Some preamble\n<body><p>Hello</p></body>") == "text/html"


def test_html_fragment_with_many_tags():
    fragment = b"<div><p>One</p><p>Two <b>bold</b></p><ul><li>Three</li></ul></div>"
    assert detect_content_type(fragment) == "text/html"


def test_text_with_one_tag_is_plain():
    text = b"To make text bold, wrap it in a <b> element. Remember that a < b when a is smaller.\n" * 3
    assert detect_content_type(text) == "text/plain"


def test_html_file_name_allows_one_tag():
    assert detect_content_type(b"<p>Hello there</p>", filename="page.HTML") == "text/html"


def test_declared_html_without_tags_is_plain():
    assert detect_content_type(b"No markup here at all.", declared="text/html; charset=utf-8") == "text/plain"


def test_markdown_file_name_is_markdown():
    assert detect_content_type(b"Just a sentence.", filename="README.md") == "text/markdown"


def test_declared_markdown_is_markdown():
    assert detect_content_type(b"Just a sentence.", declared="text/markdown; charset=UTF-8") == "text/markdown"


def test_markdown_structure_detected_without_name():
    text = b"# Install\n\nRun the [installer](https://example.org/setup).\n\n- step one\n- step two\n"
    assert detect_content_type(text) == "text/markdown"


def test_fenced_code_is_detected_as_markdown():
    assert detect_content_type(b"Example:\n\n```\nprint(1)\n```\n") == "text/markdown"


def test_single_hash_line_is_plain_text():
    assert detect_content_type(b"#1 priority is the release.\nNothing else matters.") == "text/plain"


def test_html_document_named_markdown_is_html():
    assert detect_content_type(b"<!doctype html><p>Hi</p>", filename="page.md") == "text/html"


# ---------------------------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------------------------


def test_plain_text_whitespace_is_normalised():
    data = "  Title\t\there  \r\n\r\n\r\n\r\nFirst\u00a0line \nsecond   line\r\n\n\n".encode()
    assert extract_text(data, "text/plain") == "Title here\n\nFirst line\nsecond line"


def test_utf16_text_is_decoded():
    greeting = "Gr\u00fc\u00dfe aus K\u00f6ln."
    assert extract_text(greeting.encode("utf-16"), "text/plain") == greeting


def test_utf8_byte_order_mark_is_dropped():
    assert extract_text(codecs.BOM_UTF8 + b"Hello.", "text/plain") == "Hello."


def test_control_characters_are_removed():
    data = b"\x1b[31mError\x1b[0m: disk\x07 full\x0c next page"
    assert extract_text(data, "text/plain") == "Error: disk full\n\nnext page"


def test_unicode_is_composed_and_ligatures_expanded():
    data = "Cafe\u0301 \ufb01le".encode()
    assert extract_text(data, "text/plain") == "Caf\u00e9 file"


def test_content_type_parameters_are_ignored():
    assert extract_text(b"Hello.", "Text/Plain; charset=utf-8") == "Hello."


def test_unsupported_content_type_argument_is_rejected():
    with pytest.raises(UnsupportedContentType) as raised:
        extract_text(b"Hello.", "image/png")
    assert raised.value.detected == "image/png"


def test_binary_bytes_as_text_are_rejected():
    with pytest.raises(UnsupportedContentType):
        extract_text(PNG_BYTES, "text/plain")


def test_extracting_empty_bytes_raises_empty():
    with pytest.raises(EmptyDocument):
        extract_text(b"", "text/plain")


def test_punctuation_only_text_has_no_text():
    with pytest.raises(DocumentParseError) as raised:
        extract_text(b"... --- !!! ***", "text/plain")
    assert str(raised.value) == "The document contains no extractable text."


def test_huge_single_line_is_extracted():
    line = b"word " * 400_000
    assert extract_text(line, "text/plain") == ("word " * 400_000).strip()


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html>
<html>
<head><title>Page title</title><meta charset="utf-8">
<style>body { color: red; }</style>
<script>var message = "<p>not text</p>"; if (a < b) {}</script>
</head>
<body>
<h1>Main &amp; only heading</h1>
<p>Hello <b>bold</b>&nbsp;world, caf&eacute; &#8364;5.</p>
<script type="module">alert("hidden")</script>
<ul><li>first item</li><li>second item</li></ul>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ada</td><td>36</td></tr></table>
<pre>line one
line two</pre>
<noscript>Enable JavaScript</noscript>
<a href="/x" title="a > b">link text</a><br>after break
<!-- a comment -->
</body>
</html>"""


@pytest.fixture(scope="module")
def page_text() -> str:
    return extract_text(PAGE, "text/html")


def test_html_drops_script_contents(page_text):
    assert "not text" not in page_text
    assert "alert" not in page_text


def test_html_drops_style_contents(page_text):
    assert "color" not in page_text


def test_html_drops_head_contents(page_text):
    assert "Page title" not in page_text


def test_html_drops_noscript_and_comments(page_text):
    assert "Enable JavaScript" not in page_text
    assert "a comment" not in page_text


def test_html_unescapes_entities(page_text):
    assert "Main & only heading" in page_text
    assert "Hello bold world, caf\u00e9 \u20ac5." in page_text


def test_html_blocks_become_paragraphs(page_text):
    paragraphs = page_text.split("\n\n")
    assert paragraphs[0] == "Main & only heading"
    assert paragraphs[1] == "Hello bold world, caf\u00e9 \u20ac5."


def test_html_list_items_become_bullet_lines(page_text):
    assert "- first item\n- second item" in page_text


def test_html_table_rows_become_lines(page_text):
    assert "Name Age" in page_text
    assert "Ada 36" in page_text


def test_html_pre_keeps_line_breaks(page_text):
    assert "line one\nline two" in page_text


def test_quoted_angle_bracket_stays_in_tag(page_text):
    assert "link text\nafter break" in page_text
    assert '"' not in page_text


def test_html_unclosed_head_ends_at_content():
    assert extract_text(b"<html><head><title>T</title><p>Visible text.</p></html>", "text/html") == "Visible text."


def test_html_unclosed_script_hides_the_rest():
    assert extract_text(b"<p>Shown.</p><script>var x = 1; <p>hidden</p>", "text/html") == "Shown."


def test_html_script_only_has_no_text():
    with pytest.raises(DocumentParseError) as raised:
        extract_text(b"<html><script>document.write('hi')</script></html>", "text/html")
    assert str(raised.value) == "The document contains no extractable text."


def test_deeply_nested_html_is_extracted():
    depth = 20_000  # far beyond Python's recursion limit
    document = ("<div>" * depth + "deep text" + "</div>" * depth).encode()
    assert extract_text(document, "text/html") == "deep text"


def test_html_stray_brackets_kept_as_text():
    # html.parser of CPython 3.11.7 needs quadratic time for "<a" repeated without ">".
    document = ("<p>" + "<a" * 100_000 + "</p>").encode()
    assert extract_text(document, "text/html") == "<a" * 100_000


@pytest.mark.parametrize(
    "document",
    ["<p>Kept.</p><![" * 1000, "<p>Kept.</p><![if x]>", "<p>Kept.</p><?php echo 1; ?>", "<p>Kept.</p></ 3>"],
    ids=["marked-sections", "conditional-section", "processing-instruction", "bogus-end-tag"],
)
def test_html_declarations_are_dropped_without_error(document):
    assert extract_text(document.encode(), "text/html").startswith("Kept.")


def test_html_cdata_section_is_dropped():
    assert extract_text(b"<p>Before <![CDATA[ x < y ]]> after.</p>", "text/html") == "Before after."


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

MARKDOWN = b"""---
title: Guide
---
# Getting **started** #

Read the [manual](https://example.org/manual "Manual") or see ![the diagram](diagram.png).
Use `pip install *pkg*` and set \\*literal stars\\* in snake_case_names, _emphasis_ and __strong__.
A footnote[^1] and a <https://example.org/auto> link. AT&amp;T pays.

Setext heading
--------------

```python
def main(*args, **kwargs):
    return 42
```

| Name | Age |
|------|----:|
| Ada  | 36  |

* first bullet
+ second bullet
1. numbered
> quoted ~~old~~ text
<!-- hidden
comment -->
[manual]: https://example.org/manual
[^1]: The footnote text.
"""


@pytest.fixture(scope="module")
def markdown_text() -> str:
    return extract_text(MARKDOWN, "text/markdown")


def test_markdown_heading_loses_hashes_and_emphasis(markdown_text):
    assert "Getting started" in markdown_text.split("\n\n")
    assert "#" not in markdown_text


def test_markdown_links_drop_urls(markdown_text):
    assert "Read the manual or see the diagram." in markdown_text
    assert "diagram.png" not in markdown_text
    assert "https://example.org/manual" not in markdown_text


def test_markdown_autolink_keeps_its_url(markdown_text):
    assert "a https://example.org/auto link" in markdown_text


def test_markdown_inline_code_keeps_its_text(markdown_text):
    assert "Use pip install *pkg* and" in markdown_text


def test_markdown_escaped_stars_stay_literal(markdown_text):
    assert "*literal stars*" in markdown_text


def test_markdown_emphasis_markers_are_removed(markdown_text):
    assert "snake_case_names, emphasis and strong." in markdown_text
    assert "quoted old text" in markdown_text


def test_markdown_entities_are_unescaped(markdown_text):
    assert "AT&T pays." in markdown_text


def test_markdown_setext_heading_becomes_paragraph(markdown_text):
    assert "Setext heading" in markdown_text.split("\n\n")
    assert "---" not in markdown_text


def test_markdown_code_block_keeps_its_text(markdown_text):
    assert "def main(*args, **kwargs):\nreturn 42" in markdown_text
    assert "```" not in markdown_text


def test_markdown_table_rows_keep_cells(markdown_text):
    assert "Name | Age\nAda | 36" in markdown_text


def test_markdown_list_markers_become_bullets(markdown_text):
    assert "- first bullet\n- second bullet\n1. numbered" in markdown_text


def test_markdown_comments_and_definitions_dropped(markdown_text):
    assert "hidden" not in markdown_text
    assert "[manual]" not in markdown_text


def test_markdown_footnote_keeps_its_text(markdown_text):
    assert "A footnote and" in markdown_text
    assert markdown_text.endswith("The footnote text.")


def test_markdown_quoted_heading_loses_markers():
    document = b"> # Quoted heading\n> > nested *quote*\n>\n> [ref]: https://example.org\n"
    assert extract_text(document, "text/markdown") == "Quoted heading\n\nnested quote"


def test_markdown_unclosed_fence_keeps_rest():
    assert extract_text(b"Intro.\n\n```\nx = [1, 2]\n", "text/markdown") == "Intro.\n\nx = [1, 2]"


def test_markdown_unclosed_markers_on_huge_line():
    line = ("**a [b `c _d <!-- " * 50_000).encode()
    text = extract_text(line, "text/markdown")
    assert text.startswith("**a [b `c _d")


# ---------------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------------


def test_pdf_text_extracted_page_by_page(two_page_pdf):
    assert extract_text(two_page_pdf, "application/pdf") == "Hello PDF world.\nSecond line here.\n\nPage two text."


def test_encrypted_pdf_is_rejected(two_page_pdf):
    with pytest.raises(DocumentParseError) as raised:
        extract_text(encrypt_pdf(two_page_pdf, user_password="secret"), "application/pdf")
    assert str(raised.value) == PDF_ENCRYPTED_MESSAGE


def test_owner_password_pdf_is_read(two_page_pdf):
    encrypted = encrypt_pdf(two_page_pdf, user_password="")
    assert extract_text(encrypted, "application/pdf").startswith("Hello PDF world.")


def test_truncated_pdf_raises_parse_error(two_page_pdf):
    with pytest.raises(DocumentParseError) as raised:
        extract_text(two_page_pdf[: len(two_page_pdf) // 2], "application/pdf")
    assert str(raised.value) == "The PDF could not be read: the file is damaged or not a valid PDF."


def test_pdf_header_with_garbage_raises():
    with pytest.raises(DocumentParseError):
        extract_text(b"%PDF-1.7\n" + b"garbage " * 100, "application/pdf")


def test_pdf_page_tree_loop_raises():
    with pytest.raises(DocumentParseError):
        extract_text(build_pdf([text_stream(["x"])], kids="2 0 R"), "application/pdf")


def test_pdf_deeply_nested_content_raises():
    nested = b"BT /F1 12 Tf " + b"[" * 100_000 + b"(x)" + b"]" * 100_000 + b" TJ ET"
    with pytest.raises(DocumentParseError):
        extract_text(build_pdf([nested]), "application/pdf")


def test_pdf_undecodable_page_is_skipped():
    broken_page = ("/Filter /FlateDecode ", b"these bytes are not zlib data")
    pdf = build_pdf([text_stream(["Good page."]), broken_page, text_stream(["Last page."])])
    assert extract_text(pdf, "application/pdf") == "Good page.\n\nLast page."


def test_any_pypdf_exception_becomes_parse_error(two_page_pdf, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyError("/Unexpected")

    monkeypatch.setattr(pypdf.PageObject, "extract_text", explode)
    with pytest.raises(DocumentParseError) as raised:
        extract_text(two_page_pdf, "application/pdf")
    assert str(raised.value) == "The PDF could not be read: none of its pages could be decoded."


@pytest.mark.parametrize("catalog", [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Catalog >>",
                                     b"<< /Type /Catalog /Pages null >>"])
def test_pdf_with_zero_pages_says_so(catalog):
    # A catalog without a page tree made pypdf raise, which was reported as a damaged file.
    with pytest.raises(DocumentParseError) as raised:
        extract_text(build_pdf([], catalog=catalog), "application/pdf")
    assert str(raised.value) == PDF_NO_PAGES_MESSAGE


def test_pdf_without_text_suggests_ocr():
    with pytest.raises(DocumentParseError) as raised:
        extract_text(build_pdf([b"0 0 m 100 100 l S"]), "application/pdf")
    assert "no extractable text" in str(raised.value)
    assert "OCR" in str(raised.value)
