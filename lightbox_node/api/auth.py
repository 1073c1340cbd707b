"""Who is asking: bearer tokens for accounts, and the operator's token for the node's owner.

Three kinds of caller reach the API:

* an account, with a token from `POST /api/v1/auth/login`: scope `user` for its own jobs,
  scope `admin` (administrators only) for `/api/v1/admin/*`; one never opens the other;
* a GPU host, with a `gpu-host` token an administrator issued, for host routes only;
* a tool, with an API key (22 characters, from `POST /api/v1/account/api-keys`): it acts
  as its user on user routes only, and is what Horde clients send as `apikey`;
* the operator, with the token in `DATA_DIR/api.token` (0600, made on first start): it acts
  as an administrator, and on user routes for the local user named in `X-Lightbox-User`
  (default `operator`). It is for the machine's owner, scripts and tests; it never leaves
  the node and is exempt from rate limits.

Tokens come in `Authorization: Bearer …`; the WebSocket also takes `?access_token=…`
(browsers cannot set headers there); the Horde routes take the Horde's `apikey` header.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from lightbox_node.accounts import AccountError, AccountService, Scope, WrongScope
from lightbox_node.accounts.tokens import looks_like_token
from lightbox_node.api.http import HttpError

OPERATOR = "operator"
LOCAL_USER = re.compile(r"[a-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, once authenticated."""

    username: str
    """Who acts: the account, or the local user the operator acts for."""
    scope: Scope
    token_id: str | None = None
    """The token's id (None for the operator), so logout revokes exactly this token."""
    operator: bool = False

    @property
    def is_admin(self) -> bool:
        return self.scope is Scope.ADMIN


class Gate:
    """Checks credentials for every route; holds nothing per request."""

    def __init__(self, accounts: AccountService | None, operator_token: str | None) -> None:
        self.accounts = accounts
        self._operator = operator_token.encode() if operator_token else None

    def bearer(self, conn: HTTPConnection) -> str:
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        query = conn.query_params.get("access_token")
        if conn.scope["type"] == "websocket" and query:
            return query
        raise HttpError(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <token>'; get a token with POST /api/v1/auth/login",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def is_operator(self, token: str) -> bool:
        return self._operator is not None and hmac.compare_digest(token.encode(), self._operator)

    def check(self, conn: HTTPConnection, *scopes: Scope) -> Principal:
        """The caller, if its token has one of `scopes` (the operator passes user and admin)."""
        return self.check_token(self.bearer(conn), conn, *scopes)

    def check_token(self, token: str, conn: HTTPConnection, *scopes: Scope) -> Principal:
        if self.is_operator(token):
            if Scope.USER in scopes:
                return Principal(_acting_user(conn), Scope.USER, operator=True)
            if Scope.ADMIN in scopes:
                return Principal(OPERATOR, Scope.ADMIN, operator=True)
            raise HttpError(403, "wrong_scope", "the operator token does not act as a GPU host")
        if self.accounts is None:
            raise HttpError(
                401, "unauthorized", "this node has no accounts; use the operator token"
            )
        if not looks_like_token(token):
            # Anything else is an API key: user scope only.
            if Scope.USER not in scopes:
                raise HttpError(
                    403, "wrong_scope", "API keys act as their user only; log in for this"
                )
            try:
                claims = self.accounts.authenticate_api_key(token)
            except AccountError as exc:
                raise HttpError.from_account_error(exc) from None
            return Principal(claims.username, Scope.USER, claims.token_id)
        refusal: AccountError | None = None
        for scope in scopes:
            try:
                claims = self.accounts.authenticate(token, scope)
            except WrongScope as exc:
                refusal = exc
                continue
            except AccountError as exc:
                raise HttpError.from_account_error(exc) from None
            return Principal(claims.username, scope, claims.token_id)
        assert refusal is not None
        raise HttpError.from_account_error(refusal)

    def user(self, conn: HTTPConnection) -> Principal:
        return self.check(conn, Scope.USER)

    def admin(self, conn: HTTPConnection) -> Principal:
        return self.check(conn, Scope.ADMIN)


def _acting_user(conn: HTTPConnection) -> str:
    user = conn.headers.get("x-lightbox-user", OPERATOR)
    if not LOCAL_USER.fullmatch(user):
        raise HttpError(400, "bad_user", "user names are 1-64 of a-z 0-9 . _ -")
    return user
