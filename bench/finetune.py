"""Fine-tuning: a finetune job through the GPU host vs a bare training loop; painting with a
concept; merge time vs adapters.

Prints, from one run:

* **Training.** Steps per second of a `finetune` job pushed through a `GpuHost` (schema
  validation, photo fetch and decode, the worker thread, the device lane, a progress report
  and a cancel check every step, the adapter written as a file, the result message) beside
  a bare training loop on the same loaded model with the same photos, settings and
  arithmetic (diffusers + peft, as a training script would be written: no host, no progress,
  no cancel checks), the two run alternately in one process and the fastest of each kept;
  the overhead against the bare loop and against the bare loop plus saving its LoRA weights
  with safetensors (what any host must do to deliver them). Target: overhead ≤ 2 %. On a
  CPU the same overheads are also given in CPU time, which other processes do not stretch.
* **Painting with a concept.** txt2img jobs through the host with a concept's global model
  applied (inside the device lane, base weights put back after) beside the same jobs without
  one, alternately, fastest of each; and the extra time of the first job after the concept
  gets a new global model (parsed and moved to the device once, then cached).
* **Merging.** Time to merge N rank-r adapters of Stable Diffusion 1.5's attention
  projections (128 modules, 93.5 M weights; shapes from the real UNet built on the meta
  device, factors random) into a global model, exactly (Σ wᵢ·Bᵢ·Aᵢ), beside the naive
  average of the factors (mean B · mean A, which is wrong, shown for its cost only), and
  the whole path from adapter files to the global model file; per adapter, and as a ratio
  to one adapter.

By default the tiny random-weight model trains on this machine's device. With
`--full-size` (meant for a CUDA GPU) training runs on Stable Diffusion 1.5's full
architecture with random weights, saved in fp16 and loaded through the catalog like real
weights, at 512 px, with fp16 autocast and gradient checkpointing as the task does.

    python bench/finetune.py [--device auto] [--steps 200] [--resolution 64] [--rank 4]
                             [--repeats 3] [--threads N] [--gen-size 256] [--gen-steps 10]
                             [--merge 1,2,4,8,16,32] [--merge-rank 8] [--full-size]
                             [--skip-train] [--skip-merge]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightbox_node.dispatch.protocol import Fault
from lightbox_node.dispatch.test_tasks import ConceptModel
from lightbox_node.finetune import train as train_module
from lightbox_node.finetune.adapters import (
    TARGET_MODULES,
    encode_adapter,
    encode_global_model,
    parse_global_model,
)
from lightbox_node.finetune.apply import applied, to_device
from lightbox_node.finetune.merge import merge_adapter_files, merge_adapters
from lightbox_node.finetune.train import instance_prompt, prepare_images
from lightbox_node.runners import build_runners, build_tiny_models
from lightbox_node.runners.random_weights import build_sd15_pipeline
from lightbox_node.tasks import load_catalog
from tests.finetune.factories import random_adapter, unet_shapes
from tests.runners.harness import Blobs, HostHarness, photo

PHOTOS = 3
TOKEN = "sks"
SEED = 1

TRAIN_SPANS: list[float] = []
"""Seconds of every `train_lora` call: the job's time less this is the host's own work."""

_train_lora = train_module.train_lora


def _timed_train_lora(*args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return _train_lora(*args, **kwargs)
    finally:
        TRAIN_SPANS.append(time.perf_counter() - start)


train_module.train_lora = _timed_train_lora  # the runner looks it up at each job

# -- training ---------------------------------------------------------------------------------


def job_inputs(blobs: Blobs, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "instance_images": [blobs.put(photo(256, 256, seed=i)) for i in range(PHOTOS)],
        "concept": "bench-dog",
        "concept_token": TOKEN,
        "train_steps": args.steps,
        "resolution": args.resolution,
        "rank": args.rank,
        "learning_rate": 1e-4,
        "seed": SEED,
    }


def bare_loop(runner: Any, args: argparse.Namespace) -> Callable[[], dict[str, torch.Tensor]]:
    """The same training as a plain script: set up once, returns the LoRA weights."""
    import diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = runner.load()
    unet, vae = pipe.unet, pipe.vae
    device = unet.device
    photos = [photo(256, 256, seed=i) for i in range(PHOTOS)]
    half = device.type == "cuda"
    autocast_dtype = unet.dtype if half and unet.dtype != torch.float32 else None

    def train() -> dict[str, torch.Tensor]:
        generator = torch.Generator("cpu").manual_seed(SEED)
        pixels = prepare_images(photos, args.resolution).to(device, vae.dtype)
        with torch.no_grad():
            dist = vae.encode(pixels).latent_dist
            text, _ = pipe.encode_prompt(instance_prompt(TOKEN), device, 1, False)
        schedule = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
        flags = {name: p.requires_grad for name, p in unet.named_parameters()}
        unet.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            # peft's own injection, as the task does: diffusers' `unet.add_adapter` would also
            # make every forward walk the UNet's modules (10 % of a tiny model's step).
            config = LoraConfig(
                r=args.rank, lora_alpha=args.rank, target_modules=list(TARGET_MODULES)
            )
            inject_adapter_in_model(config, unet, adapter_name="bare")
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
        optimiser = torch.optim.AdamW(params, lr=1e-4)
        scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
        if half:
            unet.enable_gradient_checkpointing()
        unet.train()
        order: list[int] = []
        for _ in range(args.steps):
            if not order:
                order = torch.randperm(PHOTOS, generator=generator).tolist()
            i = order.pop()
            sample = torch.randn(dist.mean[i : i + 1].shape, generator=generator).to(device)
            clean = (dist.mean[i : i + 1] + dist.std[i : i + 1] * sample.to(vae.dtype)) * float(
                vae.config.scaling_factor
            )
            noise = torch.randn(clean.shape, generator=generator).to(device, clean.dtype)
            t = torch.randint(0, 1000, (1,), generator=generator).to(device)
            noisy = schedule.add_noise(clean, noise, t)
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                predicted = unet(noisy, t, encoder_hidden_states=text).sample.float()
            loss = F.mse_loss(predicted, noise.float())
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimiser)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if scaler is not None:
                scaler.step(optimiser)
                scaler.update()
            else:
                optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            loss.item()  # a training script logs its loss every step
        lora = get_peft_model_state_dict(unet, adapter_name="bare")
        weights = {k: v.detach().float().cpu() for k, v in lora.items()}
        # Give the shared model back for the next run (not part of a script's work).
        unet.unload_lora()
        if half:
            unet.disable_gradient_checkpointing()
        unet.eval()
        for name, p in unet.named_parameters():
            p.requires_grad_(flags[name])
        return weights

    return train


async def through_host(harness: HostHarness, inputs: dict[str, Any]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = await harness.outcome(harness.submit("finetune", inputs, deadline_s=36_000))
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    if isinstance(result, Fault):
        raise SystemExit(f"the finetune job faulted: {result.reason}")
    return elapsed


async def bare_run(train: Callable[[], dict[str, torch.Tensor]]) -> tuple[float, float, float]:
    from safetensors.torch import save

    start, cpu = time.perf_counter(), time.process_time()
    weights = await trio.to_thread.run_sync(train)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    start = time.process_time()
    save(weights)
    return wall, used, time.process_time() - start


async def bench_training(runner: Any, args: argparse.Namespace) -> dict[str, float]:
    blobs = Blobs()
    inputs = job_inputs(blobs, args)
    train = bare_loop(runner, args)
    host_wall, host_cpu, bare_wall, bare_cpu, saves = [], [], [], [], []
    async with trio.open_nursery() as nursery:
        harness = HostHarness({"finetune": runner}, blobs.fetch, 1)
        await nursery.start(harness.host.run)
        harness.host.attach(HostHarness.QUEUE, harness.receive)
        warm = dict(inputs, train_steps=50)
        await through_host(harness, warm)  # warm up: load, first-call costs
        await trio.to_thread.run_sync(train)
        outside = []
        for _ in range(args.repeats):
            wall, cpu = await through_host(harness, inputs)
            host_wall.append(wall)
            host_cpu.append(cpu)
            outside.append(wall - TRAIN_SPANS[-1])
            wall, cpu, saved = await bare_run(train)
            bare_wall.append(wall)
            bare_cpu.append(cpu)
            saves.append(saved)
        harness.host.detach(HostHarness.QUEUE)
        nursery.cancel_scope.cancel()
    host, bare, save = min(host_wall), min(bare_wall), min(saves)
    return {
        "host": host,
        "bare": bare,
        "median_overhead": statistics.median(host_wall) / statistics.median(bare_wall) - 1,
        "outside": statistics.median(outside),
        "host_steps": args.steps / host,
        "bare_steps": args.steps / bare,
        "overhead": host / bare - 1,
        "overhead_delivered": host / (bare + save) - 1,
        "cpu_overhead": min(host_cpu) / min(bare_cpu) - 1,
        "cpu_overhead_delivered": min(host_cpu) / (min(bare_cpu) + save) - 1,
    }


async def paint(harness: HostHarness, inputs: dict[str, Any]) -> float:
    start = time.perf_counter()
    result = await harness.outcome(harness.submit("txt2img", inputs, deadline_s=36_000))
    if isinstance(result, Fault):
        raise SystemExit(f"the txt2img job faulted: {result.reason}")
    return time.perf_counter() - start


async def bench_generation(runner: Any, args: argparse.Namespace) -> dict[str, float]:
    """txt2img jobs through the host with and without a concept (its global model applied)."""
    unet = runner.load().unet
    shapes = unet_shapes(unet)
    data = encode_global_model(
        merge_adapters([random_adapter(shapes, rank=8, seed=1, concept="bench-dog")])
    )
    digest = hashlib.sha256(data).hexdigest()
    version = [0]

    async def resolve(name: str) -> ConceptModel:
        # Each "version" has its own id, so the host parses it anew, as after a merge.
        await trio.lowlevel.checkpoint()
        return ConceptModel(name, f"sha256-{digest[:-4]}{version[0]:04x}", data)

    plain = {"prompt": f"a photo of {TOKEN}", "seed": 1, "steps": args.gen_steps}
    plain.update(width=args.gen_size, height=args.gen_size)
    with_concept = dict(plain, concept="bench-dog")
    plain_times, concept_times, first_times = [], [], []
    async with trio.open_nursery() as nursery:
        harness = HostHarness({"txt2img": runner}, None, 1)
        harness.host.concepts = resolve
        await nursery.start(harness.host.run)
        harness.host.attach(HostHarness.QUEUE, harness.receive)
        await paint(harness, with_concept)  # warm up
        for _ in range(args.repeats):
            plain_times.append(await paint(harness, plain))
            concept_times.append(await paint(harness, with_concept))
            version[0] += 1
            first_times.append(await paint(harness, with_concept))  # a new version
        harness.host.detach(HostHarness.QUEUE)
        nursery.cancel_scope.cancel()
    bare, applied = min(plain_times), min(concept_times)
    device = runner.device
    load = fastest(
        lambda: to_device(parse_global_model(data), device.name, device.dtype), args.repeats
    )
    return {
        "plain": bare,
        "concept": applied,
        "overhead": applied / bare - 1,
        "first": min(first_times) - applied,
        "load": load,
        "model_mb": len(data) / 1e6,
    }


def full_size_runners(work: Path, device: str) -> dict[str, Any]:
    """finetune and txt2img on SD 1.5's architecture with random weights (fp16), through
    the catalog."""
    folder = work / "models" / "sd15-random"
    pipe = build_sd15_pipeline("txt2img", work_dir=work)
    pipe.to(torch.float16).save_pretrained(str(folder), safe_serialization=True)
    del pipe
    catalog_dir = work / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "sd15-random.toml").write_text(
        'id = "sd15-random"\ntitle = "SD 1.5 architecture, random weights"\n'
        'tasks = ["finetune", "txt2img"]\npipeline = "stable-diffusion"\n'
        f'license = "Apache-2.0"\n[weights]\npath = "{folder}"\n'
    )
    runners, reasons = build_runners(load_catalog(catalog_dir), work, device=device)
    if "finetune" not in runners:
        raise SystemExit("finetune is not served: " + "; ".join(reasons))
    return runners


# -- merging ----------------------------------------------------------------------------------


def sd15_shapes() -> dict[str, tuple[int, int]]:
    """Stable Diffusion 1.5's UNet attention projections (built on the meta device: no weights)."""
    import diffusers

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
    return {
        name: (module.out_features, module.in_features)
        for name, module in unet.named_modules()
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGET_MODULES)
    }


