"""GPU host overhead: each task through the GpuHost loop vs a bare pipeline call, and idle gaps.

Prints, from one run, per task: the wall time of a job pushed through a `GpuHost`
(validation, image fetch and decode, the worker thread, the device lane, progress, output
checks, PNG encoding, the result message) beside the bare library call on the same loaded
model with the same settings (a diffusers pipeline call returning PIL images, `rembg.remove`,
the RRDBNet forward), the two measured alternately in the same process, the fastest of each
kept (the run least disturbed by anything else on the machine); the overhead against the
bare call and against the bare call plus PNG encoding of its result (what any host must do
to deliver it); and, with jobs queued the way a queue node pushes them (as many as the
host's slots, plus one prefetched), the idle gap of the device between one job's model work
and the next one's, as a share of the model work, with one slot and with two. On a CPU the
same overheads are also given in CPU time, which other processes on the machine do not
stretch. Targets: overhead ≤ 1 %, idle gap < 1 %.

By default the tiny random-weight models run on this machine's device. With `--full-size`
(meant for a CUDA GPU) txt2img and img2img run on Stable Diffusion 1.5's full architecture
with random weights, saved in fp16 and loaded through the catalog like real weights, at
512×512 with 25 steps, and the table adds steps per second for both paths.

    python bench/gpu_host.py [--device auto] [--size 256] [--steps 10] [--repeats 7]
                             [--queued 6] [--tasks txt2img,upscale] [--full-size]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import trio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightbox_node.dispatch.protocol import Done, Fault
from lightbox_node.runners import build_runners, build_tiny_models
from lightbox_node.runners.device import DeviceLane
from lightbox_node.runners.inpaint import outpaint_canvas
from lightbox_node.runners.outputs import encode_png
from lightbox_node.runners.random_weights import build_sd15_pipeline
from lightbox_node.runners.rrdbnet import upscale
from lightbox_node.tasks import load_catalog
from tests.runners.harness import Blobs, HostHarness, photo

TASKS = (
    "txt2img",
    "img2img",
    "inpaint",
    "outpaint",
    "instruct_edit",
    "remove_background",
    "upscale",
)

# -- device timings -------------------------------------------------------------------------

LANE_SPANS: list[tuple[float, float]] = []
"""(start, end) of every hold of the device lane: when the device was working for a job."""

_hold = DeviceLane.hold


@contextmanager
def _timed_hold(self: DeviceLane, context: Any) -> Iterator[None]:
    with _hold(self, context):
        start = time.perf_counter()
        try:
            yield
        finally:
            LANE_SPANS.append((start, time.perf_counter()))


DeviceLane.hold = _timed_hold  # type: ignore[method-assign]


# -- jobs and their bare equivalents --------------------------------------------------------


def job_inputs(task: str, blobs: Blobs, size: int, steps: int) -> dict[str, Any]:
    picture = blobs.put(photo(size, size, seed=1))
    common = {"prompt": "a photo of the cat", "steps": steps, "seed": 1}
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    side = max(8, size // 8 // 8 * 8)
    return {
        "txt2img": {**common, "width": size, "height": size},
        "img2img": {**common, "image": picture, "strength": 1.0},
        "inpaint": {**common, "image": picture, "mask": blobs.put(Image.fromarray(mask))},
        "outpaint": {
            **common,
            "image": picture,
            **{"left": side, "right": side, "top": side, "bottom": side, "feather": side // 2},
        },
        "instruct_edit": {
            "instruction": "make it winter",
            "image": picture,
            "steps": steps,
            "seed": 1,
        },
        "remove_background": {"image": picture},
        "upscale": {"image": blobs.put(photo(size // 2, size // 2, seed=1)), "tile_size": 0},
    }[task]


def bare_call(task: str, runner: Any, inputs: dict[str, Any]) -> Callable[[], list[Any]]:
    """The same work through the library alone, set up once; returns its pictures."""
    import diffusers

    schema_defaults = {i.name: i.default for i in runner.schema.inputs if i.default is not None}
    values = {**schema_defaults, **inputs}
    source = None
    if "image" in values:  # the same picture the job's blob holds
        source = photo(values["image"]["width"], values["image"]["height"], seed=1)
    if task == "remove_background":
        import rembg

        session = runner.load()
        return lambda: [rembg.remove(source, session=session)]
    if task == "upscale":
        net = runner.load()
        device = runner.device
        tensor = torch.from_numpy(np.asarray(source).copy()).permute(2, 0, 1)[None]
        tensor = tensor.to(device=device.name, dtype=device.dtype) / 255.0

        def enlarge() -> list[Any]:
            out = upscale(net, tensor, tile=int(values["tile_size"]))[0].clamp(0, 1)
            array = (out.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
            return [Image.fromarray(array)]

        return enlarge
    base = runner.load()
    scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(base.scheduler.config)
    pipe = getattr(diffusers, runner.job_class)(
        **{k: v for k, v in base.components.items() if k != "scheduler"},
        scheduler=scheduler,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    call: dict[str, Any] = {
        "num_inference_steps": values["steps"],
        "guidance_scale": values["guidance_scale"],
    }
    if task == "txt2img":
        call.update(prompt=values["prompt"], width=values["width"], height=values["height"])
    elif task == "img2img":
        call.update(prompt=values["prompt"], image=source, strength=values["strength"])
    elif task == "inpaint":
        square = np.zeros((source.height, source.width), dtype=np.uint8)
        h, w = source.height, source.width
        square[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
        call.update(
            prompt=values["prompt"],
            image=source,
            mask_image=Image.fromarray(square),
            width=w,
            height=h,
        )
    elif task == "outpaint":
        sides = {s: values[s] for s in ("left", "right", "top", "bottom")}
        canvas, _, mask = outpaint_canvas(np.asarray(source), **sides, feather=values["feather"])
        call.update(
            prompt=values["prompt"],
            image=Image.fromarray(canvas),
            mask_image=Image.fromarray(mask.astype(np.uint8) * 255),
            width=canvas.shape[1],
            height=canvas.shape[0],
        )
    elif task == "instruct_edit":
        call.update(
            prompt=values["instruction"],
            image=source,
            image_guidance_scale=values["image_guidance_scale"],
        )

    def generate() -> list[Any]:
        generator = torch.Generator("cpu").manual_seed(1)
        return pipe(**call, generator=generator).images

    return generate


# -- measuring ------------------------------------------------------------------------------


async def through_host(
    harness: HostHarness, task: str, inputs: dict[str, Any]
) -> tuple[float, float]:
    """Wall and CPU seconds (all of this process's threads) of one job through the host."""
    start, cpu = time.perf_counter(), time.process_time()
    result = await harness.outcome(harness.submit(task, inputs, deadline_s=3600))
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    if isinstance(result, Fault):
        print(f"    note: {task} faulted: {result.reason[:120]}")
    return elapsed


async def bare_run(bare: Callable[[], list[Any]]) -> tuple[float, float, list[Any]]:
    start, cpu = time.perf_counter(), time.process_time()
    pictures = await trio.to_thread.run_sync(bare)
    return time.perf_counter() - start, time.process_time() - cpu, pictures


async def queued_gaps(
    harness: HostHarness, task: str, inputs: dict[str, Any], count: int
) -> tuple[float, float]:
    """Push `count` jobs the way a queue node does (as many as the host's slots plus one
    prefetched) and return the median idle gap of the device between consecutive jobs and
    the median time it worked on one."""
    LANE_SPANS.clear()
    outstanding = harness.host.slots + harness.host.prefetch
    waiting = [harness.submit(task, inputs, deadline_s=3600) for _ in range(outstanding)]
    pushed = len(waiting)
    while waiting:
        result = await harness.outcome(waiting.pop(0))
        assert isinstance(result, Done | Fault)
        if pushed < count:
            waiting.append(harness.submit(task, inputs, deadline_s=3600))
            pushed += 1
    spans = sorted(LANE_SPANS)
    gaps = [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans)]
    return statistics.median(gaps), statistics.median(end - start for start, end in spans)


