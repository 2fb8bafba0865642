"""Pure ASGI middleware: request ids, the access log, request metrics, API keys, memory for large bodies."""

from __future__ import annotations

import asyncio
import hmac
import html
import itertools
import logging
import re
import time
import uuid
from urllib.parse import parse_qs

import orjson

from pallet.serve import metrics
from pallet.settings import ServeConfig

access_log = logging.getLogger("pallet.access")
error_log = logging.getLogger("pallet.serve")
PROCESS_ID = uuid.uuid4().hex[:22]  # with a counter: ids unique across workers, without a uuid per request
_counter = itertools.count()
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's id is echoed only when it is this tame

OPEN_PATHS = ("/v2/health/", "/ping")        # probes stay open even with --auth
ADMIN_PREFIXES = ("/v2/repository", "/admin/")  # model lifecycle, rollouts: the key is required whenever one is set
FEEDBACK_SUFFIX = "/feedback"                 # reading feedback back is an admin action too
SHARE_COOKIE = "pallet_token"


def is_probe(scope) -> bool:
    """Liveness and readiness probes stay open with --auth and --share-token: V2's health routes,
    SageMaker's /ping, MLflow's /health, and GET / (KServe's and Azure's liveness) when it does not ask for the page."""
    path = scope["path"]
    if is_probe_path(path):
        return True
    return path == "/" and scope["method"] in ("GET", "HEAD") and "text/html" not in (_header(scope, b"accept") or "")


def is_probe_path(path: str) -> bool:
    return path.startswith(OPEN_PATHS) or path == "/health"


def is_admin(method: str, path: str) -> bool:
    """Model lifecycle, rollouts and reading feedback back: the key is required whenever one is set."""
    return path.startswith(ADMIN_PREFIXES) or (method in ("GET", "HEAD") and path.endswith(FEEDBACK_SUFFIX))


def new_request_id(given: str | None) -> str:
    """The client's request id when it is tame, else a new one, unique across workers."""
    return given if given is not None and REQUEST_ID.fullmatch(given) else f"{PROCESS_ID}{next(_counter):010x}"


def key_refusal(given: str | None, key: str) -> str | None:
    """Why `given` does not open what `key` guards (None when it does); compared in constant time."""
    if given is not None and hmac.compare_digest(given.encode(), key.encode()):
        return None
    return "missing API key" if given is None else "wrong API key"


class RequestContext:
    """Gives every request an X-Request-ID (the client's, or a new one), logs it as a JSON line,
    and times it once, first byte to response: `observe` (the data plane's, which also feeds
    rollout figures) counts that time for the model the route named in `request.state`."""

    def __init__(self, app, config: ServeConfig, observe=metrics.observe):
        self.app = app
        self.config = config
        self.observe = observe  # (model, version, protocol, status, seconds)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = new_request_id(_header(scope, b"x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status, started_response = 500, False
        started = time.perf_counter()

        async def send_with_id(message):
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if state.get("version"):  # which version answered, on every protocol
                    headers.append((b"x-model-version", state["version"].encode()))
                message["headers"] = headers
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:  # a bug in pallet or in model code: answer, log, keep the connection
            error_log.exception("request %s failed", request_id)
            if started_response:
                raise
            body = orjson.dumps({"error": f"internal error ({type(error).__name__}); see the server log, "
                                          f"request id {request_id}"})
            await send_with_id({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json")]})
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            metrics.IN_FLIGHT.dec()
            seconds = time.perf_counter() - started
            # Only names of loaded models become labels: unknown names (404s) count under "".
            model, version = state.get("model"), state.get("version")
            if state.get("protocol"):
                self.observe(model or "", version or "", state["protocol"], status, seconds)
            if self.config.access_log:
                access_log.info(orjson.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": request_id,
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "latency_ms": round(seconds * 1000, 3), "model": model, "version": version,
                    "protocol": state.get("protocol"),
                }).decode())


