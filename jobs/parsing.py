"""Detect an upload's format and extract its plain text for chunking.

Supported formats are plain text, Markdown, HTML and PDF. The format is decided by the
bytes: a file name or a declared media type only chooses between text formats, and never
makes binary data acceptable. Text must be UTF-8 (with or without a byte order mark), or
UTF-16 or UTF-32 with a byte order mark.

Every function here is pure: no database, no network, no files.
"""

from __future__ import annotations

import codecs
import html
import io
import logging
import re
import unicodedata
from html.parser import HTMLParser

import pypdf
from pypdf import PdfReader

logger = logging.getLogger(__name__)

SUPPORTED_CONTENT_TYPES = ("text/plain", "text/markdown", "text/html", "application/pdf")

NO_TEXT_MESSAGE = "The document contains no extractable text."
PDF_NO_TEXT_MESSAGE = "The PDF contains no extractable text, which usually means it is a scan that needs OCR first."
PDF_ENCRYPTED_MESSAGE = "The PDF could not be read: it is encrypted."
PDF_DAMAGED_MESSAGE = "The PDF could not be read: the file is damaged or not a valid PDF."
PDF_NO_PAGES_MESSAGE = "The PDF has no pages, so it contains no text to index."
PDF_PAGES_DAMAGED_MESSAGE = "The PDF could not be read: none of its pages could be decoded."

# The heuristics for binary data, HTML and Markdown read only this many leading characters.
_SAMPLE_CHARS = 65536

# A text file has almost no C0 control characters besides tab, line feed, form feed and
# carriage return. More than this share of them in the sample, and at least the minimum
# count, means the data is binary. The minimum keeps one stray bell in a short note legal.
_MAX_CONTROL_CHARACTER_SHARE = 0.01
_MIN_BINARY_CONTROL_CHARACTERS = 8


class UnsupportedContentType(Exception):
    """The bytes are not plain text, Markdown, HTML or PDF.

    ``detected`` is the recognised media type, such as ``"image/png"``, or None when the
    data is binary or not in a supported text encoding but matches no known format.
    """

    def __init__(self, detected: str | None = None):
        self.detected = detected
        if detected:
            message = f"Unsupported document type {detected}. Upload plain text, Markdown, HTML or PDF."
        else:
            message = (
                "Unsupported document type: the file is binary or not UTF-8 or UTF-16 text. "
                "Upload plain text, Markdown, HTML or PDF."
            )
        super().__init__(message)


class EmptyDocument(Exception):
    """The upload has no bytes, or only whitespace."""

    def __init__(self, message: str = "The document is empty."):
        super().__init__(message)


class DocumentParseError(Exception):
    """A permanent extraction failure. ``str(error)`` is one sentence that a user can act on."""


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------

# Binary formats recognised by their leading bytes. The list covers common uploads that are
# not supported, so that the rejection can name the format.
_MAGIC_NUMBERS = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"PK\x07\x08", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"\x28\xb5\x2f\xfd", "application/zstd"),
    (b"\x7fELF", "application/x-elf"),
    (b"MZ\x90\x00", "application/vnd.microsoft.portable-executable"),
    (b"\xca\xfe\xba\xbe", "application/java-vm"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (b"\x00asm", "application/wasm"),
    (b"OggS\x00", "audio/ogg"),
    (b"fLaC\x00", "audio/flac"),
    (b"ID3\x02", "audio/mpeg"),
    (b"ID3\x03", "audio/mpeg"),
    (b"ID3\x04", "audio/mpeg"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"{\\rtf", "application/rtf"),
    (b"%!PS", "application/postscript"),
)

_RIFF_FORMATS = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}

_ISO_MEDIA_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"avif": "image/avif",
    b"qt  ": "video/quicktime",
}

# Office Open XML packages are ZIP files, distinguished by the folder of their main part.
_OFFICE_ZIP_MARKERS = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
)

# OpenDocument and EPUB files start with an uncompressed entry named "mimetype" that contains
# their media type. It follows the 30-byte local file header of the first ZIP entry.
_ZIP_MIMETYPE_ENTRY = re.compile(rb"mimetype(application/[a-z0-9.+-]{1,100})")

# Escape (1B) starts terminal colour codes and Ctrl-Z (1A) ends old DOS text files, so
# neither is a sign of binary data.
_CONTROL_CHARACTERS_OF_BINARY = re.compile(r"[\x00-\x08\x0e-\x19\x1c-\x1f\x7f]")

