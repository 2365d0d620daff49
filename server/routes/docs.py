"""GET /openapi.json and /docs: the OpenAPI description and a Swagger UI page that renders it.

Swagger UI's script and stylesheet are served from the `swagger-ui-bundle` package under
/docs/assets/, so the page works without reaching a CDN.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import html, json
from swagger_ui_bundle import swagger_ui_path

from server.openapi import build_spec

blueprint = Blueprint("docs")
blueprint.static("/docs/assets", swagger_ui_path, name="assets")

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ragplatform API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <noscript><p>This page needs JavaScript. The description itself is at
    <a href="/openapi.json">/openapi.json</a>.</p></noscript>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


@blueprint.get("/openapi.json")
async def openapi_json(request: Request):
    return json(build_spec())


@blueprint.get("/docs/openapi.json")
async def openapi_json_under_docs(request: Request):
    """Serve the description also where sanic-ext served it, for clients that still read it there."""
    return json(build_spec())


@blueprint.get("/docs")
async def docs_page(request: Request):
    return html(DOCS_PAGE)
