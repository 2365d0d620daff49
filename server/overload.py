"""Load shedding: a worker holding MAX_IN_FLIGHT_REQUESTS refuses new ones at once with 503.

A request that waits behind more work than the worker can finish within its latency budget would
only time out later, after using a database connection and CPU that admitted requests need. So
once a worker has the maximum in flight, further requests get 503 with Retry-After before authentication,
rate limiting or any I/O, and the admitted ones keep their latency. Health checks are always
served, so a shedding worker is not taken for a dead one.

The count is a plain integer in the worker's event loop: one comparison and one increment per
request. A request stops counting when its response starts. For a chat stream that is when its
headers are sent, because a long-lived stream mostly waits and would otherwise hold a slot for
minutes; open streams are bounded by MAX_CONCURRENT_STREAMS per user instead.
"""

from __future__ import annotations

import logging
import math
import time
import weakref

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from server.errors import ServiceUnavailable, error_response
from server.settings import Settings

logger = logging.getLogger(__name__)

SHED_LOG_INTERVAL_SECONDS = 10.0
SHED_MESSAGE = "The server is overloaded. Retry after the seconds in Retry-After."


class InFlightRequests:
    """The count of requests a worker has admitted and not yet responded to, and its maximum."""

    def __init__(self, maximum: int, retry_after_seconds: int):
        self.maximum = maximum
        self.retry_after = str(retry_after_seconds)
        self.count = 0
        self.shed = 0
        self._shed_since_log = 0
        self._last_log = -math.inf

    def admit(self, request: Request) -> HTTPResponse | None:
        """Count the request in, or return the 503 response when the worker is full.

        The response is returned rather than raised, which skips Sanic's exception handling and
        keeps a rejection cheap when rejections are most of the traffic.
        """
        if self.count >= self.maximum:
            self._note_shed()
            return error_response(request, 503, ServiceUnavailable.code, SHED_MESSAGE,
                                  headers={"Retry-After": self.retry_after})
        self.count += 1
        # The finalizer releases the slot once: on the response, or when the request object is
        # freed after its client went away and no response middleware ran.
        request.ctx.in_flight_slot = weakref.finalize(request, self._release)
        return None

    def _release(self) -> None:
        self.count -= 1

    def _note_shed(self) -> None:
        self.shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= SHED_LOG_INTERVAL_SECONDS:
            logger.warning("load shedding, requests rejected with 503 in_flight=%d max_in_flight=%d shed=%d "
                           "shed_total=%d", self.count, self.maximum, self._shed_since_log, self.shed)
            self._last_log = now
            self._shed_since_log = 0


def is_health_check(path: str) -> bool:
    return path == "/health" or path.startswith("/health/")


def install(app: Sanic, settings: Settings) -> None:
    """Register the shedding middleware; call it before other request middleware so it runs first.

    MAX_IN_FLIGHT_REQUESTS=0 installs nothing.
    """
    if settings.max_in_flight_requests == 0:
        return
    in_flight = InFlightRequests(settings.max_in_flight_requests, settings.overload_retry_after_seconds)
    app.ctx.in_flight = in_flight

    async def admit_request(request: Request) -> HTTPResponse | None:
        if is_health_check(request.path):
            return None
        return in_flight.admit(request)

    async def release_request(request: Request, response: HTTPResponse) -> None:
        slot = getattr(request.ctx, "in_flight_slot", None)
        if slot is not None:
            slot()

    app.register_middleware(admit_request, "request")
    app.register_middleware(release_request, "response")
