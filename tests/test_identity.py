"""Node identity: checksummed peer ids, signatures, and the 0600 key file."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.errors import BadSignature, KeyFileError, PeerIdError
from lightbox_node.identity import Identity, PeerId, load_or_create

# The peer id text is "lb1" + lowercase unpadded base32 of (version byte 0x01, 32-byte key,
# 4-byte blake2b checksum personalised "lightbox-peerid"). Restated here as the spec.
_PREFIX = "lb1"
_BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SEED_LINE_HEADER = "lightbox-ed25519-seed-v1:"

_public_keys = st.binary(min_size=32, max_size=32)
_seeds = st.binary(min_size=32, max_size=32)


def _text_of_payload(payload: bytes) -> str:
    """Text form of an arbitrary (version + key) payload with a correct checksum."""
    checksum = hashlib.blake2b(payload, digest_size=4, person=b"lightbox-peerid").digest()
    return _PREFIX + base64.b32encode(payload + checksum).decode().rstrip("=").lower()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, so 0600 must be set on purpose."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# -- peer id text ---------------------------------------------------------------------------


@given(_public_keys)
def test_peer_id_text_parses_back_to_the_same_id(public_key: bytes) -> None:
    peer_id = PeerId(public_key)
    text = str(peer_id)
    assert text.startswith(_PREFIX)
    assert text == text.lower()
    assert PeerId.parse(text) == peer_id
    assert PeerId.parse(text).public_key == public_key


@given(_seeds)
def test_identity_peer_id_is_its_ed25519_public_key(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    assert identity.peer_id.public_key == bytes(nacl.signing.SigningKey(seed).verify_key)


def test_peer_id_text_is_the_checksummed_base32_of_version_and_key() -> None:
    public_key = bytes(range(32))
    assert str(PeerId(public_key)) == _text_of_payload(b"\x01" + public_key)


def test_distinct_keys_have_distinct_peer_id_texts() -> None:
    first, second = bytes(32), bytes(31) + b"\x01"
    assert str(PeerId(first)) != str(PeerId(second))


@given(public_key=_public_keys, data=st.data())
def test_any_single_character_change_is_rejected(public_key: bytes, data: st.DataObject) -> None:
    text = str(PeerId(public_key))
    # The final character also carries base32 padding bits; it has its own test below.
    position = data.draw(st.integers(len(_PREFIX), len(text) - 2), label="position")
    replacement = data.draw(st.sampled_from(_BASE32_ALPHABET), label="replacement")
    changed = text[:position] + replacement + text[position + 1 :]
    if changed == text:
        assert PeerId.parse(changed) == PeerId(public_key)
    else:
        with pytest.raises(PeerIdError):
            PeerId.parse(changed)


def test_every_character_of_the_text_is_significant() -> None:
    peer_id = PeerId(bytes(range(32)))
    text = str(peer_id)
    accepted_variants = []
    for replacement in _BASE32_ALPHABET:
        changed = text[:-1] + replacement
        if changed == text:
            continue
        try:
            PeerId.parse(changed)
        except PeerIdError:
            continue
        accepted_variants.append(changed)
    assert accepted_variants == []


@pytest.mark.parametrize(("ascii_letter", "lookalike"), [("i", "\u0131"), ("s", "\u017f")])
def test_non_ascii_lookalike_characters_are_rejected(ascii_letter: str, lookalike: str) -> None:
    # A key whose text contains the letter, found deterministically.
    for first_byte in range(256):
        text = str(PeerId(bytes([first_byte]) + bytes(31)))
        position = text.find(ascii_letter, len(_PREFIX))
        if position != -1:
            break
    else:  # pragma: no cover - every letter occurs for some first byte
        pytest.fail(f"no peer id text with {ascii_letter!r}")
    changed = text[:position] + lookalike + text[position + 1 :]
    with pytest.raises(PeerIdError):
        PeerId.parse(changed)


_A_VALID_TEXT = str(PeerId(bytes(range(32))))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lb1",
        "lb2" + _A_VALID_TEXT[3:],
        "xx1" + _A_VALID_TEXT[3:],
        _A_VALID_TEXT[3:],
        " " + _A_VALID_TEXT,
        "lb1" + "a" * 200,
        _A_VALID_TEXT + "a" * 100,
        _A_VALID_TEXT[:-1],
        _A_VALID_TEXT[:-8],
        _A_VALID_TEXT + "aaaaaaaa",
        _A_VALID_TEXT[:-1] + "0",
        _A_VALID_TEXT[:-1] + "1",
        _A_VALID_TEXT[:-1] + "8",
        _A_VALID_TEXT[:-1] + "!",
        _A_VALID_TEXT[:10] + "=" + _A_VALID_TEXT[11:],
        _A_VALID_TEXT + "\n",
        _text_of_payload(b"\x02" + bytes(range(32))),  # a future version, valid checksum
        _text_of_payload(b"\x01" + bytes(31)),  # 31-byte key, valid checksum
        _text_of_payload(b"\x01" + bytes(33)),  # 33-byte key, valid checksum
    ],
)
def test_malformed_peer_id_text_is_rejected(text: str) -> None:
    with pytest.raises(PeerIdError):
        PeerId.parse(text)


@pytest.mark.parametrize("value", [None, 42, _A_VALID_TEXT.encode(), [_A_VALID_TEXT]])
def test_peer_id_that_is_not_text_is_rejected(value: object) -> None:
    with pytest.raises(PeerIdError):
        PeerId.parse(value)  # type: ignore[arg-type]


def test_bad_checksum_error_says_the_id_may_be_mistyped() -> None:
    changed = _A_VALID_TEXT[:20] + ("a" if _A_VALID_TEXT[20] != "a" else "b") + _A_VALID_TEXT[21:]
    with pytest.raises(PeerIdError, match="checksum"):
        PeerId.parse(changed)


@pytest.mark.parametrize("public_key", [b"", bytes(31), bytes(33), "x" * 32, bytearray(32)])
def test_peer_id_wraps_exactly_32_bytes(public_key: object) -> None:
    with pytest.raises(PeerIdError):
        PeerId(public_key)  # type: ignore[arg-type]


# -- signatures -----------------------------------------------------------------------------


def test_signature_verifies_for_its_signer_and_message() -> None:
    alice = Identity.from_seed(b"a" * 32)
    alice.peer_id.verify(b"hello", alice.sign(b"hello"))


def test_signature_from_another_key_is_a_bad_signature() -> None:
    alice, mallory = Identity.from_seed(b"a" * 32), Identity.from_seed(b"m" * 32)
    with pytest.raises(BadSignature):
        alice.peer_id.verify(b"hello", mallory.sign(b"hello"))


@given(message=st.binary(max_size=256), data=st.data())
def test_signature_over_a_tampered_message_is_a_bad_signature(
    message: bytes, data: st.DataObject
) -> None:
    alice = Identity.from_seed(b"a" * 32)
    signature = alice.sign(message)
    tampered = data.draw(st.binary(max_size=257).filter(lambda m: m != message), label="tampered")
    with pytest.raises(BadSignature):
        alice.peer_id.verify(tampered, signature)


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_the_wrong_length_is_a_bad_signature(length: int) -> None:
    alice = Identity.from_seed(b"a" * 32)
    signature = (alice.sign(b"hello") * 2)[:length]
    with pytest.raises(BadSignature):
        alice.peer_id.verify(b"hello", signature)


def test_identity_repr_shows_the_peer_id_not_the_seed() -> None:
    seed = b"s" * 32
    identity = Identity.from_seed(seed)
    assert str(identity.peer_id) in repr(identity)
    assert seed.hex() not in repr(identity)
    assert base64.b64encode(seed).decode() not in repr(identity)


# -- key file -------------------------------------------------------------------------------


def _saved_key(tmp_path: Path) -> tuple[Identity, Path]:
    identity = Identity.generate()
    path = tmp_path / "node.key"
    identity.save(path)
    return identity, path


def _write_private(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o600)


def _assert_key_file_error(path: Path, *, contains: str = "") -> None:
    with pytest.raises(KeyFileError) as excinfo:
        Identity.load(path)
    assert str(path) in str(excinfo.value)
    assert contains in str(excinfo.value)


@pytest.mark.usefixtures("permissive_umask")
def test_saved_key_file_has_mode_0600(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    mode = os.stat(path).st_mode
    assert stat.S_ISREG(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_save_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    _saved_key(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_save_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "node.key"
    identity = Identity.generate()
    identity.save(path)
    assert Identity.load(path).peer_id == identity.peer_id


def test_key_file_names_its_peer_id_for_people_to_read(tmp_path: Path) -> None:
    identity, path = _saved_key(tmp_path)
    comments = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
    assert any(str(identity.peer_id) in ln for ln in comments)


def test_loaded_identity_is_the_saved_identity(tmp_path: Path) -> None:
    original, path = _saved_key(tmp_path)
    loaded = Identity.load(path)
    assert loaded.peer_id == original.peer_id
    message = b"capability record"
    signature = loaded.sign(message)
    original.peer_id.verify(message, signature)
    with pytest.raises(BadSignature):
        original.peer_id.verify(message + b"!", signature)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o666, 0o610, 0o601])
def test_key_readable_by_group_or_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    _, path = _saved_key(tmp_path)
    path.chmod(mode)
    _assert_key_file_error(path, contains="chmod 600")


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_private_to_its_owner_loads(tmp_path: Path, mode: int) -> None:
    original, path = _saved_key(tmp_path)
    path.chmod(mode)
    assert Identity.load(path).peer_id == original.peer_id


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    _assert_key_file_error(tmp_path / "absent.key", contains="lightbox-node init")


def test_empty_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    _write_private(path, b"")
    _assert_key_file_error(path)


def test_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir(mode=0o700)
    _assert_key_file_error(path)


def test_key_path_that_is_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    os.mkfifo(path, 0o600)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            Identity.load(path)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():
        with path.open("wb"):  # let the blocked reader finish before failing
            pass
        reader.join(timeout=5)
        pytest.fail("Identity.load blocked reading from a named pipe")
    assert isinstance(outcome[0], KeyFileError)
    assert str(path) in str(outcome[0])


def test_truncated_key_file_is_refused_at_every_length(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    content = path.read_bytes()
    assert content.endswith(b"\n")
    damaged = tmp_path / "damaged.key"
    # Every cut that loses more than the final newline.
    for length in range(len(content) - 1):
        damaged.unlink(missing_ok=True)
        _write_private(damaged, content[:length])
        _assert_key_file_error(damaged)


def test_key_file_without_its_final_newline_still_loads(tmp_path: Path) -> None:
    original, path = _saved_key(tmp_path)
    content = path.read_bytes()
    path.unlink()
    _write_private(path, content.rstrip(b"\n"))
    assert Identity.load(path).peer_id == original.peer_id


def _seed_field_span(text: str) -> tuple[int, int]:
    start = text.index(_SEED_LINE_HEADER) + len(_SEED_LINE_HEADER)
    return start, text.index(":", start)


def test_flipped_character_in_the_seed_is_refused(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    text = path.read_text()
    start, end = _seed_field_span(text)
    damaged = tmp_path / "damaged.key"
    for position in range(start, end):
        if text[position] == "=":
            continue
        index = _BASE64_ALPHABET.index(text[position])
        # Flipping the top bit of a 6-bit group always changes a seed bit, even in the last
        # group, whose low bits are padding; the low bit is tried where it is a seed bit.
        masks = [0b100000] if text[position + 1] == "=" else [0b100000, 0b000001]
        for mask in masks:
            changed = text[:position] + _BASE64_ALPHABET[index ^ mask] + text[position + 1 :]
            damaged.unlink(missing_ok=True)
            _write_private(damaged, changed.encode())
            _assert_key_file_error(damaged)


def test_flipped_character_in_the_seed_checksum_is_refused(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    text = path.read_text()
    _, seed_end = _seed_field_span(text)
    position = seed_end + 1
    replacement = "0" if text[position] != "0" else "1"
    path.unlink()
    _write_private(path, (text[:position] + replacement + text[position + 1 :]).encode())
    _assert_key_file_error(path)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe not ascii",
        b"# only a comment\n",
        b"lightbox-ed25519-seed-v2:AAAA:00000000\n",
        b"lightbox-ed25519-seed-v1:not base64!:00000000\n",
    ],
)
def test_corrupt_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    _write_private(path, content)
    _assert_key_file_error(path)


def test_two_key_lines_are_refused(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    _, other = _saved_key(tmp_path / "other")
    key_line = next(ln for ln in other.read_text().splitlines() if not ln.startswith("#"))
    with path.open("a") as file:
        file.write(key_line + "\n")
    _assert_key_file_error(path)


def test_save_refuses_to_overwrite_an_existing_key(tmp_path: Path) -> None:
    original, path = _saved_key(tmp_path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError) as excinfo:
        Identity.generate().save(path)
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == before
    assert Identity.load(path).peer_id == original.peer_id


def test_load_or_create_creates_once_then_loads_the_same_identity(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    created, was_created = load_or_create(path)
    assert was_created is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded, was_created_again = load_or_create(path)
    assert was_created_again is False
    assert loaded.peer_id == created.peer_id
    created.peer_id.verify(b"m", loaded.sign(b"m"))


def test_load_or_create_does_not_replace_an_unsafe_key(tmp_path: Path) -> None:
    _, path = _saved_key(tmp_path)
    path.chmod(0o644)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create(path)
    assert path.read_bytes() == before
