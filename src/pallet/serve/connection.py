"""The HTTP/1.1 connection: uvicorn's httptools protocol with two more bounds.

- Header size: a request whose request line and headers pass `max_header_bytes` is answered
  431 and the connection closed as soon as that many bytes have come, however they are split.
- Time to send the head: a connection that has not finished a request's headers within
  `read_timeout` seconds of opening (or of its previous answer) is answered 408 and closed,
  so slow clients cannot hold connections open. The body's deadline is kept by `read_body`.
"""

from __future__ import annotations

import asyncio
import functools

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from pallet.units import format_duration


class BoundedHttp(HttpToolsProtocol):
    def __init__(self, *args, max_header_bytes: int, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.read_timeout = read_timeout
        self.head_bytes = 0
        self.pending = 0  # bytes received while the head is unfinished
        self.reading_head = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.refusal: tuple[int, str] | None = None

    @classmethod
    def factory(cls, max_header_bytes: int, read_timeout: float):
        """What uvicorn's `http=` takes; picklable, so worker processes get it too."""
        return functools.partial(cls, max_header_bytes=max_header_bytes, read_timeout=read_timeout)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # answered and closing (a refused head): the rest is not read
        if self.head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_clock()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.reading_head and not self.transport.is_closing():
            # The parser holds a header until it ends: count what came while the head is unfinished,
            # so one endless header is refused as it grows, not when it ends.
            self.pending += len(data)
            if self.pending > self.max_header_bytes:
                self.refusal = (431, self._too_large())
                self.send_400_response(self.refusal[1])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes, self.pending, self.reading_head = 0, 0, True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_clock()
        self.reading_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser gave up on; ours when a bound stopped it."""
        status, message = self.refusal or (400, msg)
        self._answer(status, message)

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.max_header_bytes:
            self.refusal = (431, self._too_large())
            raise ValueError(self.refusal[1])  # stops the parser; uvicorn then calls send_400_response

    def _too_large(self) -> str:
        return f"request headers are over the limit of {self.max_header_bytes} bytes (pallet serve --max-header-kb)"

    def _start_clock(self) -> None:
        self._stop_clock()
        self.head_timer = asyncio.get_running_loop().call_later(self.read_timeout, self._too_slow)

    def _stop_clock(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _too_slow(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.reading_head:
            self._answer(408, f"the request's headers did not arrive within {format_duration(self.read_timeout)} "
                              "(pallet serve --read-timeout)")
        else:  # an idle connection
            self.transport.close()

    def _answer(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