class APIKey:
    """With PALLET_API_KEY set, admin endpoints need it; with --auth, every endpoint but the probes does.

    The key goes in `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    """

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.config = config
        self.key = config.api_key  # read once: the environment is not consulted per request

    async def __call__(self, scope, receive, send):
        key = self.key
        if scope["type"] != "http" or key is None or not self._guarded(scope):
            return await self.app(scope, receive, send)
        given = _header(scope, b"x-api-key")
        bearer = _header(scope, b"authorization")
        if given is None and bearer and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        message = key_refusal(given, key)
        if message is None:
            return await self.app(scope, receive, send)
        body = orjson.dumps({"error": f"{message}: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})

    def _guarded(self, scope) -> bool:
        return is_admin(scope["method"], scope["path"]) or self.config.auth and not is_probe(scope)


class LargeBodies:
    """Bounds the memory requests take: at most `config.large_requests` requests (per worker) whose
    bodies are over LARGE bytes, of unknown length or compressed are read, decoded and answered at
    once; others wait their turn,
    and past WAIT_SECONDS get 503 with Retry-After. Decoded JSON takes several times its bytes,
    so without this a burst of big bodies could take all the memory there is."""

    LARGE = 256 * 1024
    WAIT_SECONDS = 30.0

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.config = config
        self.slots: asyncio.Semaphore | None = None  # made in the server's event loop

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD") or not self._large(scope):
            return await self.app(scope, receive, send)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.config.large_requests)
        try:
            async with asyncio.timeout(self.WAIT_SECONDS):
                await self.slots.acquire()
        except TimeoutError:
            body = orjson.dumps({"error": f"{self.config.large_requests} large requests are being answered and "
                                          "others wait; retry shortly (pallet serve --large-requests)"})
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()

    def _large(self, scope) -> bool:
        """Declared over LARGE, sent in chunks of unknown total, or compressed (it may grow to the limit)."""
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.LARGE):
            return True
        if "chunked" in (_header(scope, b"transfer-encoding") or "").lower():
            return True
        return (_header(scope, b"content-encoding") or "identity").lower() != "identity"


class ShareToken:
    """With --share-token, every path but the probes needs the token: `?token=` in the URL (the
    answer then sets a cookie, so the page's own requests carry it), that cookie, or `X-Share-Token`."""

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.token = config.share_token

    async def __call__(self, scope, receive, send):
        token = self.token
        if scope["type"] != "http" or token is None or is_probe(scope):
            return await self.app(scope, receive, send)
        in_url = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        cookie_name = f"{SHARE_COOKIE}_{(scope.get('server') or ('', 0))[1]}"  # browsers share cookies across ports
        given = in_url or _header(scope, b"x-share-token") or _cookie(scope, cookie_name)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            if "text/html" in (_header(scope, b"accept") or ""):  # a person in a browser: say how to get in
                body, kind = shared_server_page(scope["path"], wrong=given is not None), b"text/html; charset=utf-8"
            else:
                message = ("this server is shared by link: open the URL pallet serve printed, with its ?token="
                           if given is None else "wrong share token")
                body, kind = orjson.dumps({"error": message}), b"application/json"
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", kind), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})
            return
        if in_url is None:
            return await self.app(scope, receive, send)
        cookie = f"{cookie_name}={token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


SHARED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pallet: a shared server</title><link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;color:#1d2330;background:#f6f7f9;margin:0;line-height:1.5}}
main{{max-width:36rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #e1e5eb;border-radius:10px}}
code{{background:#f3f5f8;padding:0 .25rem;border-radius:4px;white-space:nowrap}} .alert{{color:#8a1f1f}}
input{{font:inherit;padding:.4rem;width:16rem;max-width:100%}} button{{font:inherit;padding:.4rem .9rem}}</style>
</head><body><main>
<h1>A shared pallet server</h1>
{wrong}<p>This pallet server is shared by link: its pages and its API open with the share token that was set
when it started.</p>
<ul><li>Open the link <code>pallet serve</code> printed when it started: it ends in <code>?token=&hellip;</code>.</li>
<li>Or ask whoever shared this server with you for that link.</li></ul>
<form method="get" action="{path}"><label>Share token <input name="token" autocomplete="off" required></label>
<button type="submit">Open</button></form>
</main></body></html>
"""


def shared_server_page(path: str, wrong: bool) -> bytes:
    """What a browser shows on a shared server opened without its token (or with a wrong one)."""
    note = '<p class="alert" role="alert">The token in this link is not this server\'s.</p>\n' if wrong else ""
    return SHARED_PAGE.format(wrong=note, path=html.escape(path, quote=True)).encode()


def _cookie(scope, name: str) -> str | None:
    header = _header(scope, b"cookie")
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
