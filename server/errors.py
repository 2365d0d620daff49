"""Domain errors and their one translation into the error JSON of the API.

Handlers and queries raise `ApiError` subclasses; `install_error_handlers` turns those, Sanic's
own exceptions and anything unexpected into `{"error": {"code", "message", "request_id"}}`.
"""

from __future__ import annotations

import logging
import uuid

from sanic import Request, Sanic
from sanic.exceptions import RequestCancelled, SanicException
from sanic.response import HTTPResponse, json

from db.tenancy import DatabaseUnavailable
from server.logs import request_id_var

logger = logging.getLogger(__name__)

# nginx's status for a request whose client closed the connection before the response.
CLIENT_CLOSED_REQUEST = 499


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict] | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    status, code = 422, "validation_failed"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


# Sanic raises its own exceptions before a handler runs (unknown route, body too large...).
SANIC_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    503: "service_unavailable",
}


def ensure_request_id(request: Request) -> str:
    """Return the request's id, making one when the request failed before the middleware ran."""
    request_id = getattr(request.ctx, "request_id", None)
    if request_id is None:
        request_id = request.ctx.request_id = uuid.uuid4().hex
        request_id_var.set(request_id)
    return request_id


def error_response(request: Request, status: int, code: str, message: str, *, details: list[dict] | None = None,
                   headers: dict | None = None) -> HTTPResponse:
    body = {"error": {"code": code, "message": message, "request_id": ensure_request_id(request)}}
    if details:
        body["error"]["details"] = details
    return json(body, status=status, headers=headers)


def install_error_handlers(app: Sanic) -> None:
    @app.exception(ApiError)
    async def handle_api_error(request: Request, error: ApiError) -> HTTPResponse:
        return error_response(request, error.status, error.code, error.message, details=error.details,
                              headers=error.headers)

    @app.exception(DatabaseUnavailable)
    async def handle_database_unavailable(request: Request, error: DatabaseUnavailable) -> HTTPResponse:
        return error_response(request, 503, ServiceUnavailable.code, error.message,
                              headers={"Retry-After": str(error.retry_after)})

    @app.exception(SanicException)
    async def handle_sanic_error(request: Request, error: SanicException) -> HTTPResponse:
        status = getattr(error, "status_code", 500) or 500
        if status >= 500:
            logger.error("request failed status=%s error=%s", status, type(error).__name__)
            return error_response(request, status, "internal_error", "The server failed to process the request.")
        code = SANIC_STATUS_CODES.get(status, "bad_request")
        message = str(error) if error.message else code.replace("_", " ").capitalize() + "."
        if status == 413:
            message = "The request body is larger than the server accepts."
        return error_response(request, status, code, message, headers=getattr(error, "headers", None))

    @app.exception(RequestCancelled)
    async def handle_client_gone(request: Request, error: RequestCancelled) -> HTTPResponse:
        # Sanic cancels the handler when its client disconnects, and without this handler it
        # records a 500 that nobody receives. That happens to every readiness probe which gives
        # up on a server still starting, so the access line and the metrics would count it as a
        # server error. The response below is not sent, because the connection is closed.
        return error_response(request, CLIENT_CLOSED_REQUEST, "client_closed_request",
                              "The client closed the connection before the response was sent.")

    @app.exception(Exception)
    async def handle_unexpected(request: Request, error: Exception) -> HTTPResponse:
        logger.exception("request failed unexpectedly error=%s", type(error).__name__)
        return error_response(request, 500, "internal_error", "The server failed to process the request.")
