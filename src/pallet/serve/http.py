"""Reading request bodies within limits and writing JSON answers; shared by every protocol."""

from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from pallet.model import Model
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from pallet.units import format_duration

JSON = "application/json"
DIGITS = re.compile(r"[0-9]{1,18}")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes (before or after gzip),
    and with 408 when it has not all arrived within `timeout` seconds."""
    length = request.headers.get("content-length")
    if length is not None and DIGITS.fullmatch(length) and int(length) > limit:
        raise PayloadTooLarge(f"request body is {int(length)} bytes; the limit is {limit} (--max-body-mb)")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes (--max-body-mb)")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {format_duration(timeout)} (pallet serve --read-timeout); "
                             f"{size} bytes came") from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, limit)
    elif encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding '{encoding}' is not supported; use gzip, deflate or none")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The whole decompressed body: every gzip member, and refused when truncated or too large."""
    parts, size = [], 0
    while body:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, limit + 1 - size)
        except zlib.error as e:
            raise BadRequest(f"request body is not valid {encoding} data: {e}") from None
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed request body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest(f"request body is truncated {encoding} data")
        parts.append(data)
        body = inflater.unused_data if encoding == "gzip" else b""
        if encoding == "deflate" and inflater.unused_data:
            raise BadRequest("request body has data after the end of the deflate stream")
    return b"".join(parts)


def require_json(request: Request) -> None:
    kind = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if kind not in (JSON, "", "application/octet-stream", "text/json") and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type '{kind}' is not supported here; send application/json")


def parse_json(body: bytes, what: str = "request body") -> Any:
    if not body:
        raise BadRequest(f"{what} is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"{what} is not valid JSON: {e}") from None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def label(request: Request, model: Model) -> Model:
    """Name the model and version this request is for, for its metrics, access log line and
    X-Model-Version header."""
    request.state.model, request.state.version = model.ref.name, str(model.ref.version)
    return model


def routed(request: Request, plane: DataPlane, name: str, version: str | None = None) -> Model:
    """The version that answers: the one asked for or the one the traffic policy picks, labelled.
    Call `plane.infer` with its version with no `await` in between, so it cannot be retired first."""
    return label(request, plane.route(name, version, request.headers))


def to_list(array: np.ndarray) -> list:
    """An output array as JSON-ready nested lists (bytes decoded as UTF-8)."""
    if array.dtype.kind in "SO":
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v,
                            otypes=[object])(array).tolist()
    return array.tolist()
