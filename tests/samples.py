"""Small real files built for the tests: PDFs with text, encrypted PDFs and zip archives."""

from __future__ import annotations

import io
import zipfile

import pypdf


def _pdf_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})"


def text_stream(lines: list[str]) -> bytes:
    """Return a page content stream that shows each line in Helvetica, one below the other."""
    operators = " T* ".join(f"{_pdf_string(line)} Tj" for line in lines)
    return f"BT /F1 12 Tf 14 TL 72 720 Td {operators} ET".encode("latin-1")


def build_pdf(page_streams: list[bytes | tuple[str, bytes]], kids: str | None = None,
              catalog: bytes = b"<< /Type /Catalog /Pages 2 0 R >>") -> bytes:
    """Return a PDF with one page per content stream and a correct cross-reference table.

    A stream given as (dictionary entries, data) gets those entries, such as a /Filter.
    ``kids`` replaces the page tree's /Kids array, to build broken page trees, and ``catalog``
    replaces the document catalog (object 1).
    """
    objects: dict[int, bytes] = {
        1: catalog,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    page_ids = []
    for index, stream in enumerate(page_streams):
        page_id, content_id = 4 + 2 * index, 5 + 2 * index
        page_ids.append(page_id)
        entries, data = stream if isinstance(stream, tuple) else ("", stream)
        objects[page_id] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
        objects[content_id] = f"<< /Length {len(data)} {entries}>>\nstream\n".encode() + data + b"\nendstream"
    kids = kids or " ".join(f"{page_id} 0 R" for page_id in page_ids)
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()

    output = io.BytesIO()
    output.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = output.tell()
        output.write(f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n")
    xref_offset = output.tell()
    size = max(objects) + 1
    output.write(f"xref\n0 {size}\n0000000000 65535 f \n".encode())
    for number in range(1, size):
        output.write(f"{offsets[number]:010d} 00000 n \n".encode())
    output.write(f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n".encode())
    return output.getvalue()


def encrypt_pdf(pdf: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return output.getvalue()
