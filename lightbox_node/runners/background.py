"""The `rembg` family: cut the subject out of a picture, through rembg with a catalog model.

rembg 2.0.86 opens a custom model only through its `u2net_custom` session, and that session
refuses any `model_path` outside rembg's own home folder (`U2NET_HOME`), a guard for paths
that people type into rembg's CLI and server. Here the path comes from the operator's catalog
and was checked by `Catalog.availability`, so `CatalogSession` (a `U2netCustomSession`)
takes the catalog's file as it is instead of moving models into rembg's home or changing
the process environment per model. rembg's own ids (`rembg:u2net`) go through its
`new_session`, which downloads into its home when downloads are allowed.

rembg's first import compiles numba code for about 40 s; `NUMBA_CACHE_DIR` (unless the
operator set it) points at a kept cache folder so that this is paid once per machine, and
the import happens in a worker thread when the first job loads the model, not at startup.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightbox_node.dispatch.test_tasks import ProgressCallback, RunContext
from lightbox_node.runners.base import ModelRunner
from lightbox_node.runners.device import Device
from lightbox_node.runners.outputs import OutputRejected, encode_png
from lightbox_node.runners.source import ModelLoadFailed, ModelSource

if TYPE_CHECKING:
    from PIL.Image import Image


def numba_cache_dir() -> Path:
    """Where numba keeps rembg's compiled code: `$XDG_CACHE_HOME/lightbox/numba`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightbox" / "numba"


def import_rembg() -> Any:
    """rembg, imported with numba's cache in a kept folder (see the module's docstring)."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        folder = numba_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
    import rembg

    return rembg


@functools.cache
def catalog_session_class() -> type:
    """`CatalogSession`: rembg's u2net_custom session, opening the catalog's file as given."""
    import_rembg()
    from rembg.sessions.u2net_custom import U2netCustomSession

    class CatalogSession(U2netCustomSession):
        @classmethod
        def download_models(cls, *args: Any, **kwargs: Any) -> str:
            return str(kwargs["model_path"])

    return CatalogSession


def onnx_file(place: Path) -> Path:
    """The one `.onnx` file at `place` (a file, or a folder holding exactly one)."""
    if place.is_file():
        return place
    found = sorted(p for p in place.glob("*.onnx") if p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ModelLoadFailed(
            f"{place} must hold exactly one .onnx model, it holds {listed}; point the "
            "catalog's weights.file at the one to serve"
        )
    return found[0]


def load_session(source: ModelSource, device: Device) -> Any:
    """A rembg session for `source`: a local ONNX file, or one of rembg's own model ids."""
    import onnxruntime

    rembg = import_rembg()
    providers = device.onnx_providers()
    try:
        if source.local:
            path = onnx_file(Path(source.location))
            return catalog_session_class()(
                "u2net_custom",
                onnxruntime.SessionOptions(),
                model_path=str(path),
                providers=providers,
            )
        if source.location.startswith("rembg:"):
            return rembg.new_session(source.location.removeprefix("rembg:"), providers=providers)
    except (OSError, ValueError, RuntimeError) as exc:  # onnxruntime's errors are RuntimeErrors
        raise ModelLoadFailed(
            f"model {source.model_id} could not be loaded from {source.location}: {exc}"
        ) from exc
    raise ModelLoadFailed(
        f"model {source.model_id}: only rembg's own ids (rembg:<model>) are downloaded; put "
        f"the .onnx file from {source.location} in a folder and point weights.path at it"
    )


class RemoveBackground(ModelRunner):
    """remove_background: the subject kept, the background transparent (or just the mask)."""

    @property
    def cache_key(self) -> tuple[str, ...]:
        return ("rembg", self.source.location, self.device.name)

    def load(self) -> Any:
        place = Path(self.source.location)
        size = onnx_file(place).stat().st_size if self.source.local else 200 << 20
        return self.cache.get(
            self.cache_key, lambda: load_session(self.source, self.device), size=lambda _: size
        )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        return await context.run_sync(self.cut_out, inputs, image, context)

    def cut_out(
        self, inputs: Mapping[str, Any], image: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        import numpy as np

        only_mask = bool(inputs.get("only_mask", False))
        with self.lane.hold(context):
            session = self.load()
            context.raise_if_cancelled()
            context(0.1, "finding the subject")
            result = import_rembg().remove(
                image,
                session=session,
                alpha_matting=bool(inputs.get("alpha_matting", False)),
                only_mask=only_mask,
            )
        context.raise_if_cancelled()
        kept = result.convert("L") if only_mask else result.convert("RGBA").getchannel("A")
        if int(np.asarray(kept).max()) == 0:
            raise OutputRejected(
                "found no subject to keep: the whole picture was taken for background, so "
                "nothing was delivered. Try a picture with a clear subject"
            )
        context(1.0, "done")
        return [("image", encode_png(result))]


__all__ = ["RemoveBackground", "catalog_session_class", "load_session", "numba_cache_dir"]