# The XML declaration and comments allowed before the root element of an HTML or SVG file.
# The comment loop is possessive because a lazy comment that may grow past "-->" makes a
# failed match retry every way of splitting the comments, which is exponential.
_MARKUP_PROLOG = r"\A\s*(?:<\?xml[^<>]{0,500}>\s*)?(?:<!--[\s\S]{0,10000}?-->\s*)*+"
_HTML_START = re.compile(_MARKUP_PROLOG + r"<(?:!doctype\s+html|html)\b", re.IGNORECASE)
_SVG_START = re.compile(_MARKUP_PROLOG + r"(?:<!doctype\s+svg[^<>]{0,500}>\s*)?<svg\b", re.IGNORECASE)
_HTML_DOCUMENT_TAG = re.compile(r"<(?:head|body)\b[^<>]{0,500}>", re.IGNORECASE)
_HTML_COMMON_TAG = re.compile(
    r"</?(?:a|article|b|blockquote|br|button|code|div|em|footer|form|h[1-6]|header|hr|i|img|input|"
    r"li|link|main|meta|nav|ol|p|pre|script|section|span|strong|style|table|td|th|title|tr|ul)"
    r"\b[^<>]{0,500}>",
    re.IGNORECASE,
)
# A text without a document tag needs at least this many common tags, and one per this many
# characters, to count as an HTML fragment.
_MIN_HTML_TAGS = 4
_MAX_CHARACTERS_PER_HTML_TAG = 200

_MARKDOWN_FILE_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mkdn")
_HTML_FILE_SUFFIXES = (".html", ".htm", ".xhtml")

_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_MARKDOWN_FEATURES = {
    "fence": re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE),
    "table": re.compile(r"^ {0,3}\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+", re.MULTILINE),
    "link": re.compile(r"!?\[[^\[\]\n]{1,500}\]\([^()\s]{1,2000}\)"),
    "list": re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.MULTILINE),
    "emphasis": re.compile(r"\*\*[^*\n]{1,200}\*\*|`[^`\n]{1,200}`"),
    "quote": re.compile(r"^ {0,3}>[ \t]\S", re.MULTILINE),
}


def detect_content_type(data: bytes, filename: str | None = None, declared: str | None = None) -> str:
    """Return the format of ``data`` as one of SUPPORTED_CONTENT_TYPES.

    The content decides. ``filename`` and ``declared`` only tip the choice between text
    formats: a name ending in .md makes a text Markdown, but "x.pdf" with text in it is text,
    and a PNG declared as text/plain is rejected.

    Raises EmptyDocument when ``data`` is empty or only whitespace, and UnsupportedContentType
    when it is binary, not in a supported encoding, or another known format.
    """
    if not data:
        raise EmptyDocument()
    if data.startswith(b"%PDF-"):
        return "application/pdf"

    known_format = _identify_binary_format(data)
    if known_format is not None:
        raise UnsupportedContentType(known_format)

    text = _decode_text(data)
    sample = text[:_SAMPLE_CHARS]
    if _SVG_START.search(sample):
        raise UnsupportedContentType("image/svg+xml")
    return _classify_text(sample, _lower_or_empty(filename), _media_type(declared))


def _identify_binary_format(data: bytes) -> str | None:
    for magic, media_type in _MAGIC_NUMBERS:
        if data.startswith(magic):
            if media_type == "application/zip":
                return _identify_zip_format(data)
            return media_type
    if data[:4] == b"RIFF" and data[8:12] in _RIFF_FORMATS:
        return _RIFF_FORMATS[data[8:12]]
    # An ISO media file starts with the size of its "ftyp" box, whose first byte is zero.
    if data[:1] == b"\x00" and data[4:8] == b"ftyp":
        return _ISO_MEDIA_BRANDS.get(data[8:12], "video/mp4")
    if data[:3] == b"BZh" and data[4:10] == b"1AY&SY":
        return "application/x-bzip2"
    return None


def _identify_zip_format(data: bytes) -> str:
    mimetype_entry = _ZIP_MIMETYPE_ENTRY.match(data, 30)
    if mimetype_entry:
        return mimetype_entry.group(1).decode("ascii")
    if b"[Content_Types].xml" in data:
        for marker, media_type in _OFFICE_ZIP_MARKERS:
            if marker in data:
                return media_type
    return "application/zip"