async def start_host(
    nursery: trio.Nursery, task: str, runner: Any, blobs: Blobs, slots: int
) -> HostHarness:
    harness = HostHarness({task: runner}, blobs.fetch, slots)
    await nursery.start(harness.host.run)
    harness.host.attach(HostHarness.QUEUE, harness.receive)
    return harness


async def bench_task(
    task: str, runner: Any, blobs: Blobs, args: argparse.Namespace, nursery: trio.Nursery
) -> dict[str, Any]:
    inputs = job_inputs(task, blobs, args.size, args.steps)
    harness = await start_host(nursery, task, runner, blobs, slots=1)
    bare = bare_call(task, runner, inputs)
    await through_host(harness, task, inputs)  # warm up: load, first-call costs
    await trio.to_thread.run_sync(bare)
    host_times, bare_times, encode_times = [], [], []
    host_cpu, bare_cpu = [], []
    for _ in range(args.repeats):
        wall, cpu = await through_host(harness, task, inputs)
        host_times.append(wall)
        host_cpu.append(cpu)
        wall, cpu, pictures = await bare_run(bare)
        bare_times.append(wall)
        bare_cpu.append(cpu)
        start = time.process_time()
        for picture in pictures:
            encode_png(picture)
        encode_times.append(time.process_time() - start)
    gap_1, work_1 = await queued_gaps(harness, task, inputs, args.queued)
    harness.host.detach(HostHarness.QUEUE)
    harness = await start_host(nursery, task, runner, blobs, slots=2)
    gap_2, work_2 = await queued_gaps(harness, task, inputs, args.queued)
    harness.host.detach(HostHarness.QUEUE)
    # The fastest of the alternating runs: the one least disturbed by anything else on the
    # machine, for both paths alike.
    host, bare_s, encode = min(host_times), min(bare_times), min(encode_times)
    return {
        "task": task,
        "host": host,
        "bare": bare_s,
        "overhead": host / bare_s - 1,
        "overhead_delivered": host / (bare_s + encode) - 1,
        "cpu_overhead": min(host_cpu) / min(bare_cpu) - 1,
        "cpu_overhead_delivered": min(host_cpu) / (min(bare_cpu) + encode) - 1,
        "gap_1": gap_1,
        "share_1": gap_1 / work_1,
        "gap_2": gap_2,
        "share_2": gap_2 / work_2,
        "steps": inputs.get("steps"),
    }


