"""The HTTP/1.1 connection `xmsearch serve` runs: uvicorn's h11 protocol with a deadline on request
headers, which uvicorn lacks (a client that connects and says nothing, or sends its headers a byte at
a time, would hold a connection open for ever). The body has its own deadline in the middleware."""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from xmsearch.settings import get_settings

log = logging.getLogger(__name__)


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {"error": {"code": "request_timeout", "message": f"the request headers took more than {seconds:g} s"}}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, answering 408 and closing a connection whose request headers are not
    complete `XMSEARCH_API_HEADER_TIMEOUT` seconds after it opened (or after the first byte of its
    next request). A class uvicorn names, so that `serve --workers N` processes build it too."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._seconds = get_settings().api_header_timeout
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm()
        elif self._header_timer is None:  # the first bytes of the next request on a kept-alive connection
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self._seconds, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.warning("closed a connection from %s: its request headers took over %g s", self.client, self._seconds)
            self.transport.write(_timeout_response(self._seconds))
            self.transport.close()
