"""Account endpoints: proof-of-work challenge, register, log in and out, my account, tokens.

Slow work (argon2id, SQLite) runs in worker threads; password checks share a small limiter
so a burst of logins cannot take all the memory argon2id asks for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lightbox_node.accounts import AccountError, AccountService, RateLimiter, Scope
from lightbox_node.api.auth import LOCAL_USER, Gate, Principal
from lightbox_node.api.http import HttpError, client_address, read_object, too_many
from lightbox_node.api.settings import ApiSettings
from lightbox_node.dispatch.queue import QueueService


class AccountRoutes:
    """`/api/v1/accounts…`, `/api/v1/auth/…` and `/api/v1/account…`."""

    def __init__(
        self,
        accounts: AccountService | None,
        gate: Gate,
        settings: ApiSettings,
        queue: QueueService | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = accounts
        self.gate = gate
        self.queue = queue
        self.clock = clock
        self.register_limit = RateLimiter(settings.register_per_address)
        self.login_by_address = RateLimiter(settings.login_per_address)
        self.login_by_user = RateLimiter(settings.login_per_user)
        self.password_limiter = trio.CapacityLimiter(settings.password_threads)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/accounts/challenge", self.challenge),
            Route("/api/v1/accounts", self.register, methods=["POST"]),
            Route("/api/v1/accounts/verify-email", self.verify_email, methods=["POST"]),
            Route("/api/v1/auth/login", self.login, methods=["POST"]),
            Route("/api/v1/auth/logout", self.logout, methods=["POST"]),
            Route("/api/v1/auth/logout-all", self.logout_all, methods=["POST"]),
            Route("/api/v1/account", self.me),
            Route("/api/v1/account/password", self.change_password, methods=["POST"]),
            Route("/api/v1/account/tokens", self.list_tokens),
            Route("/api/v1/account/tokens/{token_id}", self.revoke_token, methods=["DELETE"]),
            Route("/api/v1/account/api-keys", self.create_api_key, methods=["POST"]),
            Route("/api/v1/trust/{user}", self.trust),
        ]

    def need(self) -> AccountService:
        if self.accounts is None:
            raise HttpError(404, "no_accounts", "this node does not keep accounts")
        return self.accounts

    async def call(self, function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run an account operation in a worker thread, its refusals as HTTP errors."""
        try:
            return await trio.to_thread.run_sync(
                lambda: function(*args, **kw), limiter=self.password_limiter
            )
        except AccountError as exc:
            raise HttpError.from_account_error(exc) from None

    # -- registration --------------------------------------------------------------------------

    async def challenge(self, request: Request) -> JSONResponse:
        """A proof-of-work challenge: find `answer` so that SHA-256(challenge + ":" + answer)
        starts with `difficulty` zero bits, then register with both."""
        challenge = self.need().challenge()
        return JSONResponse(
            {
                "challenge": challenge.text,
                "difficulty": challenge.difficulty,
                "algorithm": "sha256",
                "expires_at": challenge.expires_at_ms / 1000,
                "how": "find any text `answer` such that sha256(challenge + ':' + answer) "
                "starts with `difficulty` zero bits, then POST /api/v1/accounts with "
                "username, password, challenge and answer",
            },
            headers={"Cache-Control": "no-store"},
        )

    async def register(self, request: Request) -> JSONResponse:
        accounts = self.need()
        wait = self.register_limit.take(client_address(request), self.clock())
        if wait:
            raise too_many("rate_limited", "too many registrations from this address", wait)
        body = await read_object(request)
        account = await self.call(
            accounts.register,
            body.get("username"),
            body.get("password"),
            body.get("challenge"),
            body.get("answer"),
            body.get("email"),
        )
        out = account.to_json(with_email=True)
        out["email_verification"] = (
            "not_requested"
            if account.email is None
            else ("sent" if accounts.mailer is not None else "not_configured")
        )
        return JSONResponse(out, 201)

    async def verify_email(self, request: Request) -> JSONResponse:
        body = await read_object(request)
        account = await self.call(self.need().verify_email, body.get("code"))
        return JSONResponse(account.to_json(with_email=True))

    # -- logging in and out --------------------------------------------------------------------

    async def login(self, request: Request) -> JSONResponse:
        """A token for `username` and `password`: scope `user` (default) or `admin`."""
        accounts = self.need()
        body = await read_object(request)
        username = body.get("username")
        now = self.clock()
        wait = self.login_by_address.take(client_address(request), now)
        if not wait and type(username) is str:
            wait = self.login_by_user.take(username[:64], now)
        if wait:
            raise too_many("rate_limited", "too many login attempts", wait)
        try:
            scope = Scope(body.get("scope", "user"))
        except ValueError:
            raise HttpError(400, "bad_scope", "scope is 'user' or 'admin'") from None
        ttl = body.get("ttl_s")
        if ttl is not None and (type(ttl) not in (int, float) or isinstance(ttl, bool)):
            raise HttpError(400, "bad_ttl", "ttl_s is a number of seconds")
        label = body.get("label", "")
        issued = await self.call(
            accounts.login, username, body.get("password"), scope=scope, ttl_s=ttl, label=label
        )
        return JSONResponse(
            {
                "token": issued.token,
                "token_type": "bearer",
                "token_id": issued.claims.token_id,
                "scope": issued.claims.scope.value,
                "username": issued.claims.username,
                "expires_at": issued.claims.expires_at_ms / 1000,
            },
            headers={"Cache-Control": "no-store"},
        )

    def principal(self, request: Request) -> Principal:
        """Any account token (user or admin scope); the operator has no session to end."""
        principal = self.gate.check(request, Scope.USER, Scope.ADMIN)
        if principal.operator:
            raise HttpError(
                400, "operator_token", "the operator token is not a session; replace the file"
            )
        return principal

    async def logout(self, request: Request) -> Response:
        """Revoke the token this request carries."""
        principal = self.principal(request)
        assert principal.token_id is not None
        await self.call(self.need().revoke, principal.username, principal.token_id)
        return Response(status_code=204)

    async def logout_all(self, request: Request) -> Response:
        """Revoke every token of this account (every device)."""
        principal = self.principal(request)
        await self.call(self.need().logout_everywhere, principal.username)
        return Response(status_code=204)

    # -- my account ----------------------------------------------------------------------------

    async def me(self, request: Request) -> JSONResponse:
        principal = self.principal(request)
        out = self.need().get(principal.username).to_json(with_email=True)
        out["scope"] = principal.scope.value
        if self.queue is not None:
            out.update(_trust(self.queue, principal.username, self.clock()))
        return JSONResponse(out)

    async def change_password(self, request: Request) -> Response:
        """Set a new password (with the current one); every token is revoked."""
        principal = self.principal(request)
        body = await read_object(request)
        await self.call(
            self.need().change_password,
            principal.username,
            body.get("current_password"),
            body.get("new_password"),
        )
        return Response(status_code=204)

    async def list_tokens(self, request: Request) -> JSONResponse:
        """This account's live tokens (ids and dates, never the tokens themselves)."""
        principal = self.principal(request)
        rows = self.need().tokens_of(principal.username)
        return JSONResponse(
            {
                "tokens": [
                    {
                        "token_id": row.token_id,
                        "kind": "api_key" if row.token_id.startswith("k-") else "token",
                        "scope": row.scope,
                        "label": row.label,
                        "issued_at": row.issued_at_ms / 1000,
                        "expires_at": row.expires_at_ms / 1000,
                        "current": row.token_id == principal.token_id,
                    }
                    for row in rows
                ]
            }
        )

    async def create_api_key(self, request: Request) -> JSONResponse:
        """A long-lived key for tools and Horde clients (user scope); shown only this once.
        It is listed and revoked with the tokens."""
        principal = self.principal(request)
        body = await read_object(request)
        issued = await self.call(
            self.need().create_api_key, principal.username, body.get("label", "")
        )
        return JSONResponse(
            {
                "apikey": issued.token,
                "token_id": issued.claims.token_id,
                "expires_at": issued.claims.expires_at_ms / 1000,
            },
            201,
            headers={"Cache-Control": "no-store"},
        )

    async def revoke_token(self, request: Request) -> Response:
        principal = self.principal(request)
        token_id = request.path_params["token_id"]
        try:
            await self.call(self.need().revoke, principal.username, token_id)
        except HttpError as exc:
            raise HttpError(404, "unknown_token", exc.detail) from None
        return Response(status_code=204)

    async def trust(self, request: Request) -> JSONResponse:
        """A user's trust: your own with a user token, anyone's with an admin token."""
        principal = self.gate.check(request, Scope.USER, Scope.ADMIN)
        user = request.path_params["user"]
        if not LOCAL_USER.fullmatch(user):
            raise HttpError(400, "bad_user", "user names are 1-64 of a-z 0-9 . _ -")
        if self.queue is None:
            raise HttpError(404, "no_queue_role", "this node does not have the queue role")
        if not (principal.operator or principal.is_admin or principal.username == user):
            raise HttpError(403, "forbidden", "you may read only your own trust")
        return JSONResponse({"user": user, **_trust(self.queue, user, self.clock())})


def _trust(queue: QueueService, user: str, now: float) -> dict[str, Any]:
    ledger = queue.scheduler.ledger
    return {
        "trust": ledger.trust(user, now),
        "suspended": ledger.is_suspended(user),
        "recovery_eta_s": ledger.recovery_eta(user, now),
    }
