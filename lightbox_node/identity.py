"""Node identity: an Ed25519 key pair, the peer id derived from it, and its key file.

A node *is* its public key. The peer id is a checksummed base32 text form of that key,
so a typo in a configured peer id is caught instead of silently naming nobody.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from lightbox_node.errors import BadSignature, KeyFileError, PeerIdError

PEER_ID_PREFIX = "lb1"
"""Human-visible prefix: 'lb' for Lightbox, '1' for the version of this encoding."""

_PEER_ID_VERSION = b"\x01"
_CHECKSUM_LEN = 4
_KEY_LEN = 32
_KEY_FILE_HEADER = "lightbox-ed25519-seed-v1"


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_LEN, person=b"lightbox-peerid").digest()


@functools.lru_cache(maxsize=65_536)
def _peer_id_text(public_key: bytes) -> str:
    """The text form; cached, since ids are printed in every log line and API row."""
    payload = _PEER_ID_VERSION + public_key
    text = base64.b32encode(payload + _checksum(payload)).decode("ascii")
    return PEER_ID_PREFIX + text.rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class PeerId:
    """The public identity of a node: its raw Ed25519 public key, shown as checksummed base32."""

    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _KEY_LEN:
            raise PeerIdError("a peer id wraps exactly 32 bytes of Ed25519 public key")

    def __str__(self) -> str:
        return _peer_id_text(self.public_key)

    def __repr__(self) -> str:
        return f"PeerId({self})"

    @property
    def short(self) -> str:
        """A short form for logs and tables; not unique, never use it as a key."""
        text = str(self)
        return f"{text[:9]}…{text[-4:]}"

    @classmethod
    def parse(cls, text: str) -> PeerId:
        """Parse the text form, rejecting wrong prefix, bad base32, wrong length or checksum."""
        if not isinstance(text, str):
            raise PeerIdError(f"a peer id is text, got {type(text).__name__}")
        if not text.isascii():
            raise PeerIdError(f"peer id {text[:80]!r} has characters outside ASCII")
        if not text.startswith(PEER_ID_PREFIX):
            raise PeerIdError(f"peer id {text[:80]!r} does not start with {PEER_ID_PREFIX!r}")
        body = text[len(PEER_ID_PREFIX) :].upper()
        if len(body) > 128:
            raise PeerIdError("peer id is too long")
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except (ValueError, base64.binascii.Error) as exc:
            raise PeerIdError(f"peer id {text[:80]!r} is not valid base32") from exc
        if len(raw) != 1 + _KEY_LEN + _CHECKSUM_LEN or raw[:1] != _PEER_ID_VERSION:
            raise PeerIdError(f"peer id {text[:80]!r} has the wrong length or version")
        payload, checksum = raw[:-_CHECKSUM_LEN], raw[-_CHECKSUM_LEN:]
        if _checksum(payload) != checksum:
            raise PeerIdError(f"peer id {text[:80]!r} has a bad checksum (mistyped?)")
        parsed = cls(payload[1:])
        # base32 leaves spare bits in the last character; only the canonical text is accepted,
        # so that one peer has exactly one spelling (allow-lists compare text).
        if str(parsed) != text.lower():
            raise PeerIdError(f"peer id {text[:80]!r} is not in canonical form")
        return parsed

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise BadSignature unless `signature` is this peer's signature over `message`."""
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise BadSignature(f"signature does not verify for peer {self.short}") from exc


class Identity:
    """A node's private signing key. Never serialised except to its own 0600 key file."""

    __slots__ = ("_signing_key", "peer_id")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.peer_id = PeerId(bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity, for tests and simulations."""
        return cls(nacl.signing.SigningKey(seed))

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature."""
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"

    # -- key file ---------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600, atomically; refuse to overwrite an existing key."""
        seed = bytes(self._signing_key)
        line = f"{_KEY_FILE_HEADER}:{base64.b64encode(seed).decode()}:{_checksum(seed).hex()}"
        text = (
            "# Lightbox node identity key. Keep it secret; losing it changes the node's peer id.\n"
            f"# peer id: {self.peer_id}\n{line}\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a node key")
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, path)  # fails if a key appeared meanwhile, unlike rename
        except FileExistsError:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a node key") from None
        except OSError as exc:
            raise KeyFileError(f"cannot write node key {path}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key file, refusing one that others can read or that is damaged."""
        fix_perms = f"run: chmod 600 {path}"
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise KeyFileError(
                f"no node key at {path}; create one with: lightbox-node init"
            ) from None
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"node key {path} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(
                f"node key {path} is readable by group or others (mode {stat.S_IMODE(mode):o}); "
                f"{fix_perms}"
            )
        damaged = (
            f"node key {path} is truncated or corrupt; restore it from a backup, or move it "
            "away and run `lightbox-node init` to make a new identity (a new peer id)"
        )
        try:
            text = path.read_text("ascii")
        except PermissionError:
            raise KeyFileError(
                f"node key {path} cannot be read by this user; run the node as its owner"
            ) from None
        except (UnicodeDecodeError, OSError) as exc:
            raise KeyFileError(damaged) from exc
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != 1:
            raise KeyFileError(damaged)
        parts = lines[0].strip().split(":")
        if len(parts) != 3 or parts[0] != _KEY_FILE_HEADER:
            raise KeyFileError(damaged)
        try:
            seed = base64.b64decode(parts[1], validate=True)
        except ValueError as exc:
            raise KeyFileError(damaged) from exc
        if len(seed) != _KEY_LEN or _checksum(seed).hex() != parts[2]:
            raise KeyFileError(damaged)
        return cls.from_seed(seed)


def load_or_create(path: Path) -> tuple[Identity, bool]:
    """Load the key at `path`, creating one if none exists. Returns (identity, created)."""
    if path.exists() or path.is_symlink():
        return Identity.load(path), False
    identity = Identity.generate()
    identity.save(path)
    return identity, True
