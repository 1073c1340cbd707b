"""Accounts on one queue node: register, log in, tokens, revocation, email verification.

`AccountService` keeps every account and every live token in memory (loaded at start) and
writes each change to its own SQLite connection before it takes effect in memory, so a
request is authenticated without touching the disk and a restart forgets nothing. Methods
are synchronous and may be called from worker threads (argon2id is slow on purpose, and
runs outside the write lock); `authenticate` is cheap and safe on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlite_utils import Database

from lightbox_node.accounts import store
from lightbox_node.accounts.errors import (
    AccountError,
    BadCredentials,
    EmailVerificationRefused,
    InvalidEmail,
    InvalidUsername,
    NotAdmin,
    TokenExpired,
    TokenRefused,
    TokenRevoked,
    UnknownAccount,
    UsernameTaken,
    WrongScope,
)
from lightbox_node.accounts.passwords import (
    PasswordCost,
    check_password_rules,
    dummy_verify,
    hash_password,
    verify_password,
)
from lightbox_node.accounts.proof_of_work import Challenge, check_answer, issue_challenge
from lightbox_node.accounts.tokens import (
    MAX_TTL_MS,
    Scope,
    TokenClaims,
    issue_token,
    read_token,
    require_scope,
)
from lightbox_node.errors import WireError
from lightbox_node.identity import Identity
from lightbox_node.wire import open_envelope, seal

log = logging.getLogger("lightbox.accounts")
T = TypeVar("T")

USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,31}")
RESERVED_NAMES = frozenset({"operator", "anonymous"})
"""`operator` is who the node's operator token acts as; `anonymous` is the Horde's guest."""

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
MAX_EMAIL_CHARS = 254
MAX_LABEL_CHARS = 100
VERIFIED_CACHE = 10_000
API_KEY_BYTES = 16
"""An API key is 16 random bytes in base64url: 22 characters, the length Horde clients expect."""
API_KEY = re.compile(r"[A-Za-z0-9_-]{22}")
API_KEY_TTL_S = 365 * 24 * 3600.0
EMAIL_DOMAIN = "lightbox/email/v1"
EMAIL_PREFIX = "lbe1."
REGISTER = "register"


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """How accounts behave; one validated object."""

    password_cost: PasswordCost = dataclasses.field(default_factory=PasswordCost)
    pow_difficulty: int = 18
    """Leading zero bits asked of a registration's proof of work: about 2**18 SHA-256 hashes,
    a second or two in a browser, and a real cost to whoever registers thousands."""
    pow_ttl_s: float = 600.0
    user_token_ttl_s: float = 7 * 24 * 3600.0
    admin_token_ttl_s: float = 12 * 3600.0
    host_token_ttl_s: float = 7 * 24 * 3600.0
    email_token_ttl_s: float = 48 * 3600.0

    def __post_init__(self) -> None:
        if not 0 <= self.pow_difficulty <= 32:
            raise ValueError("pow_difficulty must be 0 to 32 bits")
        for name in ("user_token_ttl_s", "admin_token_ttl_s", "host_token_ttl_s"):
            if not 60 <= getattr(self, name) <= MAX_TTL_MS / 1000:
                raise ValueError(f"{name} must be 60 s to {MAX_TTL_MS // 1000} s")

    def max_ttl_s(self, scope: Scope) -> float:
        return {
            Scope.USER: self.user_token_ttl_s,
            Scope.ADMIN: self.admin_token_ttl_s,
            Scope.GPU_HOST: self.host_token_ttl_s,
        }[scope]


@dataclass(frozen=True, slots=True)
class Account:
    """An account as shown to people: never the password hash."""

    username: str
    role: str
    email: str | None
    email_verified: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_json(self, *, with_email: bool) -> dict[str, Any]:
        """Plain values; the email only for its owner and administrators."""
        out: dict[str, Any] = {
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at,
        }
        if with_email:
            out["email"] = self.email
            out["email_verified"] = self.email_verified
        return out


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: the secret text (shown once) and what it says."""

    token: str
    claims: TokenClaims


class Mailer(Protocol):
    """Sends one plain-text email; raises OSError (or smtplib's errors) when it cannot."""

    def send(self, to: str, subject: str, text: str) -> None: ...


