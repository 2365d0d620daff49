"""Health checks and the OpenAPI description."""


def test_health_is_ok_without_token(api):
    response = api.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_each_dependency(api, rq_worker):
    body = api.http.get("/health/ready").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["model"]["status"] == "ok"
    assert set(body["checks"]["queue"]["depth"]) == {"ingestion", "default", "maintenance"}


def test_openapi_lists_the_endpoints(api):
    response = api.http.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/auth/login", "/documents", "/search", "/chat", "/jobs/{job_id}", "/health"):
        assert path in paths, path


def test_docs_page_is_served_without_token(api):
    response = api.http.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
