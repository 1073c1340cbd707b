"""One error hierarchy for everything Lightbox raises on purpose.

Every message says what was wrong and, where a person can act, what to do.
Callers catch `LightboxError` at boundaries (a peer link, an HTTP request, the
CLI) and never let anything else escape as a crash.
"""

from __future__ import annotations


class LightboxError(Exception):
    """Base of every error Lightbox raises deliberately."""


class ConfigError(LightboxError):
    """The configuration (file, environment or flags) has an unknown key or a bad value."""


class KeyFileError(LightboxError):
    """A node key file is missing, unsafe (readable by others), truncated or corrupt."""


class PeerIdError(LightboxError):
    """A peer id string is malformed or its checksum does not match."""


class WireError(LightboxError):
    """Bytes from the network could not be decoded into a valid message."""


class FrameTooLarge(WireError):
    """A frame or one of its fields is over its size limit."""


class MalformedMessage(WireError):
    """The bytes are not a well-formed message of the expected shape and types."""


class BadSignature(WireError):
    """The signature does not verify for the stated author and domain."""


class WrongDomain(WireError):
    """The message was signed for another purpose than the one expected."""


class Expired(WireError):
    """The message's validity window has passed."""


class FromTheFuture(WireError):
    """The message claims to be issued further ahead than the allowed clock skew."""


class StaleSequence(WireError):
    """The message's sequence number is not newer than one already accepted from its author."""


class StoreError(LightboxError):
    """The database or the blob store failed or holds inconsistent data."""


class BlobNotFound(StoreError):
    """No blob with the requested id is stored here."""


class BlobCorrupt(StoreError):
    """A stored blob's bytes no longer hash to its id (altered or damaged on disk)."""


class MigrationError(StoreError):
    """The database schema is newer than this program or a migration failed."""
