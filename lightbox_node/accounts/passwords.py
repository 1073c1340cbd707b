"""Password hashing with argon2id (PyNaCl): memory-hard, salted, self-describing hashes.

The stored string carries its own parameters (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so a
hash made at an older cost still verifies after the cost is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id

from lightbox_node.accounts.errors import InvalidPassword

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
"""Long enough for any passphrase, short enough that hashing it is never a denial of service."""


@dataclass(frozen=True, slots=True)
class PasswordCost:
    """argon2id's work factors: passes over memory, and the memory itself in bytes."""

    ops: int = argon2id.OPSLIMIT_INTERACTIVE
    mem: int = argon2id.MEMLIMIT_INTERACTIVE

    def __post_init__(self) -> None:
        if not argon2id.OPSLIMIT_MIN <= self.ops <= argon2id.OPSLIMIT_MAX:
            raise ValueError(f"argon2id ops must be {argon2id.OPSLIMIT_MIN} or more")
        if not argon2id.MEMLIMIT_MIN <= self.mem <= argon2id.MEMLIMIT_MAX:
            raise ValueError(f"argon2id memory must be at least {argon2id.MEMLIMIT_MIN} bytes")


FAST_TEST_COST = PasswordCost(ops=argon2id.OPSLIMIT_MIN, mem=argon2id.MEMLIMIT_MIN)
"""For tests only: the cheapest setting argon2id allows."""


def check_password_rules(password: object, username: str = "") -> str:
    """The password if it is acceptable; raises InvalidPassword saying what to change."""
    if type(password) is not str:
        raise InvalidPassword("the password must be text")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidPassword(
            f"the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters; "
            "a few unrelated words make a good one"
        )
    if username and password.casefold() == username.casefold():
        raise InvalidPassword("the password must not be the user name")
    return password


def hash_password(password: str, cost: PasswordCost = PasswordCost()) -> str:
    """The argon2id hash string of `password` with a fresh random salt."""
    return argon2id.str(password.encode("utf-8"), opslimit=cost.ops, memlimit=cost.mem).decode(
        "ascii"
    )


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash; never raises for a wrong password."""
    if type(password) is not str or len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return argon2id.verify(stored.encode("ascii"), password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False


def dummy_verify(cost: PasswordCost = PasswordCost()) -> None:
    """Spend about as long as a real check, so that unknown names take as long as known ones."""
    argon2id.kdf(32, b"lightbox-timing-equaliser", b"\x00" * argon2id.SALTBYTES, cost.ops, cost.mem)
