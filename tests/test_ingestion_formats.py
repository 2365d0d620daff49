"""A real RQ worker ingests one uploaded file of each supported format."""

import pytest

from tests.samples import build_pdf, encrypt_pdf, text_stream

PLAIN = b"Lighthouses guide ships at night. Each one flashes its own pattern so sailors can tell them apart."
MARKDOWN = (b"# Lighthouse keeping\n\nA keeper **trims the wick** every evening.\n\n"
            b"- polish the lens\n- log the weather\n\nSee [the manual](https://example.invalid/manual).\n")
HTML = (b"<!DOCTYPE html><html><head><title>Keepers</title><style>p {color: red}</style>"
        b"<script>var hidden = 'script text';</script></head><body><h1>Keepers</h1>"
        b"<p>The keeper winds the clockwork that turns the lens &amp; its prisms.</p></body></html>")
PDF = build_pdf([text_stream(["The lamp room sits at the top of the tower.", "Its windows face the sea."])])


@pytest.mark.parametrize(
    ("filename", "data", "content_type", "expected_text", "absent_text"),
    [
        ("notes.txt", PLAIN, "text/plain", "flashes its own pattern", None),
        ("keeping.md", MARKDOWN, "text/markdown", "trims the wick", "**"),
        ("keepers.html", HTML, "text/html", "clockwork that turns the lens & its prisms", "script text"),
        ("tower.pdf", PDF, "application/pdf", "lamp room sits at the top", None),
    ],
)
def test_worker_ingests_uploaded_format(api, rq_worker, filename, data, content_type, expected_text, absent_text):
    user = api.register()
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": (filename, data, "application/octet-stream")},
                             data={"title": f"Sample {filename}"})
    assert response.status_code == 202, response.text
    document = response.json()["document"]
    assert document["content_type"] == content_type
    assert document["title"] == f"Sample {filename}"

    ready = api.wait_for_document(user, document["id"])
    assert ready["status"] == "ready", ready["error"]
    assert ready["chunk_count"] >= 1

    results = api.http.post("/search", headers=user["headers"],
                            json={"query": expected_text, "document_ids": [document["id"]]}).json()["results"]
    text = " ".join(result["content"] for result in results)
    assert expected_text in " ".join(text.split())
    if absent_text:
        assert absent_text not in text


def test_encrypted_pdf_fails_with_a_sentence(api, rq_worker):
    user = api.register()
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("locked.pdf", encrypt_pdf(PDF, "secret"), "application/pdf")})
    assert response.status_code == 202
    document = api.wait_for_document(user, response.json()["document"]["id"])
    assert document["status"] == "failed"
    assert document["error"].endswith(".")
    assert "encrypted" in document["error"]
    job = api.wait_for_job(user, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1


def test_zero_page_pdf_fails_once_saying_no_pages(api, rq_worker):
    user = api.register()
    empty = build_pdf([], catalog=b"<< /Type /Catalog >>")
    response = api.http.post("/documents", headers=user["headers"],
                             files={"file": ("empty.pdf", empty, "application/pdf")})
    assert response.status_code == 202
    document = api.wait_for_document(user, response.json()["document"]["id"])
    assert document["status"] == "failed"
    assert "no pages" in document["error"]
    assert "damaged" not in document["error"]
    job = api.wait_for_job(user, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1