def _decode_text(data: bytes) -> str:
    """Decode ``data`` as text, raising EmptyDocument or UnsupportedContentType."""
    try:
        if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            text = _decode_utf32_or_utf16(data)
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        elif b"\x00" in data:
            raise UnsupportedContentType(None)
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedContentType(None) from None

    if not text.strip():
        raise EmptyDocument()
    if "\x00" in text or _looks_binary(text[:_SAMPLE_CHARS]):
        raise UnsupportedContentType(None)
    return text


def _decode_utf32_or_utf16(data: bytes) -> str:
    # FF FE 00 00 is the UTF-32 LE byte order mark, and also the UTF-16 LE one followed by
    # U+0000. Text with U+0000 is rejected later, so trying UTF-32 first loses nothing.
    try:
        return data.decode("utf-32")
    except UnicodeDecodeError:
        return data.decode("utf-16")


def _looks_binary(sample: str) -> bool:
    control_characters = len(_CONTROL_CHARACTERS_OF_BINARY.findall(sample))
    return (
        control_characters >= _MIN_BINARY_CONTROL_CHARACTERS
        and control_characters > len(sample) * _MAX_CONTROL_CHARACTER_SHARE
    )


def _classify_text(sample: str, filename: str, declared: str) -> str:
    if _HTML_START.search(sample):
        return "text/html"
    if filename.endswith(_MARKDOWN_FILE_SUFFIXES) or declared in ("text/markdown", "text/x-markdown"):
        return "text/markdown"

    named_html = filename.endswith(_HTML_FILE_SUFFIXES) or declared in ("text/html", "application/xhtml+xml")
    if named_html and _HTML_COMMON_TAG.search(sample):
        return "text/html"
    if _HTML_DOCUMENT_TAG.search(sample) or _has_many_html_tags(sample):
        return "text/html"

    if _has_markdown_structure(sample):
        return "text/markdown"
    return "text/plain"


def _has_many_html_tags(sample: str) -> bool:
    tags = len(_HTML_COMMON_TAG.findall(sample))
    return tags >= _MIN_HTML_TAGS and tags * _MAX_CHARACTERS_PER_HTML_TAG >= len(sample)


def _has_markdown_structure(sample: str) -> bool:
    """Return whether the sample has clear Markdown structure, not just one stray marker."""
    features = {name for name, pattern in _MARKDOWN_FEATURES.items() if pattern.search(sample)}
    headings = 0
    for _ in _MARKDOWN_HEADING.finditer(sample):
        headings += 1
        if headings == 2:
            break

    if "fence" in features or "table" in features:
        return True
    if headings >= 2 or (headings == 1 and features):
        return True
    if "link" in features and len(features) >= 2:
        return True
    return len(features) >= 3


def _lower_or_empty(value: str | None) -> str:
    return value.strip().lower() if value else ""


def _media_type(content_type: str | None) -> str:
    """Return the lowercased media type of a Content-Type value, without its parameters."""
    return _lower_or_empty(content_type).split(";", 1)[0].strip()


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


def extract_text(data: bytes, content_type: str) -> str:
    """Extract the plain text of a document in one of SUPPORTED_CONTENT_TYPES.

    The result has one space between words, no blank lines at either end, and one blank
    line between paragraphs. Markdown loses its markup but keeps the text of code blocks.
    HTML loses script, style and head contents, and block elements become paragraphs.

    Raises EmptyDocument for empty input, UnsupportedContentType when ``content_type`` is
    not supported or text bytes cannot be decoded, and DocumentParseError when nothing
    readable comes out or the PDF cannot be opened.
    """
    media_type = _media_type(content_type)
    if media_type not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedContentType(media_type or None)
    if not data:
        raise EmptyDocument()

    if media_type == "application/pdf":
        text = _normalize_text(_pdf_to_text(data))
        if not _has_word_character(text):
            raise DocumentParseError(PDF_NO_TEXT_MESSAGE)
        return text

    decoded = _decode_text(data)
    if media_type == "text/markdown":
        decoded = _markdown_to_text(decoded)
    elif media_type == "text/html":
        decoded = _html_to_text(decoded)
    text = _normalize_text(decoded)
    if not _has_word_character(text):
        raise DocumentParseError(NO_TEXT_MESSAGE)
    return text


