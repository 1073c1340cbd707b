"""The small HTTP vocabulary every API module shares: errors as responses, bounded bodies.

Every refusal is `{"error": code, "detail": what to fix, ...}` with a fitting status, so a
tool can branch on `error` and a person can read `detail`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from lightbox_node.accounts import AccountError


class HttpError(Exception):
    """Raised anywhere in a handler; the app turns it into its JSON response."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.code, "detail": self.detail, **self.extra},
            self.status,
            headers=self.headers,
        )

    @classmethod
    def from_account_error(cls, exc: AccountError) -> HttpError:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return cls(exc.status_code, exc.code, str(exc), headers=headers)


def error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status)


def too_many(code: str, detail: str, wait_s: float) -> HttpError:
    """A 429 whose `Retry-After` says how many whole seconds to wait."""
    seconds = max(1, math.ceil(wait_s))
    return HttpError(
        429,
        code,
        f"{detail}; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after_s=seconds,
    )


DRAIN_LIMIT = 8 << 20
"""A body up to this much over the limit is read and dropped before the 413 goes out, so the
client (still sending) gets to read the refusal instead of a reset connection."""


async def refuse_too_large(request: Request, limit: int) -> HttpError:
    drained = 0
    async for chunk in request.stream():
        drained += len(chunk)
        if drained > limit + DRAIN_LIMIT:
            break
    return HttpError(413, "too_large", f"request bodies are limited to {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise await refuse_too_large(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, "too_large", f"request bodies are limited to {limit} bytes")
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body (bounded by `limit` bytes)."""
    body = await read_body(request, limit)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


async def read_object(request: Request, limit: int = 64 << 10) -> dict[str, Any]:
    """A JSON object body (an empty body reads as `{}`)."""
    if request.headers.get("content-length") == "0":
        return {}
    body = await read_json(request, limit)
    if type(body) is not dict:
        raise HttpError(400, "bad_request", "the body must be a JSON object")
    return body


def client_address(request: Request) -> str:
    """The peer address of the connection (proxies' headers are not trusted)."""
    return request.client.host if request.client else "unknown"


class DrainUnreadBody:
    """ASGI middleware: read what is left of a small request body before responding.

    A handler that refuses a request early (a bad token, a 404) never reads its body; the
    server then cannot reuse the connection and closes it, and a client that already reused
    it sees a dropped connection instead of the answer. Bodies up to `limit` bytes are read
    and dropped first; larger ones are left alone (that connection closes, as it should).
    """

    def __init__(self, app: Any, limit: int = 1 << 20) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        done = False

        async def tracking_receive() -> Any:
            nonlocal done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        async def draining_send(message: Any) -> None:
            nonlocal done
            if message["type"] == "http.response.start" and not done:
                length = dict(scope.get("headers", [])).get(b"content-length", b"")
                if length.isdigit() and int(length) <= self.limit:
                    while not done:
                        await tracking_receive()
            await send(message)

        await self.app(scope, tracking_receive, draining_send)
