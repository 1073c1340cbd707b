"""Anti-bot proof of work for registration: stateless signed challenges, hashcash-style.

The node hands out a challenge signed with its own key (a `lightbox/pow/v1` envelope with a
random nonce, the difficulty and an expiry), so it keeps nothing per challenge it issues. The
client finds any `answer` for which SHA-256(challenge + ":" + answer) starts with `difficulty`
zero bits, about 2**difficulty hashes of work, and sends both back with its registration. A
challenge can be spent once: the account store records `challenge_id` in its `pow_spent`
table until the challenge expires, which stops one solution from registering a thousand
accounts, across restarts too.

Pure: no clock, no I/O; the signing identity and `now_ms` are passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from lightbox_node.accounts.errors import ProofOfWorkRefused
from lightbox_node.errors import WireError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.wire import open_envelope, seal

DOMAIN = "lightbox/pow/v1"
PREFIX = "lbc1."
MAX_CHALLENGE_CHARS = 1024
MAX_ANSWER_CHARS = 64
MAX_DIFFICULTY = 32


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge as handed to a client: the text to hash, how hard, until when."""

    text: str
    difficulty: int
    purpose: str
    expires_at_ms: int

    @property
    def challenge_id(self) -> str:
        return challenge_id(self.text)


def challenge_id(text: str) -> str:
    """The key under which a spent challenge is remembered (a hash, not the text itself)."""
    return hashlib.blake2b(text.encode("ascii"), digest_size=16).hexdigest()


def issue_challenge(
    identity: Identity,
    *,
    difficulty: int,
    purpose: str,
    now_ms: int,
    ttl_ms: int,
    nonce: bytes | None = None,
) -> Challenge:
    """A fresh challenge signed by `identity`, valid for `ttl_ms`."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 0 to {MAX_DIFFICULTY} bits")
    body = {"d": difficulty, "n": nonce or secrets.token_bytes(16), "p": purpose}
    frame = seal(identity, DOMAIN, 0, now_ms, now_ms + ttl_ms, body)
    text = PREFIX + base64.urlsafe_b64encode(frame).decode("ascii").rstrip("=")
    return Challenge(text, difficulty, purpose, now_ms + ttl_ms)


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def work_digest(challenge_text: str, answer: str) -> bytes:
    return hashlib.sha256(f"{challenge_text}:{answer}".encode()).digest()


def solve(challenge_text: str, difficulty: int) -> str:
    """An answer for the challenge (what a client does; tests and tools use this one)."""
    counter = 0
    while True:
        answer = format(counter, "x")
        if leading_zero_bits(work_digest(challenge_text, answer)) >= difficulty:
            return answer
        counter += 1


def check_answer(
    issuer: PeerId,
    challenge_text: object,
    answer: object,
    *,
    purpose: str,
    now_ms: int,
    min_difficulty: int,
) -> Challenge:
    """The challenge, if `answer` solves a live challenge that `issuer` made for `purpose`.

    Raises ProofOfWorkRefused saying what is wrong; reuse is the store's to check, since
    that needs memory.
    """
    if type(challenge_text) is not str or type(answer) is not str:
        raise ProofOfWorkRefused(
            "send the 'challenge' from GET /api/v1/accounts/challenge and your 'answer' as text"
        )
    if len(challenge_text) > MAX_CHALLENGE_CHARS or not challenge_text.startswith(PREFIX):
        raise ProofOfWorkRefused("the challenge is not one this node issued; fetch a new one")
    if not 0 < len(answer) <= MAX_ANSWER_CHARS or not answer.isascii():
        raise ProofOfWorkRefused(f"the answer must be 1 to {MAX_ANSWER_CHARS} ASCII characters")
    encoded = challenge_text[len(PREFIX) :]
    try:
        frame = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        verified = open_envelope(frame, expect_domain=DOMAIN, now_ms=now_ms)
    except (binascii.Error, ValueError, WireError) as exc:
        why = "it has expired" if "expired" in str(exc) else "it is damaged or not from here"
        raise ProofOfWorkRefused(f"the challenge cannot be used: {why}; fetch a new one") from None
    envelope = verified.envelope
    body = envelope.body
    if envelope.author != issuer:
        raise ProofOfWorkRefused("the challenge was issued by another node; fetch one here")
    if type(body) is not dict or body.get("p") != purpose or type(body.get("d")) is not int:
        raise ProofOfWorkRefused(f"the challenge is not for {purpose}; fetch a new one")
    difficulty = body["d"]
    if difficulty < min_difficulty:
        raise ProofOfWorkRefused("the challenge is easier than this node now asks; fetch a new one")
    if leading_zero_bits(work_digest(challenge_text, answer)) < difficulty:
        raise ProofOfWorkRefused(
            f"the answer does not solve the challenge: SHA-256(challenge + ':' + answer) must "
            f"start with {difficulty} zero bits"
        )
    return Challenge(challenge_text, difficulty, purpose, envelope.expires_at_ms)


__all__ = [
    "DOMAIN",
    "Challenge",
    "challenge_id",
    "check_answer",
    "issue_challenge",
    "leading_zero_bits",
    "solve",
    "work_digest",
]
