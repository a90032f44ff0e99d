"""Reading the decollated state of MONAI engines: one ``(case_id, source path, output, batch dict)`` per case.

All handlers of this package read ``engine.state.batch`` / ``engine.state.output`` as MONAI engines leave them with
``decollate=True`` (the default). The case dicts' extra keys travel through the engine untouched: ``case_id`` and
``group`` (str) come back as strings, ``slice`` (int) as an int (collated to a tensor, decollated back), so sliced
volumes (LGG) can be regrouped per patient; slices of NIfTI volumes (:mod:`pipeline.data.nifti`) also carry
``slice_axis`` (int) and ``reference`` (str, the source volume), so their predicted volume is written with the
source's affine and header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine
from PIL import Image

from ..visualize import load_rgb


def case_items(engine: Engine, with_batch: bool = False):
    """(case_id, source image path, output dict) for each case of the current iteration; with ``with_batch``,
    the case's decollated batch dict (``group``, ``slice``, ...) comes fourth."""
    batch, output = engine.state.batch, engine.state.output
    if isinstance(batch, dict) or isinstance(output, dict):
        raise TypeError("these handlers need decollated engine state (MONAI engines with decollate=True)")
    for b, o in zip(batch, output):
        image = o.get("image", b.get("image"))
        path = getattr(image, "meta", {}).get("filename_or_obj", "")
        case_id = str(b.get("case_id", Path(path).stem))
        yield (case_id, path, o, b) if with_batch else (case_id, path, o)


def group_slice(b: dict, case_id: str) -> tuple[str, int | None]:
    """The case's group (its own id when it has none) and slice number (None when it has none)."""
    k = b.get("slice")
    if isinstance(k, (list, tuple)):
        k = k[0] if len(k) == 1 else k
    return str(b.get("group", case_id)), None if k is None else int(k)


def _first(x):
    return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x


def volume_source(b: dict) -> tuple[str | None, int | None]:
    """``(reference volume path, slice axis)`` of a case that is a slice of a NIfTI volume, else ``(None, None)``."""
    reference, axis = _first(b.get("reference")), _first(b.get("slice_axis"))
    if reference is None or axis is None:
        return None, None
    return str(reference), int(axis)


def source_image(path: str, slice_no: int | None = None, slice_axis: int | None = None) -> np.ndarray:
    """The image to draw outlines on: the source image file, or slice ``slice_no`` along ``slice_axis`` of the
    source NIfTI volume (cached: :func:`pipeline.data.nifti.load_slice`)."""
    if slice_no is not None and slice_axis is not None:
        from ..data.nifti import load_slice

        return load_slice(path, slice_no, slice_axis)
    return load_rgb(path)


def slice_of(b: dict, case_id: str) -> tuple[int | None, int | None]:
    """``(slice number, slice axis)`` of a slice of a volume, else ``(None, None)``."""
    axis = volume_source(b)[1]
    return (group_slice(b, case_id)[1], axis) if axis is not None else (None, None)


def as_mask(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.squeeze(0) > 0 if a.ndim == 3 else a > 0


def as_plane(x) -> np.ndarray:
    """A one-channel map of the engine state (probability, uncertainty) as a float32 (H, W) array."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return (a[0] if a.ndim == 3 else a).astype(np.float32)


def save_map(path: Path, plane: np.ndarray, scale: float = 255) -> None:
    """``plane`` as an 8-bit PNG, ``round(scale * value)`` clipped to 0..255 (probabilities: 255; standard
    deviations, at most 0.5: 510)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(np.clip(plane * scale, 0, 255)).astype(np.uint8)).save(path)