def full_size_runners(work: Path, device: str) -> tuple[dict[str, Any], list[str]]:
    """txt2img / img2img on SD 1.5's architecture with random weights, through the catalog."""
    folder = work / "models" / "sd15-random"
    pipe = build_sd15_pipeline("txt2img", work_dir=work)
    pipe.to(torch.float16).save_pretrained(str(folder), safe_serialization=True)
    del pipe
    catalog_dir = work / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "sd15-random.toml").write_text(
        'id = "sd15-random"\ntitle = "SD 1.5 architecture, random weights"\n'
        'tasks = ["txt2img", "img2img"]\npipeline = "stable-diffusion"\nlicense = "Apache-2.0"\n'
        f'[weights]\npath = "{folder}"\n'
    )
    return build_runners(load_catalog(catalog_dir), work, device=device)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        work = Path(tmp)
        if args.full_size:
            args.size, args.steps = args.size or 512, args.steps or 25
            runners, _ = full_size_runners(work, args.device)
            tasks = [t for t in args.tasks if t in runners]
        else:
            args.size, args.steps = args.size or 256, args.steps or 10
            build_tiny_models(work)
            runners, _ = build_runners(load_catalog(), work, device=args.device)
            tasks = args.tasks
        device = next(iter(runners.values())).device
        print(
            f"device {device.name} ({str(device.dtype).removeprefix('torch.')}), "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs; "
            f"{'SD 1.5 full size, random weights' if args.full_size else 'tiny models'}, "
            f"{args.size}×{args.size} px, {args.steps} steps, fastest of {args.repeats} "
            "alternating runs"
        )
        blobs = Blobs()
        rows = []
        async with trio.open_nursery() as nursery:
            for task in tasks:
                rows.append(await bench_task(task, runners[task], blobs, args, nursery))
            nursery.cancel_scope.cancel()
    print()
    header = (
        "task               host job   bare call  overhead  vs bare+PNG"
        "   idle gap, 1 slot    idle gap, 2 slots"
    )
    if device.type == "cpu":
        header += "   CPU time: overhead  vs bare+PNG"
    if args.full_size:
        header += "   it/s host  it/s bare"
    print(header)
    for row in rows:
        line = (
            f"{row['task']:17s} {row['host'] * 1000:8.1f} ms {row['bare'] * 1000:8.1f} ms "
            f"{row['overhead']:+8.1%}  {row['overhead_delivered']:+9.1%}   "
            f"{row['gap_1'] * 1000:6.2f} ms ({row['share_1']:6.2%})  "
            f"{row['gap_2'] * 1000:6.2f} ms ({row['share_2']:6.2%})"
        )
        if device.type == "cpu":
            line += (
                f"             {row['cpu_overhead']:+8.1%}  {row['cpu_overhead_delivered']:+9.1%}"
            )
        if args.full_size and row["steps"]:
            line += f"   {row['steps'] / row['host']:9.2f}  {row['steps'] / row['bare']:9.2f}"
        print(line)
    if device.type == "cpu":
        print(
            "\nOn a CPU the model work is CPU time, so the CPU-time columns (all threads of this "
            "process)\nshow the overhead even when other processes share the machine and "
            "stretch wall times."
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, help="picture side in px (256; full size: 512)")
    parser.add_argument("--steps", type=int, help="denoising steps (10; full size: 25)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queued", type=int, default=6, help="jobs queued for the idle gap")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--full-size", action="store_true")
    args = parser.parse_args()
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(args.tasks) - set(TASKS)
    if unknown:
        parser.error(f"unknown task(s) {', '.join(sorted(unknown))}; known: {', '.join(TASKS)}")
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
