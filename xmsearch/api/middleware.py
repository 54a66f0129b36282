"""Plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request): the body size
limit and timeout, and the request count and latency metrics labelled by route template, method and
status."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xmsearch.api.errors import error_response

REQUESTS = Counter("xmsearch_http_requests", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "xmsearch_http_request_seconds",
    "Seconds from request to response.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class LimitsAndMetrics:
    """Refuses bodies over `max_body` bytes with 413 (by Content-Length, or while streaming a body
    sent without one) and bodies that stall for `body_timeout` seconds with 408 (a client that sent
    less than its Content-Length holds nothing open), and records every request."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self._declared(scope) > self.max_body:  # refused before the app reads a byte
                await error_response(413, "body_too_large", self._too_large)(scope, receive, sending)
            else:
                await self.app(scope, self._counting(receive), sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status["code"])).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)

    @staticmethod
    def _declared(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body stalled for {self.body_timeout:g} s (it was {seen} bytes so far)"
                ) from None
            seen += len(message.get("body", b""))
            if seen > self.max_body:  # the app's error handlers answer it like any other 413
                raise HTTPException(413, self._too_large)
            return message

        return counted

    @property
    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_body} bytes"
