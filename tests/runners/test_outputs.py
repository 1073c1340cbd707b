"""Output validation: NaN or single-colour results are refused with a reason people can read."""

from __future__ import annotations

import numpy as np
import pytest

from lightbox_node.runners.outputs import OutputRejected, check_images, encode_png, to_uint8


def noise(count: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((count, 8, 8, 3), dtype=np.float32)


def test_ordinary_pictures_pass() -> None:
    check_images(noise())


def test_a_picture_with_nan_values_is_refused_naming_which() -> None:
    images = noise(3)
    images[1, 2, 3, 0] = np.nan
    with pytest.raises(OutputRejected, match=r"picture 2 of 3 has 1% NaN or infinite values"):
        check_images(images)


@pytest.mark.parametrize(("level", "word"), [(0.0, "black"), (1.0, "white"), (0.4, "one flat")])
def test_a_single_colour_picture_is_refused(level: float, word: str) -> None:
    images = np.full((1, 8, 8, 3), level, dtype=np.float32)
    images[0, 0, 0, 0] += 1 / 255  # within the tolerance of a flat picture
    with pytest.raises(OutputRejected, match=f"the picture is {word}"):
        check_images(images)


def test_a_single_colour_is_allowed_where_the_input_was_one() -> None:
    check_images(np.zeros((1, 8, 8, 3), dtype=np.float32), flat_allowed=True)
    with pytest.raises(OutputRejected, match="NaN"):
        check_images(np.full((1, 8, 8, 3), np.nan, dtype=np.float32), flat_allowed=True)


def test_pixels_round_and_clip_and_encode_as_png() -> None:
    values = np.array([[[[-0.5, 0.5, 1.5]]]], dtype=np.float32)
    assert to_uint8(values).tolist() == [[[[0, 128, 255]]]]
    assert encode_png(to_uint8(noise(1))[0]).startswith(b"\x89PNG\r\n\x1a\n")
