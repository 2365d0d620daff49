"""POST /search: modes, limits, filters, ordering and caching, over HTTP with a real worker."""

import pytest

PASSAGES = {
    "Baking": "Sourdough bread rises slowly because wild yeast ferments the dough overnight.",
    "Astronomy": "A telescope with a larger aperture gathers more light and shows fainter galaxies.",
    "Gardening": "Tomato plants need full sun, deep watering and a sturdy stake to climb.",
    "Networking": "TCP retransmits lost segments, while UDP leaves reliability to the application.",
}


@pytest.fixture
def corpus(api, rq_worker):
    user = api.register()
    ids = {}
    for title, text in PASSAGES.items():
        ids[title] = api.upload_text(user, title, text, metadata={"topic": title.lower()}).json()["document"]["id"]
    for document_id in ids.values():
        assert api.wait_for_document(user, document_id)["status"] == "ready"
    return user, ids


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_each_mode_finds_the_matching_passage_first(api, corpus, mode):
    user, ids = corpus
    body = api.http.post("/search", headers=user["headers"],
                         json={"query": "telescope aperture light", "mode": mode}).json()
    assert body["results"][0]["document_id"] == ids["Astronomy"]
    assert body["results"][0]["document_title"] == "Astronomy"
    assert body["results"][0]["rank"] == 1


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_scores_do_not_increase_with_rank(api, corpus, mode):
    user, _ = corpus
    results = api.http.post("/search", headers=user["headers"],
                            json={"query": "bread yeast and tomato plants", "mode": mode}).json()["results"]
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert [result["rank"] for result in results] == list(range(1, len(results) + 1))


def test_vector_search_returns_limit_hits(api, corpus):
    user, _ = corpus
    results = api.http.post("/search", headers=user["headers"],
                            json={"query": "anything at all", "mode": "vector", "limit": 3}).json()["results"]
    assert len(results) == 3


def test_document_filter_limits_results(api, corpus):
    user, ids = corpus
    results = api.http.post("/search", headers=user["headers"],
                            json={"query": "telescope", "document_ids": [ids["Gardening"]]}).json()["results"]
    assert {result["document_id"] for result in results} == {ids["Gardening"]}


def test_malformed_document_id_is_422(api):
    # It used to be dropped, and the search returned 200 with no results.
    user = api.register()
    response = api.http.post("/search", headers=user["headers"],
                             json={"query": "telescope", "document_ids": ["not-a-uuid"]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "document_ids[0]"


def test_metadata_filter_limits_results(api, corpus):
    user, ids = corpus
    results = api.http.post("/search", headers=user["headers"],
                            json={"query": "telescope", "metadata": {"topic": "networking"}}).json()["results"]
    assert {result["document_id"] for result in results} == {ids["Networking"]}


def test_repeated_search_is_served_from_cache(api, corpus):
    user, _ = corpus
    query = {"query": "sourdough fermentation", "limit": 2}
    first = api.http.post("/search", headers=user["headers"], json=query)
    second = api.http.post("/search", headers=user["headers"], json=query)
    assert first.json()["cached"] is False
    assert first.headers["x-cache"] == "miss"
    assert second.json()["cached"] is True
    assert second.headers["x-cache"] == "hit"
    assert second.json()["results"] == first.json()["results"]


def test_new_document_invalidates_cached_results(api, corpus):
    user, _ = corpus
    query = {"query": "volcano eruption lava", "mode": "keyword"}
    assert api.http.post("/search", headers=user["headers"], json=query).json()["results"] == []
    document_id = api.upload_text(user, "Geology", "Lava flows after a volcano eruption cool into basalt.").json()
    api.wait_for_document(user, document_id["document"]["id"])
    after = api.http.post("/search", headers=user["headers"], json=query).json()
    assert after["cached"] is False
    assert after["results"][0]["document_title"] == "Geology"
