"""GET /openapi.json: the OpenAPI description that sanic-ext builds and shows at /docs."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder

blueprint = Blueprint("docs")


@blueprint.get("/openapi.json")
@openapi.exclude()
async def openapi_json(request: Request):
    return json(SpecificationBuilder().build(request.app).serialize())
