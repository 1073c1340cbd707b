"""The errors of accounts and tokens; each says what was wrong and what to do about it.

The HTTP layer maps each class to one status code (see `status_code`), so the mapping lives
next to the errors instead of being guessed from messages.
"""

from __future__ import annotations

from lightbox_node.errors import LightboxError


class AccountError(LightboxError):
    """Something about an account request was refused; the message says what to fix."""

    status_code = 400
    code = "account_error"


class InvalidUsername(AccountError):
    code = "bad_username"


class InvalidPassword(AccountError):
    code = "bad_password"


class InvalidEmail(AccountError):
    code = "bad_email"


class UsernameTaken(AccountError):
    status_code = 409
    code = "username_taken"


class UnknownAccount(AccountError):
    status_code = 404
    code = "unknown_user"


class BadCredentials(AccountError):
    """Wrong user name or password; deliberately the same message for both."""

    status_code = 401
    code = "bad_credentials"


class ProofOfWorkRefused(AccountError):
    """The anti-bot challenge answer is missing, wrong, expired, foreign or already used."""

    status_code = 400
    code = "bad_proof_of_work"


class ChallengeReplayed(ProofOfWorkRefused):
    status_code = 409
    code = "challenge_used"


class TokenRefused(AccountError):
    """The bearer token is not one this node issued, has expired or was revoked."""

    status_code = 401
    code = "bad_token"


class TokenExpired(TokenRefused):
    code = "token_expired"


class TokenRevoked(TokenRefused):
    code = "token_revoked"


class WrongScope(AccountError):
    """A valid token used where another scope is needed: user, admin and gpu-host never mix."""

    status_code = 403
    code = "wrong_scope"


class NotAdmin(AccountError):
    status_code = 403
    code = "not_admin"


class EmailVerificationRefused(AccountError):
    code = "bad_verification"


__all__ = [
    "AccountError",
    "BadCredentials",
    "ChallengeReplayed",
    "EmailVerificationRefused",
    "InvalidEmail",
    "InvalidPassword",
    "InvalidUsername",
    "NotAdmin",
    "ProofOfWorkRefused",
    "TokenExpired",
    "TokenRefused",
    "TokenRevoked",
    "UnknownAccount",
    "UsernameTaken",
    "WrongScope",
]
