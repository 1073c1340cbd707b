"""Edit by instruction on the tiny InstructPix2Pix model."""

from __future__ import annotations

import numpy as np
import pytest

from lightbox_node.dispatch.test_tasks import RunContext
from tests.runners.harness import Blobs, decode, inputs_for, photo, pixels


@pytest.mark.slow
async def test_an_edit_keeps_the_size_follows_the_seed_and_batches_independently(
    runners: dict, blobs: Blobs
) -> None:
    runner = runners["instruct_edit"]
    values = {
        "instruction": "make it winter",
        "image": blobs.put(photo(80, 64)),
        "seed": 9,
        "batch_size": 2,
    }
    context = RunContext(images=blobs.fetch)
    first = await runner.run(inputs_for(runner, values), context)
    again = await runner.run(inputs_for(runner, values), RunContext(images=blobs.fetch))
    assert [name for name, _ in first] == ["images", "images"]
    assert [decode(data).size for _, data in first] == [(80, 64), (80, 64)]
    assert first == again
    assert np.abs(pixels(first[0][1]) - pixels(first[1][1])).mean() > 5
