"""Models built from config with random weights: the `tiny-*` demo models, and SD 1.5 at size.

These machines reach no model hub, so tests and the demo build their models here: a tiny
UNet (4 input channels; 9 for inpainting, 8 for InstructPix2Pix), a tiny VAE that halves the
picture three times like Stable Diffusion's, a tiny CLIP text encoder with a CLIP tokenizer
made from a small byte-level vocabulary and merges written to disk, a tiny ONNX segmentation
net for rembg and a tiny RRDBNet saved like a Real-ESRGAN release (`params_ema` in a .pth).
Each is saved where the catalog expects it and then served through exactly the code that
loads real weights. Weights come from a fixed seed, so every build is identical.

`build_sd15_pipeline` makes the full-size Stable Diffusion 1.5 architecture (UNet, VAE, text
encoder) with random weights, for GPU timings without the real weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightbox_node.tasks import Catalog, load_catalog

SEED = 20240501

_WORDS = """
a photo of the cat dog person man woman child bird horse car house tree flower sky sea
mountain city street forest river lake beach sunset sunrise night morning winter summer
portrait painting drawing sketch watercolor oil light dark red green blue yellow purple
white black golden soft sharp detailed style make it look like turn into with and in on at
by from add remove change background foreground snow rain fog cloud cloudy
"""
TOKENIZER_WORDS = tuple(_WORDS.split())
"""Words the demo tokenizer learns its merges from, so common prompt words are single tokens."""
MERGES = 1000
"""At most this many merges are learnt from `TOKENIZER_WORDS`; learning stops once every word
there is a single token."""


# -- the tokenizer ---------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's map of the 256 bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def byte_level_vocab(words: tuple[str, ...] | list[str] = TOKENIZER_WORDS, merges: int = MERGES):
    """A CLIP-style vocabulary (every byte, alone and word-final, learnt merges, the two
    special tokens) and its merge list, learnt by byte-pair encoding over `words`."""
    table = _bytes_to_unicode()
    chars = [table[b] for b in range(256)]
    vocab = chars + [c + "</w>" for c in chars]
    corpus: list[list[str]] = []
    for word in words:
        symbols = [table[b] for b in word.encode()]
        symbols[-1] += "</w>"
        corpus.append(symbols)
    learnt: list[tuple[str, str]] = []
    for _ in range(merges):
        pairs = Counter((word[i], word[i + 1]) for word in corpus for i in range(len(word) - 1))
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        learnt.append(best)
        joined = best[0] + best[1]
        vocab.append(joined)
        for index, word in enumerate(corpus):
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            corpus[index] = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab)}, learnt


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """`vocab.json` and `merges.txt` of the small byte-level CLIP vocabulary, in `folder`."""
    vocab, merges = byte_level_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    merges_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def clip_tokenizer(folder: Path) -> Any:
    """A CLIPTokenizer read from the vocabulary files written into `folder`."""
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_tokenizer_files(folder)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


# -- Stable Diffusion -----------------------------------------------------------------------

_SD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
"""Stable Diffusion 1.5's own scheduler settings (PNDM)."""

PIPELINE_CLASSES = {
    "txt2img": "StableDiffusionPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
    "pix2pix": "StableDiffusionInstructPix2PixPipeline",
}
UNET_INPUT_CHANNELS = {"txt2img": 4, "inpaint": 9, "pix2pix": 8}
"""Latents, plus mask and masked-picture latents (inpaint) or picture latents (pix2pix)."""


