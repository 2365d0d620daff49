"""Request bodies: JSON parsing (400 when malformed) and pydantic validation (422 with details)."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sanic import Request

from server.errors import BadRequest, UnsupportedMediaType, ValidationFailed

Model = TypeVar("Model", bound=BaseModel)


def read_json(request: Request) -> object:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Send the body as application/json, not {content_type}.")
    try:
        return json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None


def validate(model: type[Model], data: object) -> Model:
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.",
                               details=[{"field": "body", "problem": "must be an object"}])
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(part) for part in item["loc"]) or "body", "problem": item["msg"]}
            for item in error.errors()
        ]
        fields = ", ".join(sorted({detail["field"] for detail in details}))
        raise ValidationFailed(f"The request body is invalid: check {fields}.", details=details) from None


def parse_body(request: Request, model: type[Model]) -> Model:
    return validate(model, read_json(request))
