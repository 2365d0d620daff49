"""The OpenAPI description at /openapi.json and the Swagger UI page at /docs."""

import re

import pytest
from openapi_spec_validator import validate

from server.app import REQUEST_ID_PATTERN, create_app
from server.openapi import build_spec

# Each route of the HTTP API contract with the statuses it documents.
CONTRACT = {
    ("post", "/auth/register"): {201, 403, 409, 422},
    ("post", "/auth/login"): {200, 401, 422},
    ("get", "/users/me"): {200, 401},
    ("post", "/users"): {201, 403, 409, 422},
    ("post", "/documents"): {200, 202, 413, 415, 422, 429},
    ("get", "/documents"): {200, 422},
    ("get", "/documents/{document_id}"): {200, 404},
    ("delete", "/documents/{document_id}"): {204, 404},
    ("get", "/documents/{document_id}/events"): {200, 404},
    ("get", "/jobs/{job_id}"): {200, 404},
    ("post", "/search"): {200, 400, 422},
    ("post", "/chat"): {200, 400, 422},
    ("get", "/chat/messages/{message_id}/events"): {200, 404},
    ("get", "/chat/sessions"): {200, 422},
    ("get", "/chat/sessions/{session_id}/messages"): {200, 404, 422},
    ("get", "/health"): {200},
    ("get", "/health/ready"): {200, 503},
    ("get", "/usage"): {200, 422},
}
PUBLIC_ROUTES = {("get", "/health"), ("get", "/health/ready"), ("post", "/auth/register"), ("post", "/auth/login")}
LIST_ROUTES = ("/documents", "/chat/sessions", "/chat/sessions/{session_id}/messages", "/usage")
DOCS_PATHS = {"/docs", "/openapi.json", "/docs/openapi.json"}
DICT_METHODS = {"clear", "copy", "fromkeys", "get", "keys", "pop", "popitem", "setdefault", "update", "values"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return build_spec()


@pytest.fixture(scope="module")
def app_routes() -> set[tuple[str, str]]:
    """The (method, OpenAPI path) of every route the app serves, except the docs themselves."""
    app = create_app()
    routes = set()
    for route in app.router.routes:
        path = "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path).strip("/")
        if path in DOCS_PATHS or path.startswith("/docs/assets"):
            continue
        routes.update((method.lower(), path) for method in route.methods if method not in ("HEAD", "OPTIONS"))
    return routes


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): operation for path, item in spec["paths"].items() for method, operation in item.items()}


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def parameters_by_name(spec: dict, method: str, path: str) -> dict[str, dict]:
    return {parameter["name"]: parameter for parameter in spec["paths"][path][method].get("parameters", [])}


def test_spec_is_valid_openapi(spec):
    validate(spec)


def test_spec_describes_every_app_route(spec, app_routes):
    assert app_routes - set(operations(spec)) == set()


def test_spec_has_no_unserved_route(spec, app_routes):
    assert set(operations(spec)) - app_routes == set()


@pytest.mark.parametrize(("method", "path"), sorted(CONTRACT))
def test_contract_route_has_its_statuses(spec, method, path):
    operation = spec["paths"][path][method]
    assert CONTRACT[(method, path)] <= {int(status) for status in operation["responses"]}


def test_every_response_has_a_schema(spec):
    for (method, path), operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if status in ("204",):
                continue
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            assert response.get("content"), f"{method} {path} {status}"


def test_errors_use_the_error_body(spec):
    for (method, path), operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if int(status) < 400 or (method, path, status) == ("get", "/health/ready", "503"):
                continue
            name = response["$ref"].rsplit("/", 1)[1]
            schema = spec["components"]["responses"][name]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path} {status}"


def test_error_body_has_code_message_and_details(spec):
    error = resolve(spec, spec["components"]["schemas"]["ErrorBody"]["properties"]["error"])
    assert set(error["required"]) == {"code", "message", "request_id"}
    assert "details" in error["properties"]


def test_search_mode_is_enum_of_strings(spec):
    body = resolve(spec, spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    mode = body["properties"]["mode"]
    assert mode["type"] == "string"
    assert mode["enum"] == ["hybrid", "vector", "keyword"]
    assert mode["default"] == "hybrid"


def test_user_role_is_enum_of_strings(spec):
    body = resolve(spec, spec["paths"]["/users"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"]["role"]["type"] == "string"
    assert body["properties"]["role"]["enum"] == ["member", "admin"]


def test_no_schema_lists_dict_methods(spec):
    for name, schema in spec["components"]["schemas"].items():
        for property_name, property_schema in schema.get("properties", {}).items():
            assert not DICT_METHODS & set(property_schema.get("properties", {})), f"{name}.{property_name}"


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_list_route_documents_limit_and_cursor(spec, path):
    parameters = parameters_by_name(spec, "get", path)
    assert parameters["limit"]["in"] == "query"
    assert parameters["limit"]["schema"]["minimum"] == 1
    assert parameters["limit"]["schema"]["maximum"] == 100
    assert parameters["limit"]["schema"]["default"] == 20
    assert parameters["cursor"]["in"] == "query"


def test_documents_status_filter_is_enum(spec):
    status = parameters_by_name(spec, "get", "/documents")["status"]
    assert status["schema"]["enum"] == ["queued", "processing", "ready", "failed"]


def test_upload_takes_json_or_multipart(spec):
    content = spec["paths"]["/documents"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"


def test_bearer_scheme_guards_all_but_public_routes(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer",
                                                                   "bearerFormat": "JWT"}
    for key, operation in operations(spec).items():
        expected = [] if key in PUBLIC_ROUTES else [{"bearerAuth": []}]
        assert operation["security"] == expected, key


def test_request_id_header_states_the_pattern(spec):
    header = spec["components"]["responses"]["NotFound"]["headers"]["X-Request-ID"]
    assert REQUEST_ID_PATTERN.pattern in header["description"]


def test_openapi_json_is_served_without_token(api, spec):
    response = api.http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == spec


def test_docs_page_loads_no_remote_asset(api):
    page = api.http.get("/docs").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert [source for source in sources if "//" in source] == []


def test_docs_page_assets_are_served(api):
    page = api.http.get("/docs").text
    for source in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page):
        response = api.http.get(source)
        assert response.status_code == 200, source
        assert len(response.content) > 1000, source