def _sd_pipeline(kind: str, *, tiny: bool, tokenizer_dir: Path) -> Any:
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(tokenizer_dir)
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if tiny:
        unet = diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=UNET_INPUT_CHANNELS[kind],
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 8, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=64,
        )
        text = CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            projection_dim=32,
            max_position_embeddings=77,
            vocab_size=len(tokenizer),
            **special,
        )
    else:  # Stable Diffusion 1.5's shapes
        unet = diffusers.UNet2DConditionModel(
            sample_size=64,
            in_channels=UNET_INPUT_CHANNELS[kind],
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=(
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            up_block_types=(
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ),
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        text = CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            projection_dim=768,
            max_position_embeddings=77,
            vocab_size=49408,
            hidden_act="quick_gelu",
            **special,
        )
    scheduler = diffusers.PNDMScheduler(**_SD_SCHEDULER)
    scheduler.register_to_config(clip_sample=False)  # as SD 1.5's file says, for DDIM
    cls = getattr(diffusers, PIPELINE_CLASSES[kind])
    return cls(
        vae=vae,
        text_encoder=CLIPTextModel(text),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd15_pipeline(kind: str = "txt2img", *, work_dir: Path) -> Any:
    """Stable Diffusion 1.5's full-size architecture with random weights (fp32, on the CPU)."""
    return _seeded(lambda: _sd_pipeline(kind, tiny=False, tokenizer_dir=work_dir / "tokenizer"))


def _save_sd(kind: str) -> Callable[[Path], None]:
    def save(folder: Path) -> None:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        pipe = _seeded(lambda: _sd_pipeline(kind, tiny=True, tokenizer_dir=folder / "_vocab"))
        pipe.save_pretrained(str(folder), safe_serialization=True)
        shutil.rmtree(folder / "_vocab")

    return save


# -- rembg and Real-ESRGAN -------------------------------------------------------------------


def _save_segmenter(folder: Path) -> None:
    """A three-layer ONNX net shaped like u2net's first output: (1, 3, H, W) → (1, 1, H, W)."""
    import torch
    from torch import nn

    net = _seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(8, 1, 3, padding=1),
            nn.Sigmoid(),
        )
    ).eval()
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 320, 320),),
            str(folder / "tiny-segmenter.onnx"),
            input_names=["input.1"],
            output_names=["mask"],
            dynamic_axes={"input.1": {2: "height", 3: "width"}, "mask": {2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )


def _save_upscaler(folder: Path) -> None:
    """A one-block, eight-feature RRDBNet ×4, saved as Real-ESRGAN releases are."""
    import torch

    from lightbox_node.runners.rrdbnet import RRDBNet

    def make() -> RRDBNet:
        net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
        with torch.no_grad():
            # Purely random convolutions ignore the picture and give near-flat grey, which the
            # host rightly rejects. Thread the picture through three feature channels (each
            # conv on the main path passes them on nearly unchanged), with a little random
            # detail mixed in: the demo enlarges the picture, like a real upscaler.
            for conv in (net.conv_first, net.conv_up1, net.conv_up2, net.conv_hr, net.conv_last):
                conv.weight[:3].mul_(0.05)
                conv.bias[:3].zero_()
                for channel in range(3):
                    conv.weight[channel, channel, 1, 1] += 1.0
            net.conv_body.weight.mul_(0.05)
            net.conv_body.bias.zero_()
        return net

    folder.mkdir(parents=True, exist_ok=True)
    net = _seeded(make)
    torch.save({"params_ema": net.state_dict()}, folder / "RealESRGAN_x4_tiny.pth")


def _seeded(make: Callable[[], Any]) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return make()


TINY_MODELS: dict[str, tuple[Callable[[Path], None], str]] = {
    "tiny-sd": (_save_sd("txt2img"), "model_index.json"),
    "tiny-sd-inpaint": (_save_sd("inpaint"), "model_index.json"),
    "tiny-pix2pix": (_save_sd("pix2pix"), "model_index.json"),
    "tiny-rembg": (_save_segmenter, "*.onnx"),
    "tiny-realesrgan": (_save_upscaler, "*.pth"),
}
"""Each tiny model: how it is saved into a folder, and the file that shows it is complete."""


def build_tiny_models(data_dir: Path, catalog: Catalog | None = None) -> dict[str, Path]:
    """Build every `tiny-*` model where `catalog` (default: the bundled one) expects it.

    Idempotent: a complete folder is left alone. Each model is built in a staging folder
    next to its place and renamed into it, so an interrupted build leaves nothing half-made.
    Returns each model's folder. Synchronous (a few seconds): call it from a thread.
    """
    catalog = catalog if catalog is not None else load_catalog()
    data_dir = Path(data_dir)
    places: dict[str, Path] = {}
    for model_id, (save, marker) in TINY_MODELS.items():
        place = _place(catalog, model_id, data_dir)
        places[model_id] = place
        if place.is_dir() and any(p.is_file() for p in place.glob(marker)):
            continue
        place.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{place.name}.", dir=place.parent))
        try:
            save(staging / "model")
            if place.exists():
                shutil.rmtree(place)  # an earlier, incomplete build of this model
            (staging / "model").rename(place)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return places


def _place(catalog: Catalog, model_id: str, data_dir: Path) -> Path:
    entry = catalog.get(model_id)
    if entry is None or entry.weights.source != "path":
        return data_dir / "models" / model_id
    catalog_dir = entry.source_file.parent if entry.source_file else Path.cwd()
    return entry.weights.resolve(data_dir=data_dir, catalog_dir=catalog_dir)


__all__ = [
    "TINY_MODELS",
    "build_sd15_pipeline",
    "build_tiny_models",
    "byte_level_vocab",
    "clip_tokenizer",
    "write_tokenizer_files",
]