_WORD_CHARACTER = re.compile(r"[^\W_]")


def _has_word_character(text: str) -> bool:
    return _WORD_CHARACTER.search(text) is not None


# ---------------------------------------------------------------------------------------------
# Whitespace and character normalisation
# ---------------------------------------------------------------------------------------------

_CHARACTER_REPLACEMENTS = str.maketrans({
    "\f": "\n\n",  # a form feed separates pages
    "\v": "\n",
    "\x85": "\n",
    "\u2028": "\n",
    "\u2029": "\n\n",
    "\u00ad": None,  # soft hyphen
    "\u200b": None,  # zero-width space
    "\u2060": None,  # word joiner
    "\ufeff": None,  # byte order mark or zero-width no-break space
    # Latin ligatures, which PDF text often contains, so that "ﬁle" is found by "file".
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
})
_ANSI_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-9;?]{0,32}[ -/]{0,8}[@-~]")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _normalize_text(text: str) -> str:
    """Normalise line breaks, spaces and Unicode composition (NFC) of extracted text.

    Runs of spaces become one space, lines are stripped, and runs of blank lines become one
    blank line. Control characters other than line feed are removed, because PostgreSQL
    text cannot contain NUL and the others only add noise.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_CHARACTER_REPLACEMENTS)
    text = _ANSI_ESCAPE_SEQUENCE.sub("", text)
    text = _CONTROL_CHARACTERS.sub("", text.replace("\t", " "))
    text = unicodedata.normalize("NFC", text)

    lines = []
    previous_blank = True
    for line in text.split("\n"):
        # str.split() without arguments also splits on no-break and other Unicode spaces.
        words = line.split()
        if words:
            lines.append(" ".join(words))
            previous_blank = False
        elif not previous_blank:
            lines.append("")
            previous_blank = True
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------------


def _pdf_to_text(data: bytes) -> str:
    """Return the text of every page, pages separated by a blank line.

    pypdf raises many exception types on malformed files (and MemoryError or RecursionError
    on hostile ones), so every exception is turned into DocumentParseError. A page whose text
    cannot be extracted is skipped and logged, and the document fails only when all pages do.
    """
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _decrypt_with_empty_password(reader)
        page_count = _count_pages(reader)
    except DocumentParseError:
        raise
    except Exception as error:
        logger.warning("PDF open failed error_type=%s error=%s", type(error).__name__, error)
        raise DocumentParseError(PDF_DAMAGED_MESSAGE) from error

    if page_count == 0:
        raise DocumentParseError(PDF_NO_PAGES_MESSAGE)

    # NOTE: pypdf has no time limit, so a hostile content stream can make one page slow to
    # extract. pypdf caps decompressed stream sizes (pypdf.filters.ZLIB_MAX_OUTPUT_LENGTH).
    page_texts = []
    failed_pages = 0
    for index in range(page_count):
        try:
            page_texts.append(reader.pages[index].extract_text())
        except Exception as error:
            failed_pages += 1
            logger.warning("PDF page skipped page=%d pages=%d error_type=%s error=%s",
                           index + 1, page_count, type(error).__name__, error)
    if failed_pages == page_count:
        raise DocumentParseError(PDF_PAGES_DAMAGED_MESSAGE)
    return "\n\n".join(page_texts)


def _count_pages(reader: PdfReader) -> int:
    """Count the pages, taking a catalog without a page tree (no /Pages, or null) as zero pages.

    pypdf (7.1 here) raises PdfReadError for such a catalog, which would read as a damaged file.
    """
    page_tree = reader.trailer["/Root"].get_object().get("/Pages")
    if page_tree is None or isinstance(page_tree.get_object(), pypdf.generic.NullObject):
        return 0
    return len(reader.pages)


def _decrypt_with_empty_password(reader: PdfReader) -> None:
    """Open a PDF that is encrypted only to restrict editing, or raise DocumentParseError.

    Such files have an empty user password, so every PDF viewer opens them without asking.
    """
    # NOTE: pypdf needs the "cryptography" package to decrypt AES. Without it, AES-encrypted
    # PDFs with an empty user password are rejected as encrypted, although viewers open them.
    try:
        result = reader.decrypt("")
    except Exception as error:
        logger.warning("PDF decryption failed error_type=%s error=%s", type(error).__name__, error)
        raise DocumentParseError(PDF_ENCRYPTED_MESSAGE) from error
    if result == pypdf.PasswordType.NOT_DECRYPTED:
        raise DocumentParseError(PDF_ENCRYPTED_MESSAGE)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

# Elements whose contents are never shown as text. Script and style are removed before
# parsing, together with the other raw text elements below.
_HIDDEN_ELEMENTS = frozenset({"head", "template", "noscript", "svg"})
_RAW_TEXT_ELEMENTS = ("script", "style", "iframe", "noembed", "noframes")
_HEAD_ELEMENTS = frozenset({"base", "link", "meta", "noscript", "script", "style", "template", "title"})
_BLOCK_ELEMENTS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "main", "nav", "ol", "p",
    "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
})
_CELL_ELEMENTS = frozenset({"td", "th"})

_TAG_START = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)")
# The rest of a tag after its name, with quoted attribute values that may contain < or >.
_TAG_REST_QUOTED = re.compile(r"""(?:[^<>"']++|"[^"]*+"|'[^']*+')*+>""")
_TAG_REST_PLAIN = re.compile(r"[^<>]*>")
_MAX_TAG_CHARS = 8192
_HTML_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_RAW_TEXT_END = {name: re.compile(rf"</{name}[^<>]*>", re.IGNORECASE) for name in _RAW_TEXT_ELEMENTS}


def _html_to_text(document: str) -> str:
    parser = _TextCollector()
    parser.feed(_simplify_markup(document))
    parser.close()
    return parser.text()


def _simplify_markup(document: str) -> str:
    """Rewrite HTML so that html.parser receives only bare tags, text and character references.

    Comments, declarations, processing instructions and raw text elements such as script are
    removed, tags lose their attributes, and a "<" that starts no tag becomes "&lt;".
    html.parser in CPython 3.11.7 takes quadratic time on some malformed markup (such as
    "<a" repeated without ">") and raises AssertionError on some "<![" sections. This pass
    runs in linear time and leaves the parser none of those inputs.
    """
    output = []
    position = 0
    length = len(document)
    while position < length:
        bracket = document.find("<", position)
        if bracket < 0:
            output.append(document[position:])
            break
        output.append(document[position:bracket])

        tag = _TAG_START.match(document, bracket)
        if tag is None and document.startswith(("<!", "<?", "</"), bracket):
            position = _skip_markup_declaration(document, bracket)
            continue

        tag_end = _find_tag_end(document, tag.end()) if tag else -1
        if tag_end < 0:
            output.append("&lt;")
            position = bracket + 1
            continue

        closing, name = tag.group(1), tag.group(2).lower()
        position = tag_end
        if name in _RAW_TEXT_END:
            # Not passed on, because html.parser would look for the end of a script itself.
            if not closing:
                position = _skip_raw_text(document, position, name)
            continue
        output.append(f"<{closing}{name}>")
    return "".join(output)


def _skip_markup_declaration(document: str, bracket: int) -> int:
    """Return the position after a comment, declaration or instruction that starts at ``bracket``.

    An unclosed one runs to the end of the document, as in browsers.
    """
    if document.startswith("<!--", bracket):
        end = document.find("-->", bracket + 4)
        return len(document) if end < 0 else end + 3
    if document.startswith("<![CDATA[", bracket):
        end = document.find("]]>", bracket + 9)
        return len(document) if end < 0 else end + 3
    end = document.find(">", bracket + 1)
    return len(document) if end < 0 else end + 1


def _find_tag_end(document: str, after_name: int) -> int:
    """Return the position after the ">" that closes a tag, or -1 when the tag is not closed."""
    match = _TAG_REST_QUOTED.match(document, after_name, min(len(document), after_name + _MAX_TAG_CHARS))
    if match is None:
        match = _TAG_REST_PLAIN.match(document, after_name)
    return match.end() if match else -1


def _skip_raw_text(document: str, position: int, name: str) -> int:
    end = _RAW_TEXT_END[name].search(document, position)
    return len(document) if end is None else end.end()


class _TextCollector(HTMLParser):
    """Collect the visible text of simplified HTML, with paragraph breaks at block elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden_depth = {name: 0 for name in _HIDDEN_ELEMENTS}
        self._preformatted_depth = 0

    def text(self) -> str:
        return "".join(self._parts)

    def _hidden(self) -> bool:
        return any(self._hidden_depth.values())

    def handle_starttag(self, tag, attrs):
        # A head that is never closed ends at the first element that cannot be in it.
        if self._hidden_depth["head"] and (tag == "body" or tag not in _HEAD_ELEMENTS):
            self._hidden_depth["head"] = 0
        if tag in _HIDDEN_ELEMENTS:
            self._hidden_depth[tag] += 1
            return
        if tag == "pre":
            self._preformatted_depth += 1
        self._break_before(tag)

    def handle_endtag(self, tag):
        if tag in _HIDDEN_ELEMENTS:
            self._hidden_depth[tag] = max(0, self._hidden_depth[tag] - 1)
            return
        if tag == "pre":
            self._preformatted_depth = max(0, self._preformatted_depth - 1)
        if tag in _BLOCK_ELEMENTS:
            self._parts.append("\n\n")
        elif tag in _CELL_ELEMENTS:
            self._parts.append(" ")

    def handle_data(self, data):
        if self._hidden():
            return
        if self._preformatted_depth:
            self._parts.append(data)
        else:
            # Outside <pre>, HTML shows any run of whitespace, line breaks included, as one space.
            self._parts.append(_HTML_WHITESPACE.sub(" ", data))

    def _break_before(self, tag: str) -> None:
        if self._hidden():
            return
        if tag == "br":
            self._parts.append("\n")
        elif tag == "li":
            self._parts.append("\n- ")
        elif tag in _BLOCK_ELEMENTS:
            self._parts.append("\n\n")
        elif tag in _CELL_ELEMENTS:
            self._parts.append(" ")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_THEMATIC_BREAK_OR_UNDERLINE = re.compile(r"=+|-{2,}|\*{3,}|_{3,}")
_LIST_MARKER = re.compile(r"([-*+]|\d{1,9}[.)])[ \t]+")
_REFERENCE_DEFINITION = re.compile(r" {0,3}\[[^\[\]\n]{1,999}\]:[ \t]*\S")
_HTML_COMMENT = re.compile(r"<!--.*?-->")
_FOOTNOTE_DEFINITION = re.compile(r" {0,3}\[\^[^\[\]\s]{1,100}\]:[ \t]*")

# Inline patterns exclude their own delimiter from the content, so that a failed match stops
# at the next delimiter and a line of any length is processed in linear time.
_CODE_SPAN = re.compile(r"(?<!`)(`+)([^`]+)\1(?!`)")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[([^\[\]\n]{0,1000})\]\([^()\n]{0,2000}\)")
_INLINE_LINK = re.compile(r"\[([^\[\]\n]{0,1000})\]\([^()\n]{0,2000}\)")
_REFERENCE_LINK = re.compile(r"\[([^\[\]\n]{1,1000})\]\[[^\[\]\n]{0,1000}\]")
_FOOTNOTE_REFERENCE = re.compile(r"\[\^[^\[\]\s]{1,100}\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^<>\s]{1,2000}|mailto:[^<>\s]{1,500})>")
_INLINE_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|br|cite|code|del|details|div|em|i|img|ins|kbd|mark|p|q|s|small|span|strong|"
    r"sub|summary|sup|u|var)\b[^<>\n]{0,1000}>",
    re.IGNORECASE,
)
_EMPHASIS = (
    re.compile(r"\*\*(?=[^\s*])([^*\n]{1,500}?)(?<=[^\s*])\*\*"),
    re.compile(r"(?<![\w_])__(?=[^\s_])([^_\n]{1,500}?)(?<=[^\s_])__(?![\w_])"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]{1,500}?)(?<=[^\s*])\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]{1,500}?)(?<=[^\s_])_(?![\w_])"),
    re.compile(r"~~(?=[^\s~])([^~\n]{1,500}?)(?<=[^\s~])~~"),
)
# Escaped punctuation is parked in the Private Use Area while markup is removed, so that
# "\*" is not read as emphasis, and restored afterwards.
_ESCAPE_BASE = 0xF0000
_PARKED_ESCAPE = re.compile("[\U000f0021-\U000f007e]")


def _markdown_to_text(document: str) -> str:
    """Turn Markdown into readable text, keeping code blocks and dropping markup.

    Headings and code blocks become paragraphs of their own, list items keep a "-" or number
    marker, table rows become cells separated by " | ", and link URLs are dropped.
    """
    lines = document.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    output: list[str] = []
    fence: str | None = None
    in_comment = False
    for line in lines:
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                fence = None
                output.append("")
            else:
                output.append(line)
            continue

        if in_comment:
            end = line.find("-->")
            if end < 0:
                continue
            line = line[end + 3:]
            in_comment = False
        line, in_comment = _remove_html_comments(line)

        fence_open = _FENCE_OPEN.match(line)
        # A backtick fence has no backtick after it: "```x```" is inline code.
        if fence_open and not (fence_open.group(1)[0] == "`" and "`" in line[fence_open.end():]):
            fence = fence_open.group(1)
            output.append("")
            continue
        output.extend(_markdown_line_to_text(line))
    return "\n".join(output)


def _markdown_line_to_text(line: str) -> list[str]:
    """Convert one line outside code fences into zero or more lines of text."""
    stripped = line.strip()
    if not stripped:
        return [""]
    # Four spaces of indentation make a code block, unless they nest a list item.
    if line.startswith(("    ", "\t")) and not _LIST_MARKER.match(stripped):
        return [stripped]

    if stripped.startswith(">"):
        stripped = stripped.lstrip("> \t")  # block quote markers, nested or not
        if not stripped:
            return [""]

    if _THEMATIC_BREAK_OR_UNDERLINE.fullmatch(stripped.replace(" ", "")):
        return [""]
    heading = _heading_text(stripped)
    if heading is not None:
        return ["", _strip_inline_markdown(heading), ""]

    footnote = _FOOTNOTE_DEFINITION.match(stripped)
    if footnote:
        return [_strip_inline_markdown(stripped[footnote.end():])]
    if _REFERENCE_DEFINITION.match(stripped):
        return []

    if stripped.startswith("|") or stripped.endswith("|"):
        return _table_row_text(stripped)

    marker = _LIST_MARKER.match(stripped)
    if marker:
        symbol = marker.group(1)
        bullet = "-" if symbol in "-*+" else symbol
        return [f"{bullet} {_strip_inline_markdown(stripped[marker.end():])}"]
    return [_strip_inline_markdown(stripped)]


def _heading_text(stripped: str) -> str | None:
    """Return the text of an ATX heading ("## Title ##"), or None when the line is not one."""
    level = len(stripped) - len(stripped.lstrip("#"))
    if not 1 <= level <= 6:
        return None
    if len(stripped) > level and stripped[level] not in " \t":
        return None
    title = stripped[level:].strip()
    without_closing = title.rstrip("#")
    if without_closing != title and (not without_closing or without_closing[-1] in " \t"):
        title = without_closing.strip()
    return title


def _table_row_text(stripped: str) -> list[str]:
    cells = [cell.strip() for cell in stripped.strip("|").split("|")]
    if all(not cell.strip(":- ") for cell in cells):
        return []  # the row of dashes under the header
    return [" | ".join(_strip_inline_markdown(cell) for cell in cells)]


def _remove_html_comments(line: str) -> tuple[str, bool]:
    """Remove HTML comments from a line and return it with whether a comment stays open."""
    if "<!--" not in line:
        return line, False
    # A comment opened after the last "-->" runs into the following lines. Cutting it first
    # leaves only closed comments, which one regular expression pass removes.
    last_close = line.rfind("-->")
    unclosed = line.find("<!--", last_close + 3 if last_close >= 0 else 0)
    in_comment = unclosed >= 0
    if in_comment:
        line = line[:unclosed]
    return _HTML_COMMENT.sub(" ", line), in_comment


def _strip_inline_markdown(text: str) -> str:
    parts = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        parts.append(_strip_inline_markup(text[position:span.start()]))
        parts.append(span.group(2).strip())
        position = span.end()
    parts.append(_strip_inline_markup(text[position:]))
    return "".join(parts)


def _strip_inline_markup(text: str) -> str:
    if not text:
        return text
    text = _BACKSLASH_ESCAPE.sub(lambda match: chr(_ESCAPE_BASE + ord(match.group(1))), text)
    text = _IMAGE.sub(r"\1", text)
    text = _INLINE_LINK.sub(r"\1", text)
    text = _REFERENCE_LINK.sub(r"\1", text)
    text = _FOOTNOTE_REFERENCE.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _INLINE_HTML_TAG.sub(" ", text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    text = html.unescape(text)
    return _PARKED_ESCAPE.sub(lambda match: chr(ord(match.group()) - _ESCAPE_BASE), text)
