"""Results are named after the task's declared outputs, an image list taking the batch."""

from __future__ import annotations

from lightbox_node.dispatch.queue import output_names
from lightbox_node.dispatch.test_tasks import EchoTask
from lightbox_node.tasks import BUILTIN_TASKS


def test_a_batch_of_pictures_gets_distinct_names_under_its_image_list_output() -> None:
    assert output_names(BUILTIN_TASKS["txt2img"], 3) == ["images", "images[1]", "images[2]"]


def test_single_outputs_keep_their_names_and_extras_are_numbered() -> None:
    assert output_names(EchoTask.schema, 1) == ["text"]
    assert output_names(EchoTask.schema, 2) == ["text", "output1"]
    assert output_names(None, 2) == ["output0", "output1"]
