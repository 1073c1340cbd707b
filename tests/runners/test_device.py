"""Device selection: automatic or configured, with the precision each device runs in."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from lightbox_node.dispatch.test_tasks import Interrupted, RunContext
from lightbox_node.runners import DeviceUnavailable, select_device
from lightbox_node.runners.device import DeviceLane


def test_the_cpu_runs_fp32_without_attention_slicing() -> None:
    device = select_device("cpu")
    assert (device.name, device.dtype, device.attention_slicing) == ("cpu", torch.float32, False)
    assert device.onnx_providers()[-1] == "CPUExecutionProvider"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_auto_falls_back_to_the_cpu_and_a_missing_gpu_is_named() -> None:
    assert select_device(None).name == select_device("auto").name == "cpu"
    with pytest.raises(DeviceUnavailable, match=r"finds no CUDA GPU.*'auto' or 'cpu'"):
        select_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_fp16_with_attention_slicing() -> None:
    device = select_device("auto")
    assert (device.type, device.dtype, device.attention_slicing) == ("cuda", torch.float16, True)


def test_an_unknown_device_name_lists_the_choices() -> None:
    with pytest.raises(DeviceUnavailable, match="use one of auto, cpu, cuda, cuda:<n>, mps"):
        select_device("tpu")


def test_the_device_lane_holds_one_job_and_a_waiting_job_can_be_cancelled() -> None:
    lane, first, waiting = DeviceLane(), RunContext(), RunContext()
    outcome: list[str] = []

    def wait_for_the_lane() -> None:
        try:
            with lane.hold(waiting):
                outcome.append("ran")
        except Interrupted:
            outcome.append("cancelled")

    with lane.hold(first):
        assert lane.busy
        thread = threading.Thread(target=wait_for_the_lane)
        thread.start()
        time.sleep(0.1)
        assert outcome == []
        waiting.cancelled.set()
        thread.join(timeout=2)
    assert outcome == ["cancelled"] and not lane.busy
