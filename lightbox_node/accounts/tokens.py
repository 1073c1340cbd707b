"""Bearer tokens: signed by the node's Ed25519 key, with an owner, a scope and an expiry.

A token is a `lightbox/token/v1` envelope (see `wire`) whose body names the account, the
scope and a random token id, printed as `lbt1.` + base64url. Anyone can read it; only this
node can make one, and a token signed by another node never verifies here, because the
author must be this node's own peer id. The three scopes are never interchangeable: a user
token does not open admin routes, an admin token does not submit jobs, and neither can act
as a GPU host (the paper's reference implementation let a user token log in as a worker).
Revocation needs memory, so it lives in the account store; this module is pure.
"""

from __future__ import annotations

import base64
import binascii
import enum
import secrets
from dataclasses import dataclass

from lightbox_node.accounts.errors import TokenExpired, TokenRefused, WrongScope
from lightbox_node.errors import Expired, WireError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.wire import open_envelope, seal

DOMAIN = "lightbox/token/v1"
PREFIX = "lbt1."
MAX_TOKEN_CHARS = 1024
MAX_TTL_MS = 7 * 24 * 3600 * 1000
"""The longest a token may live (the envelope lifetime limit of `wire`)."""


class Scope(enum.Enum):
    """What a token may be used for; one scope per token."""

    USER = "user"
    ADMIN = "admin"
    GPU_HOST = "gpu-host"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    token_id: str
    username: str
    scope: Scope
    issued_at_ms: int
    expires_at_ms: int


def issue_token(
    identity: Identity,
    username: str,
    scope: Scope,
    *,
    now_ms: int,
    ttl_ms: int,
    token_id: str | None = None,
) -> tuple[str, TokenClaims]:
    """A new token and its claims; `ttl_ms` is capped at `MAX_TTL_MS`."""
    if not 0 < ttl_ms <= MAX_TTL_MS:
        raise ValueError(f"a token lives 1 ms to {MAX_TTL_MS} ms")
    claims = TokenClaims(
        token_id or secrets.token_hex(12), username, scope, now_ms, now_ms + ttl_ms
    )
    body = {"scope": scope.value, "sub": username, "tid": claims.token_id}
    frame = seal(identity, DOMAIN, 0, now_ms, claims.expires_at_ms, body)
    return PREFIX + base64.urlsafe_b64encode(frame).decode("ascii").rstrip("="), claims


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX)


def read_token(issuer: PeerId, text: object, *, now_ms: int) -> TokenClaims:
    """The claims of a token `issuer` signed that is still valid; raises TokenRefused."""
    if type(text) is not str or not text.startswith(PREFIX) or len(text) > MAX_TOKEN_CHARS:
        raise TokenRefused("that is not a Lightbox token; log in to get one")
    encoded = text[len(PREFIX) :]
    try:
        frame = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        envelope = open_envelope(frame, expect_domain=DOMAIN, now_ms=now_ms).envelope
    except Expired:
        raise TokenExpired("the token has expired; log in again") from None
    except (binascii.Error, ValueError, WireError):
        raise TokenRefused("the token is damaged or was not issued here; log in again") from None
    if envelope.author != issuer:
        raise TokenRefused("the token was issued by another node; log in to this one")
    body = envelope.body
    try:
        scope = Scope(body["scope"])
        username, token_id = body["sub"], body["tid"]
    except (TypeError, KeyError, ValueError):
        raise TokenRefused("the token is damaged; log in again") from None
    if type(username) is not str or type(token_id) is not str:
        raise TokenRefused("the token is damaged; log in again")
    return TokenClaims(token_id, username, scope, envelope.issued_at_ms, envelope.expires_at_ms)


def _a(scope: Scope) -> str:
    return ("an " if scope is Scope.ADMIN else "a ") + scope.value


def require_scope(claims: TokenClaims, scope: Scope) -> TokenClaims:
    """The claims, if the token has exactly `scope`; raises WrongScope otherwise."""
    if claims.scope is not scope:
        raise WrongScope(
            f"this is {_a(claims.scope)} token and this endpoint needs {_a(scope)} token; "
            f"log in with scope {scope.value!r}"
            + (" (an admin account can hold both)" if scope is Scope.ADMIN else "")
        )
    return claims


__all__ = [
    "DOMAIN",
    "MAX_TTL_MS",
    "Scope",
    "TokenClaims",
    "issue_token",
    "looks_like_token",
    "read_token",
    "require_scope",
]