def naive_factor_average(adapters: list[Any]) -> dict[str, torch.Tensor]:
    """The wrong merge (mean B · mean A), timed only to show what exactness costs."""
    out = {}
    for module in adapters[0].factors:
        up = torch.stack([a.factors[module].up for a in adapters]).mean(0)
        down = torch.stack([a.factors[module].down for a in adapters]).mean(0)
        out[module] = adapters[0].info.scale * (up @ down)
    return out


def fastest(work: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def projections_only(shapes: dict[str, tuple[int, int]]) -> torch.nn.Module:
    """A module tree holding just the attention projections at their UNet paths (zeros)."""
    root = torch.nn.Module()
    for path, (rows, cols) in shapes.items():
        *parents, leaf = path.split(".")
        parent = root
        for name in parents:
            if not hasattr(parent, name):
                parent.add_module(name, torch.nn.Module())
            parent = getattr(parent, name)
        parent.add_module(leaf, torch.nn.Linear(cols, rows, bias=False, device="meta"))
    root.to_empty(device="cpu")
    for parameter in root.parameters():
        parameter.data.zero_()
    return root


def bench_reading_and_applying(model: bytes, args: argparse.Namespace) -> dict[str, float]:
    """Reading a global model file of SD 1.5's size, and applying it and taking it off."""
    parsed = parse_global_model(model)
    unet = projections_only({m: tuple(d.shape) for m, d in parsed.deltas.items()})

    def apply_and_restore() -> None:
        with applied(unet, parsed):
            pass

    return {
        "read": fastest(lambda: parse_global_model(model), args.repeats),
        "apply": fastest(apply_and_restore, args.repeats),
    }


def bench_merging(args: argparse.Namespace) -> list[dict[str, float]]:
    shapes = sd15_shapes()
    most = max(args.merge)
    adapters = [
        random_adapter(shapes, rank=args.merge_rank, seed=s, scale=0.05, images=3 + s % 5)
        for s in range(most)
    ]
    files = [encode_adapter(a) for a in adapters]
    merge_adapters(adapters[:1])  # warm up: the first 375 MB the allocator hands out
    rows = []
    for count in args.merge:
        chosen = adapters[:count]
        exact = fastest(lambda c=chosen: merge_adapters(c), args.repeats)
        naive = fastest(lambda c=chosen: naive_factor_average(c), args.repeats)
        start = time.perf_counter()
        model = merge_adapter_files(files[:count])
        whole = time.perf_counter() - start
        last = model
        rows.append(
            {
                "count": count,
                "exact": exact,
                "naive": naive,
                "files": whole,
                "in_mb": sum(len(f) for f in files[:count]) / 1e6,
                "out_mb": len(model) / 1e6,
            }
        )
    rows[-1].update(bench_reading_and_applying(last, args))
    return rows


# -- the report -------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    training = generation = None
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_train:
            if args.full_size:
                args.resolution = args.resolution or 512
                args.gen_size = args.gen_size or 512
                runners = full_size_runners(work, args.device)
            else:
                args.resolution = args.resolution or 64
                args.gen_size = args.gen_size or 256
                build_tiny_models(work)
                runners, _ = build_runners(load_catalog(), work, device=args.device)
            device = runners["finetune"].device
            print(
                f"device {device.name} ({str(device.dtype).removeprefix('torch.')}), torch "
                f"{torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
                f"threads; {'SD 1.5 full size, random weights' if args.full_size else 'tiny-sd'}"
                f", {PHOTOS} photos at {args.resolution} px, rank {args.rank}, {args.steps} "
                f"steps, fastest of {args.repeats} alternating runs"
            )
            training = await bench_training(runners["finetune"], args)
            generation = await bench_generation(runners["txt2img"], args)
    if training is not None:
        print("\ntraining        host job     bare loop   overhead   vs bare+save")
        print(
            f"wall time    {training['host']:9.2f} s  {training['bare']:9.2f} s   "
            f"{training['overhead']:+7.2%}   {training['overhead_delivered']:+7.2%}"
        )
        print(f"steps/s      {training['host_steps']:9.2f}    {training['bare_steps']:9.2f}")
        print(
            f"CPU time                                 {training['cpu_overhead']:+7.2%}   "
            f"{training['cpu_overhead_delivered']:+7.2%}"
        )
        print(
            f"\nmedians instead of the fastest runs: overhead {training['median_overhead']:+.2%}; "
            f"the host's work outside the training loop (schema, photos, lane, adapter file, "
            f"result): {training['outside'] * 1000:.1f} ms a job, "
            f"{training['outside'] / training['host']:.2%} of it"
        )
    if generation is not None:
        print(
            f"\ntxt2img, {args.gen_size}×{args.gen_size} px, {args.gen_steps} steps   "
            "without concept   with concept   overhead"
        )
        print(
            f"job wall time                       {generation['plain'] * 1000:9.1f} ms   "
            f"{generation['concept'] * 1000:9.1f} ms   {generation['overhead']:+7.2%}"
        )
        print(
            f"a concept's new global model ({generation['model_mb']:.1f} MB) is parsed and moved "
            f"to the device once per host: {generation['load'] * 1000:.1f} ms; its first job "
            f"took {generation['first'] * 1000:+.1f} ms more than the fastest concept job"
        )
    if not args.skip_merge:
        rows = bench_merging(args)
        print(
            f"\nmerging rank-{args.merge_rank} adapters of SD 1.5's 128 attention projections "
            f"(93.5 M weights), CPU, fastest of {args.repeats}"
        )
        print(
            "adapters   exact merge   per adapter   vs 1 adapter   naive factor mean   "
            "exact/naive   files in → file out   MB in    MB out"
        )
        first = rows[0]["exact"] / rows[0]["count"]
        for row in rows:
            per = row["exact"] / row["count"]
            ratio = row["exact"] / row["naive"]
            print(
                f"{row['count']:8d}   {row['exact']:9.3f} s   {per * 1000:8.1f} ms   "
                f"{per / first:10.2f}×   {row['naive']:15.3f} s   {ratio:9.1f}×"
                f"   {row['files']:16.3f} s   {row['in_mb']:6.1f}   {row['out_mb']:7.1f}"
            )
        last = rows[-1]
        print(
            f"the {last['out_mb']:.0f} MB global model: read (parsed, checked) in "
            f"{last['read']:.3f} s; applied to the 128 projections and taken off in "
            f"{last['apply']:.3f} s (float32, CPU)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--resolution", type=int, help="training resolution (64; full size 512)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--gen-size", type=int, help="txt2img side in px (256; full size 512)")
    parser.add_argument("--gen-steps", type=int, default=10, help="txt2img denoising steps")
    parser.add_argument("--merge", default="1,2,4,8,16,32", help="adapter counts to merge")
    parser.add_argument("--merge-rank", type=int, default=8)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-merge", action="store_true")
    args = parser.parse_args()
    args.merge = sorted({int(n) for n in args.merge.split(",") if n})
    if args.steps < 50 or args.steps % 50:
        parser.error("--steps must be a multiple of 50 (the finetune task's grid)")
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
