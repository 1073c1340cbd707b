"""Images arriving in job requests: data URLs or uploaded files, checked with Pillow.

An image is refused, with what to do about it, when it is over the byte limit, is not an
image Pillow can read, is in a format tasks do not take, declares more pixels than allowed
(checked from its header, before a single pixel is decoded: decompression bombs), or does
not decode fully (truncated or damaged). What passes becomes the task layer's image value
`{"blob": "sha256-…", "width", "height", "format"}` with the facts read from the bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

from lightbox_node.api.http import HttpError

FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
DATA_URL = re.compile(r"data:([a-z0-9.+/-]*)((?:;[a-z0-9=-]+)*);base64,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """An image that passed every check, with the facts read from its bytes."""

    data: bytes
    width: int
    height: int
    format: str


def is_data_url(value: object) -> bool:
    return type(value) is str and value[:5].lower() == "data:"


def decode_data_url(text: str, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:` URL, bounded before decoding."""
    match = DATA_URL.match(text[:200])
    if match is None:
        raise HttpError(
            400,
            "bad_data_url",
            f"{field}: a data URL must read 'data:image/png;base64,…' (base64 only)",
            field=field,
        )
    payload = text[match.end() :]
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise _too_big(field, len(payload) * 3 // 4, max_bytes)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(
            400, "bad_data_url", f"{field}: the data URL's base64 is damaged", field=field
        ) from None


def check_image(data: bytes, field: str, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """The image's facts, or an HttpError saying exactly what to fix. CPU-bound: run it in
    a worker thread."""
    if len(data) > max_bytes:
        raise _too_big(field, len(data), max_bytes)
    # Imported here: only nodes that receive images pay for loading Pillow.
    from PIL import Image, UnidentifiedImageError

    # Pillow's own bomb check only warns below twice its limit; ours runs first anyway.
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _bomb(field, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise HttpError(
            422,
            "not_an_image",
            f"{field}: the data is not an image (or not one Pillow can read); send a PNG, "
            "JPEG or WebP file",
            field=field,
        ) from None
    with image:
        kind = FORMATS.get(image.format or "")
        if kind is None:
            raise HttpError(
                415,
                "unsupported_image_format",
                f"{field}: {image.format} images are not taken; convert it to PNG, JPEG or WebP",
                field=field,
            )
        width, height = image.size
        if width * height > max_pixels:
            raise _bomb(field, (width, height), max_pixels)
        try:
            image.load()
        except Image.DecompressionBombError:
            raise _bomb(field, (width, height), max_pixels) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise HttpError(
                422,
                "damaged_image",
                f"{field}: the {kind.upper()} image is truncated or damaged ({exc}); "
                "export it again",
                field=field,
            ) from None
    return CheckedImage(data, width, height, kind)


def image_value(blob_id: str, image: CheckedImage) -> dict[str, Any]:
    """The task layer's value for a stored image."""
    return {"blob": blob_id, "format": image.format, "height": image.height, "width": image.width}


def sniff_media_type(data: bytes) -> str | None:
    """The media type of an output from its first bytes, for the images tasks make."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _too_big(field: str, size: int, limit: int) -> HttpError:
    return HttpError(
        413,
        "image_too_large",
        f"{field}: the image is {size} bytes, over the {limit}-byte limit; compress it or "
        "send a smaller one",
        field=field,
    )


def _bomb(field: str, size: tuple[int, int] | None, limit: int) -> HttpError:
    declared = (
        f"declares {size[0]}×{size[1]} = {size[0] * size[1]} pixels"
        if size
        else ("declares far too many pixels")
    )
    return HttpError(
        422,
        "too_many_pixels",
        f"{field}: the image {declared}, over the {limit}-pixel limit (a decompression bomb "
        "or simply too big); downscale it",
        field=field,
    )
