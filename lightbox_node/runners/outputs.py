"""Output validation: a result that is broken is a fault, never a delivered picture.

Diffusion in fp16 can overflow into NaNs (which become a black picture once converted), and a
broken model or VAE gives a single flat colour. Neither is something a person asked for, so a
runner checks its raw result here before encoding it: NaN or infinite values, or a picture of
one colour where the task cannot produce that (any task whose input was not itself one flat
colour), raise `OutputRejected` with a reason the job's owner can read, and the queue node
re-queues or fails the job instead of showing the picture.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from lightbox_node.dispatch.test_tasks import TaskFailed

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

FLAT_TOLERANCE = 2.0 / 255.0
"""A picture whose values span at most this much (on a 0..1 scale) is one flat colour."""

PNG_COMPRESS_LEVEL = 6
"""zlib level for result PNGs: results travel inline, so size matters more than the ~10 ms."""


class OutputRejected(TaskFailed):
    """A runner's result failed validation and was not delivered."""


def is_flat(values: np.ndarray) -> bool:
    """Whether every value lies within `FLAT_TOLERANCE` of the others: floats on a 0..1
    scale (without NaNs), or 8-bit pixels."""
    import numpy as np

    if values.size == 0:
        return True
    spread = float(values.max()) - float(values.min())
    if values.dtype == np.uint8:
        spread /= 255.0
    return spread <= FLAT_TOLERANCE + 1e-9


def check_images(images: np.ndarray, *, what: str = "picture", flat_allowed: bool = False) -> None:
    """Reject a batch (N, H, W, C) of float images on a 0..1 scale that is NaN or flat.

    `flat_allowed` says the task could honestly produce one colour (its input was one).
    """
    import numpy as np

    count = images.shape[0]
    for index in range(count):
        image = images[index]
        which = f"{what} {index + 1} of {count}" if count > 1 else f"the {what}"
        finite = np.isfinite(image)
        if not finite.all():
            share = 1.0 - float(finite.mean())
            raise OutputRejected(
                f"the model produced an invalid result: {which} has {share:.0%} NaN or "
                "infinite values (often an fp16 overflow); it was not delivered. Try another "
                "seed, or ask the host's operator to run this model in fp32"
            )
        if not flat_allowed and is_flat(image):
            level = float(image.mean())
            colour = "black" if level < 0.02 else "white" if level > 0.98 else "one flat colour"
            raise OutputRejected(
                f"the model produced an invalid result: {which} is {colour} all over, which "
                "this task cannot produce from its input; it was not delivered. Try another "
                "seed or prompt"
            )


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images on a 0..1 scale as 8-bit pixels, rounded (call after `check_images`)."""
    import numpy as np

    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_png(image: Image | np.ndarray) -> bytes:
    """PNG bytes of a PIL image or an (H, W, C) uint8 array."""
    from PIL import Image as PILImage

    if not isinstance(image, PILImage.Image):
        array = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
        image = PILImage.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


__all__ = [
    "FLAT_TOLERANCE",
    "OutputRejected",
    "check_images",
    "encode_png",
    "is_flat",
    "to_uint8",
]
