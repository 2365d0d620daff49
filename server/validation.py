"""Request bodies: JSON parsing (400 when malformed) and pydantic validation (422 with details)."""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError
from sanic import Request

from server.errors import BadRequest, UnsupportedMediaType, ValidationFailed

Model = TypeVar("Model", bound=BaseModel)


def reject_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("string_blank", "String should contain a character other than whitespace")
    return value


# A string field that, like an empty one, is invalid when it holds only whitespace.
NonBlankStr = Annotated[str, AfterValidator(reject_blank)]


def read_json(request: Request) -> object:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Send the body as application/json, not {content_type}.")
    try:
        return json.loads(request.body or b"", parse_constant=_reject_constant)
    except RecursionError:
        # Valid JSON, but deeper than the parser goes; no request of this API needs such depth.
        raise BadRequest("The request body is nested too deeply to be read as JSON.") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None


def _reject_constant(name: str) -> None:
    """Reject NaN and Infinity, which Python's json accepts but JSON does not define."""
    raise ValueError(f"{name} is not a JSON value")


def _is_storable(text: str) -> bool:
    """Tell whether PostgreSQL can store the text: no NUL character and no unpaired surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_unstorable_string(value: object, path: str = "body") -> str | None:
    """Return the path of the first key or string value that PostgreSQL text cannot store."""
    if isinstance(value, str):
        return None if _is_storable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = (None if _is_storable(key) else path) or find_unstorable_string(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable_string(item, f"{path}.{index}")
            if found:
                return found
    return None


def reject_unstorable_strings(value: object) -> None:
    try:
        found = find_unstorable_string(value)
    except RecursionError:
        raise ValidationFailed("The request body is nested too deeply.",
                               details=[{"field": "body", "problem": "nested too deeply"}]) from None
    if found:
        field = found.removeprefix("body.")
        raise ValidationFailed(
            f"{field} contains a NUL character or an unpaired surrogate, which text cannot hold.",
            details=[{"field": field, "problem": "contains a NUL character or an unpaired surrogate"}],
        )


def validate(model: type[Model], data: object) -> Model:
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.",
                               details=[{"field": "body", "problem": "must be an object"}])
    reject_unstorable_strings(data)
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
