"""Model runners inside the GPU host: results, progress, faults and cancellation between steps."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
import trio

from lightbox_node.dispatch.protocol import Done, Fault, Progress, Started
from lightbox_node.dispatch.test_tasks import NO_IMAGE_RESOLVER, RunContext
from tests.runners.harness import Blobs, decode, inputs_for, photo

PROMPT = {"prompt": "a photo of the cat"}


async def test_a_job_streams_progress_and_returns_pngs(runners: dict, host_for: Any) -> None:
    harness = await host_for({"txt2img": runners["txt2img"]})
    job = harness.submit("txt2img", {**PROMPT, "seed": 1, "batch_size": 2, "steps": 3})
    result = await harness.outcome(job)
    assert isinstance(result, Done), result
    assert [name for name, _ in result.outputs] == ["images", "images"]
    assert all(decode(data).size == (64, 64) for _, data in result.outputs)
    messages = harness.of(job)
    assert isinstance(messages[0], Started)
    progress = [m for m in messages if isinstance(m, Progress)]
    assert progress and progress[-1].fraction == 1.0


async def test_image_inputs_are_fetched_through_the_resolver(
    runners: dict, host_for: Any, blobs: Blobs
) -> None:
    harness = await host_for({"img2img": runners["img2img"]})
    job = harness.submit("img2img", {**PROMPT, "image": blobs.put(photo(72, 64)), "seed": 2})
    result = await harness.outcome(job)
    assert isinstance(result, Done), result
    assert decode(result.outputs[0][1]).size == (72, 64)


async def test_a_host_without_a_resolver_faults_image_jobs_before_starting(
    runners: dict, host_for: Any, blobs: Blobs
) -> None:
    harness = await host_for({"img2img": runners["img2img"]}, images=False)
    job = harness.submit("img2img", {**PROMPT, "image": blobs.put(photo())})
    result = await harness.outcome(job)
    assert isinstance(result, Fault) and result.reason == NO_IMAGE_RESOLVER
    assert not any(isinstance(m, Started) for m in harness.of(job))


async def test_a_nan_result_is_a_fault_and_is_not_delivered(runners: dict, host_for: Any) -> None:
    decoder = runners["txt2img"].load().vae.decoder
    handle = decoder.register_forward_hook(lambda m, a, out: torch.full_like(out, float("nan")))
    try:
        harness = await host_for({"txt2img": runners["txt2img"]})
        result = await harness.outcome(harness.submit("txt2img", {**PROMPT, "seed": 1}))
    finally:
        handle.remove()
    assert isinstance(result, Fault)
    assert "NaN" in result.reason and "not delivered" in result.reason
    assert not any(isinstance(m, Done) for m in harness.sent)


async def test_a_single_colour_result_is_a_fault(runners: dict, host_for: Any) -> None:
    decoder = runners["txt2img"].load().vae.decoder
    handle = decoder.register_forward_hook(lambda m, a, out: torch.zeros_like(out))
    try:
        harness = await host_for({"txt2img": runners["txt2img"]})
        result = await harness.outcome(harness.submit("txt2img", {**PROMPT, "seed": 1}))
    finally:
        handle.remove()
    assert isinstance(result, Fault) and "one flat colour all over" in result.reason


async def test_cancelling_stops_the_worker_within_one_step(
    runners: dict, forward_calls: Any
) -> None:
    runner = runners["txt2img"]
    context = RunContext()
    unet_calls = forward_calls(runner.load().unet, context.cancelled.is_set)
    values = inputs_for(runner, {**PROMPT, "seed": 1, "steps": 150})
    ended = trio.Event()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def job() -> None:
                try:
                    await runner.run(values, context)
                finally:
                    ended.set()

            nursery.start_soon(job)
            while len(unet_calls) < 3:
                await trio.sleep(0.002)
            scope.cancel()
    assert scope.cancelled_caught and ended.is_set()
    assert context.cancelled.is_set()
    # The flag was seen at the end of the step in flight: at most one step began after it.
    assert unet_calls.count(True) <= 1
    assert len(unet_calls) < 20


@pytest.mark.slow
async def test_a_cancelled_job_frees_its_slot_while_the_node_stays_responsive(
    runners: dict, host_for: Any, forward_calls: Any
) -> None:
    runner = runners["txt2img"]
    unet_calls = forward_calls(runner.load().unet)
    harness = await host_for({"txt2img": runner})
    longest_pause = 0.0
    done_ticking = False

    async def tick() -> None:
        nonlocal longest_pause
        last = time.perf_counter()
        while not done_ticking:
            await trio.sleep(0.005)
            now = time.perf_counter()
            longest_pause = max(longest_pause, now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        job = harness.submit("txt2img", {**PROMPT, "seed": 1, "steps": 150})
        while len(unet_calls) < 5:
            await trio.sleep(0.002)
        harness.cancel(job)
        cancelled_at = time.perf_counter()
        await harness.idle()
        stopped_after = time.perf_counter() - cancelled_at
        done_ticking = True
    assert not any(isinstance(m, Done | Fault) for m in harness.of(job)), "nothing is sent back"
    assert len(unet_calls) < 150
    assert stopped_after < 1.0
    # The worker thread never blocks the trio loop for long (the node keeps answering).
    assert longest_pause < 0.5


async def test_a_job_past_its_deadline_stops_between_steps(runners: dict, host_for: Any) -> None:
    harness = await host_for({"txt2img": runners["txt2img"]})
    started = time.perf_counter()
    job = harness.submit("txt2img", {**PROMPT, "seed": 1, "steps": 150}, deadline_s=0.3)
    result = await harness.outcome(job)
    assert isinstance(result, Fault) and "deadline" in result.reason
    assert time.perf_counter() - started < 2.0


async def test_progress_from_the_worker_thread_reaches_trio_in_order(
    runners: dict,
) -> None:
    seen: list[tuple[float, bool]] = []
    context = RunContext(lambda f, m: seen.append((f, trio.lowlevel.in_trio_run())))
    values = inputs_for(runners["txt2img"], {**PROMPT, "seed": 1, "steps": 5})
    await runners["txt2img"].run(values, context)
    fractions = [f for f, _ in seen]
    assert all(in_trio for _, in_trio in seen), "progress callbacks run on the trio thread"
    assert fractions == sorted(fractions) and len(fractions) == 7
    assert np.isclose(fractions[-2], 0.95) and fractions[-1] == 1.0


async def test_two_slots_share_the_device_one_job_at_a_time(
    runners: dict, host_for: Any, forward_calls: Any
) -> None:
    runner = runners["txt2img"]
    threads: list[int] = []
    forward_calls(runner.load().unet, lambda: threads.append(threading.get_ident()) or False)
    harness = await host_for({"txt2img": runner}, slots=2)
    jobs = [harness.submit("txt2img", {**PROMPT, "seed": s, "steps": 6}) for s in (1, 2)]
    results = [await harness.outcome(job) for job in jobs]
    assert all(isinstance(r, Done) for r in results)
    assert len(threads) == 12
    switches = sum(a != b for a, b in itertools.pairwise(threads))
    assert switches == 1, "the second job's steps start only after the first job's end"
