"""Accounts for people and tools: passwords, proof of work, scoped signed tokens, limits.

The pure parts (`proof_of_work`, `tokens`, `limits`, `passwords`) know no clock and no
database; `AccountService` keeps accounts and tokens in SQLite and in memory.
"""

from lightbox_node.accounts.errors import (
    AccountError,
    BadCredentials,
    ChallengeReplayed,
    EmailVerificationRefused,
    InvalidEmail,
    InvalidPassword,
    InvalidUsername,
    NotAdmin,
    ProofOfWorkRefused,
    TokenExpired,
    TokenRefused,
    TokenRevoked,
    UnknownAccount,
    UsernameTaken,
    WrongScope,
)
from lightbox_node.accounts.limits import Rate, RateLimiter
from lightbox_node.accounts.mail import SmtpMailer
from lightbox_node.accounts.passwords import FAST_TEST_COST, PasswordCost
from lightbox_node.accounts.proof_of_work import Challenge, solve
from lightbox_node.accounts.service import (
    Account,
    AccountService,
    AccountSettings,
    IssuedToken,
    Mailer,
    create_admin,
)
from lightbox_node.accounts.store import create_accounts_tables
from lightbox_node.accounts.tokens import Scope, TokenClaims

__all__ = [
    "FAST_TEST_COST",
    "Account",
    "AccountError",
    "AccountService",
    "AccountSettings",
    "BadCredentials",
    "Challenge",
    "ChallengeReplayed",
    "EmailVerificationRefused",
    "InvalidEmail",
    "InvalidPassword",
    "InvalidUsername",
    "IssuedToken",
    "Mailer",
    "NotAdmin",
    "PasswordCost",
    "ProofOfWorkRefused",
    "Rate",
    "RateLimiter",
    "Scope",
    "SmtpMailer",
    "TokenClaims",
    "TokenExpired",
    "TokenRefused",
    "TokenRevoked",
    "UnknownAccount",
    "UsernameTaken",
    "WrongScope",
    "create_accounts_tables",
    "create_admin",
    "solve",
]