def _public(row: store.AccountRow) -> Account:
    return Account(row.username, row.role, row.email, row.email_verified, row.created_at)


def check_username(username: object) -> str:
    if type(username) is not str or not USERNAME.fullmatch(username):
        raise InvalidUsername(
            "a user name is 3 to 32 characters: a lowercase letter, then a-z 0-9 . _ -"
        )
    if username in RESERVED_NAMES:
        raise InvalidUsername(f"the user name {username!r} is reserved; choose another")
    return username


def check_email(email: object) -> str | None:
    if email is None or email == "":
        return None
    if type(email) is not str or len(email) > MAX_EMAIL_CHARS or not EMAIL.fullmatch(email):
        raise InvalidEmail(
            "the email address does not look like name@example.org; fix it or leave it out"
        )
    return email


class AccountService:
    """Every account of this node, with the tokens issued to them."""

    def __init__(
        self,
        db: Database,
        identity: Identity,
        settings: AccountSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        mailer: Mailer | None = None,
        owns_database: bool = False,
    ) -> None:
        self.settings = settings or AccountSettings()
        self.mailer = mailer
        self._db = db
        self._identity = identity
        self._clock = clock
        self._owns_database = owns_database
        self._lock = threading.Lock()
        self._accounts = {row.username: row for row in store.load_accounts(db)}
        self._tokens = {row.token_id: row for row in store.load_live_tokens(db, self._now_ms())}
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()
        """Tokens whose signature was checked already: a request then costs a dict lookup.
        Expiry, revocation and the account are still checked every time."""

    @classmethod
    def open(
        cls, path: Path, identity: Identity, settings: AccountSettings | None = None, **kw: Any
    ) -> AccountService:
        """A service on its own connection to the database at `path` (closed by `close`).

        Its own connection, so its transactions never interleave with the job journal's.
        """
        # Imported here: the store's schema imports this package for its migration.
        from lightbox_node.store.database import open_database

        return cls(open_database(path), identity, settings, owns_database=True, **kw)

    def close(self) -> None:
        if self._owns_database:
            self._db.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- registration --------------------------------------------------------------------------

    def challenge(self) -> Challenge:
        """A fresh proof-of-work challenge for registering."""
        return issue_challenge(
            self._identity,
            difficulty=self.settings.pow_difficulty,
            purpose=REGISTER,
            now_ms=self._now_ms(),
            ttl_ms=int(self.settings.pow_ttl_s * 1000),
        )

    def register(
        self,
        username: object,
        password: object,
        challenge: object,
        answer: object,
        email: object = None,
    ) -> Account:
        """Create a user account, if the proof of work is a fresh, unused, correct answer."""
        name = check_username(username)
        secret = check_password_rules(password, name)
        address = check_email(email)
        now_ms = self._now_ms()
        solved = check_answer(
            self._identity.peer_id,
            challenge,
            answer,
            purpose=REGISTER,
            now_ms=now_ms,
            min_difficulty=self.settings.pow_difficulty,
        )
        if name in self._accounts:  # early, before spending a hash on it
            raise UsernameTaken(f"the user name {name!r} is taken; choose another")
        row = store.AccountRow(
            name,
            hash_password(secret, self.settings.password_cost),
            "user",
            address,
            False,
            now_ms / 1000,
            0,
        )
        with self._lock:
            store.insert_account(self._db, row, (solved.challenge_id, solved.expires_at_ms))
            self._accounts[name] = row
        log.info("account registered", extra={"user": name})
        if address is not None and self.mailer is not None:
            self.send_verification(name)
        return _public(row)

    def create(self, username: str, password: str, *, role: str = "user") -> Account:
        """Create an account without proof of work (the operator's and admins' way)."""
        name = check_username(username)
        secret = check_password_rules(password, name)
        if role not in ("user", "admin"):
            raise ValueError("role is 'user' or 'admin'")
        row = store.AccountRow(
            name,
            hash_password(secret, self.settings.password_cost),
            role,
            None,
            False,
            self._clock(),
            0,
        )
        with self._lock:
            store.insert_account(self._db, row)
            self._accounts[name] = row
        log.info("account created", extra={"user": name, "role": role})
        return _public(row)

    # -- logging in and out --------------------------------------------------------------------

    def login(
        self,
        username: object,
        password: object,
        *,
        scope: Scope = Scope.USER,
        ttl_s: float | None = None,
        label: str = "",
    ) -> IssuedToken:
        """A new token for the account, if the password is right."""
        row = self._accounts.get(username) if type(username) is str else None
        if row is None or type(password) is not str:
            dummy_verify(self.settings.password_cost)  # unknown names take as long
            raise BadCredentials("wrong user name or password")
        if not verify_password(row.password_hash, password):
            raise BadCredentials("wrong user name or password")
        if scope is Scope.GPU_HOST:
            raise WrongScope(
                "gpu-host tokens are not issued at login; an administrator issues them with "
                "POST /api/v1/admin/host-tokens"
            )
        if scope is Scope.ADMIN and row.role != "admin":
            raise NotAdmin(f"{row.username} is not an administrator; log in with scope 'user'")
        return self._issue(row.username, scope, ttl_s, label)

    def issue_host_token(self, admin: str, label: str, ttl_s: float | None = None) -> IssuedToken:
        """A gpu-host token, issued by the administrator `admin` for the host `label`."""
        if admin not in self._accounts or self._accounts[admin].role != "admin":
            raise NotAdmin(f"{admin} is not an administrator")
        return self._issue(admin, Scope.GPU_HOST, ttl_s, label)

    def _issue(self, username: str, scope: Scope, ttl_s: float | None, label: str) -> IssuedToken:
        limit = self.settings.max_ttl_s(scope)
        ttl = limit if ttl_s is None else ttl_s
        if not 60 <= ttl <= limit:
            raise AccountError(f"ttl_s must be 60 to {limit:.0f} seconds for a {scope.value} token")
        if type(label) is not str or len(label) > MAX_LABEL_CHARS:
            raise AccountError(f"a label is text of at most {MAX_LABEL_CHARS} characters")
        now_ms = self._now_ms()
        text, claims = issue_token(
            self._identity, username, scope, now_ms=now_ms, ttl_ms=int(ttl * 1000)
        )
        row = store.TokenRow(
            claims.token_id, username, scope.value, label, now_ms, claims.expires_at_ms, None
        )
        with self._lock:
            store.insert_token(self._db, row, now_ms)
            self._tokens[row.token_id] = row
            if len(self._tokens) % 1024 == 0:
                self._forget_expired(now_ms)
        log.info("token issued", extra={"user": username, "scope": scope.value})
        return IssuedToken(text, claims)

    def create_api_key(self, username: str, label: str = "") -> IssuedToken:
        """A long-lived user-scope key for tools (and Horde clients' `apikey`); shown once.

        Only a hash of it is stored, as the id of an `api_tokens` row, so revocation,
        listing and logout-everywhere treat it like any token.
        """
        self._get_row(username)
        if type(label) is not str or len(label) > MAX_LABEL_CHARS:
            raise AccountError(f"a label is text of at most {MAX_LABEL_CHARS} characters")
        key = base64.urlsafe_b64encode(secrets.token_bytes(API_KEY_BYTES)).decode().rstrip("=")
        now_ms = self._now_ms()
        row = store.TokenRow(
            _api_key_id(key),
            username,
            Scope.USER.value,
            label,
            now_ms,
            now_ms + int(API_KEY_TTL_S * 1000),
            None,
        )
        with self._lock:
            store.insert_token(self._db, row, now_ms)
            self._tokens[row.token_id] = row
        log.info("api key created", extra={"user": username})
        claims = TokenClaims(row.token_id, username, Scope.USER, now_ms, row.expires_at_ms)
        return IssuedToken(key, claims)

    def authenticate_api_key(self, key: object) -> TokenClaims:
        """The claims of a live API key (always scope user); raises TokenRefused."""
        if type(key) is not str or not API_KEY.fullmatch(key):
            raise TokenRefused("that is not a Lightbox API key")
        row = self._tokens.get(_api_key_id(key))
        if row is None or row.expires_at_ms <= self._now_ms():
            raise TokenRefused("unknown or expired API key; create one at /api/v1/account/api-keys")
        account = self._accounts.get(row.username)
        if account is None:
            raise TokenRefused("unknown API key")
        if row.revoked_at_ms is not None or row.issued_at_ms < account.tokens_valid_after_ms:
            raise TokenRevoked("the API key was revoked; create a new one")
        return TokenClaims(
            row.token_id, row.username, Scope.USER, row.issued_at_ms, row.expires_at_ms
        )

    def authenticate(self, text: object, scope: Scope) -> TokenClaims:
        """The claims of a live, unrevoked token of exactly `scope`; no disk access.

        Raises TokenRefused (401: not valid at all) or WrongScope/NotAdmin (403: valid, but
        not for this).
        """
        now_ms = self._now_ms()
        claims = self._verified.get(text) if type(text) is str else None
        if claims is None:
            claims = read_token(self._identity.peer_id, text, now_ms=now_ms)
            self._verified[text] = claims  # type: ignore[index]
            while len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        elif claims.expires_at_ms <= now_ms:
            raise TokenExpired("the token has expired; log in again")
        row = self._tokens.get(claims.token_id)
        account = self._accounts.get(claims.username)
        if row is None or account is None or row.username != claims.username:
            raise TokenRefused("the token is no longer valid here; log in again")
        if row.revoked_at_ms is not None or claims.issued_at_ms < account.tokens_valid_after_ms:
            raise TokenRevoked("the token was revoked (logged out); log in again")
        require_scope(claims, scope)
        if scope is Scope.ADMIN and account.role != "admin":
            raise NotAdmin(f"{account.username} is no longer an administrator")
        return claims

    def logout(self, claims: TokenClaims) -> None:
        """Revoke the one token these claims came from."""
        self.revoke(claims.username, claims.token_id)

    def revoke(self, username: str, token_id: str) -> None:
        """Revoke one of `username`'s tokens; raises TokenRefused for an id not theirs."""
        row = self._tokens.get(token_id)
        if row is None or row.username != username:
            raise TokenRefused(f"no live token {token_id!r} of {username}")
        now_ms = self._now_ms()
        with self._lock:
            store.revoke_tokens(self._db, [token_id], now_ms)
            self._tokens[token_id] = dataclasses.replace(row, revoked_at_ms=now_ms)
        log.info("token revoked", extra={"user": username})

    def logout_everywhere(self, username: str) -> None:
        """Revoke every token of `username` issued until now."""
        row = self._get_row(username)
        now_ms = self._now_ms()
        # Tokens issued in this same millisecond would survive a strict `<`; +1 closes that.
        self._save(dataclasses.replace(row, tokens_valid_after_ms=now_ms + 1))
        with self._lock:
            ids = [t.token_id for t in self._tokens.values() if t.username == username]
            store.revoke_tokens(self._db, ids, now_ms)
            for token_id in ids:
                self._tokens[token_id] = dataclasses.replace(
                    self._tokens[token_id], revoked_at_ms=now_ms
                )
        log.info("all tokens revoked", extra={"user": username})

    def tokens_of(self, username: str) -> list[store.TokenRow]:
        """The live (unexpired, unrevoked) tokens of `username`, newest first."""
        now_ms = self._now_ms()
        account = self._accounts.get(username)
        valid_after = account.tokens_valid_after_ms if account else 0
        rows = [
            t
            for t in self._tokens.values()
            if t.username == username
            and t.revoked_at_ms is None
            and t.expires_at_ms > now_ms
            and t.issued_at_ms >= valid_after
        ]
        return sorted(rows, key=lambda t: t.issued_at_ms, reverse=True)

    def change_password(self, username: str, old: object, new: object) -> None:
        """Set a new password (the old one is asked again) and log out everywhere."""
        row = self._get_row(username)
        if type(old) is not str or not verify_password(row.password_hash, old):
            raise BadCredentials("the current password is wrong")
        secret = check_password_rules(new, username)
        hashed = hash_password(secret, self.settings.password_cost)
        self._save(dataclasses.replace(self._get_row(username), password_hash=hashed))
        self.logout_everywhere(username)

    # -- reading -------------------------------------------------------------------------------

    def get(self, username: str) -> Account:
        return _public(self._get_row(username))

    def exists(self, username: str) -> bool:
        return username in self._accounts

    def accounts(self) -> list[Account]:
        return [_public(row) for _, row in sorted(self._accounts.items())]

    def set_role(self, username: str, role: str) -> Account:
        if role not in ("user", "admin"):
            raise ValueError("role is 'user' or 'admin'")
        row = dataclasses.replace(self._get_row(username), role=role)
        self._save(row)
        return _public(row)

    # -- email ---------------------------------------------------------------------------------

    def send_verification(self, username: str) -> None:
        """Email the account's address a verification token (needs a mailer)."""
        row = self._get_row(username)
        if self.mailer is None or row.email is None:
            return
        now_ms = self._now_ms()
        frame = seal(
            self._identity,
            EMAIL_DOMAIN,
            0,
            now_ms,
            now_ms + int(self.settings.email_token_ttl_s * 1000),
            {"email": row.email, "sub": username},
        )
        code = EMAIL_PREFIX + base64.urlsafe_b64encode(frame).decode("ascii").rstrip("=")
        text = (
            f"Someone (hopefully you) registered the Lightbox account {username!r} with this "
            "address.\n\nTo confirm it, send this code to the node:\n\n"
            f'    POST /api/v1/accounts/verify-email  {{"code": "{code}"}}\n\n'
            "If it was not you, ignore this message.\n"
        )
        try:
            self.mailer.send(row.email, "Confirm your Lightbox account", text)
        except Exception as exc:  # SMTP trouble must not undo the registration
            log.warning("verification email not sent", extra={"user": username, "error": str(exc)})

    def verify_email(self, code: object) -> Account:
        """Mark the address in a verification code as verified, if it is still the account's."""
        if type(code) is not str or not code.startswith(EMAIL_PREFIX) or len(code) > 2048:
            raise EmailVerificationRefused("send the code from the verification email")
        encoded = code[len(EMAIL_PREFIX) :]
        try:
            frame = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            envelope = open_envelope(
                frame, expect_domain=EMAIL_DOMAIN, now_ms=self._now_ms()
            ).envelope
        except (binascii.Error, ValueError, WireError):
            raise EmailVerificationRefused(
                "the code is damaged or expired; ask for a new verification email"
            ) from None
        body = envelope.body
        if envelope.author != self._identity.peer_id or type(body) is not dict:
            raise EmailVerificationRefused("the code was not issued by this node")
        row = self._accounts.get(body.get("sub"))  # type: ignore[arg-type]
        if row is None or row.email != body.get("email"):
            raise EmailVerificationRefused(
                "the code is for an address this account no longer has; ask for a new email"
            )
        row = dataclasses.replace(row, email_verified=True)
        self._save(row)
        return _public(row)

    def write(self, change: Callable[[Database], T]) -> T:
        """Run `change` on this service's connection under its write lock (for the admin
        routes' trust and peer-policy rows, which must not share the journal's connection)."""
        with self._lock:
            return change(self._db)

    # -- internals -----------------------------------------------------------------------------

    def _get_row(self, username: str) -> store.AccountRow:
        row = self._accounts.get(username)
        if row is None:
            raise UnknownAccount(f"no account {username!r} here")
        return row

    def _save(self, row: store.AccountRow) -> None:
        with self._lock:
            store.update_account(self._db, row)
            self._accounts[row.username] = row

    def _forget_expired(self, now_ms: int) -> None:
        for token_id in [t for t, row in self._tokens.items() if row.expires_at_ms <= now_ms]:
            del self._tokens[token_id]


def _api_key_id(key: str) -> str:
    """The stored id of an API key: a hash, so the database never holds a usable key."""
    return (
        "k-" + hashlib.blake2b(key.encode(), digest_size=12, person=b"lightbox-apikey").hexdigest()
    )


def create_admin(
    database: Database,
    username: str,
    password: str,
    *,
    cost: PasswordCost | None = None,
    clock: Callable[[], float] = time.time,
) -> Account:
    """Create an administrator account in `database` (for `lightbox-node init --admin`).

    Raises InvalidUsername, InvalidPassword or UsernameTaken with a message to show as is.
    """
    settings = AccountSettings(password_cost=cost or PasswordCost())
    identity = Identity.generate()  # signs nothing here; creating an account needs no key
    service = AccountService(database, identity, settings, clock=clock)
    return service.create(username, password, role="admin")


__all__ = [
    "Account",
    "AccountService",
    "AccountSettings",
    "IssuedToken",
    "Mailer",
    "check_email",
    "check_username",
    "create_admin",
]
