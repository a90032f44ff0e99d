"""NIfTI volumes in the Medical Segmentation Decathlon / nnU-Net layout, trained as 2D slices.

::

    Task09_Spleen/                      (or nnU-Net's Dataset009_Spleen/)
      dataset.json                      allowed, not read (as is anything else at the top: imagesTs/, notes)
      imagesTr/spleen_2.nii.gz          one volume per case: <case>.nii.gz (MSD) or <case>_0000.nii.gz (nnU-Net)
      labelsTr/spleen_2.nii.gz          its label volume, <case>.nii.gz, the image's shape; labels > 0.5 are foreground

Volumes are read with nibabel in their stored voxel order (no reorientation), so a prediction written back with the
source affine and header lies exactly on the source image. ``.nii`` files are accepted as well as ``.nii.gz``.

One case per slice along ``axis`` (0, 1 or 2; 2 by default, the axial axis of most MSD / nnU-Net volumes):
``image`` and ``label`` (the volume paths), ``case_id`` (``<case>_<k>``), ``group`` (the case: splits keep a
volume's slices together), ``slice`` (k, an int, 0-based), ``slice_axis`` and ``reference`` (the image volume,
whose affine and header the predicted volume gets: :class:`pipeline.handlers.SliceStack`). Cases are sorted by
case name, then by slice. Only the headers are read here (``nib.load(...).shape``); :class:`LoadNiftiSliced` reads
the voxels, one volume at a time through a small LRU cache.

``root`` may also be a plain folder of image volumes (``imagesTs/``): no labels then, for inference.

Nothing is skipped silently: hidden files (``._spleen_2.nii.gz`` macOS resource forks ship in the MSD archives)
are ignored, anything else in ``imagesTr/`` or ``labelsTr/`` that is not a NIfTI volume is a :class:`DatasetError`
naming it, as are a label without its image, an image without its label (``require_labels``), image and label
shapes that differ, volumes that are not 3D (4D with a singleton last dimension is accepted), the same case twice
(``a.nii`` and ``a.nii.gz``), and several nnU-Net modalities (``_0000``, ``_0001``: not supported yet).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Hashable, Mapping

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .errors import DatasetError

IMAGES, LABELS = "imagesTr", "labelsTr"
DEFAULT_AXIS = 2  # the slicing axis when a bundle passes none (bundles/nifti.json passes its slice_axis)
SUFFIXES = (".nii.gz", ".nii")
MODALITY_RE = re.compile(r"^(.+)_(\d{4})$")


def _stem(p: Path) -> str | None:
    """The name without ``.nii.gz`` / ``.nii``, or None for a file that is not a NIfTI volume."""
    for s in SUFFIXES:
        if p.name.lower().endswith(s) and len(p.name) > len(s):
            return p.name[: -len(s)]
    return None


def _volumes(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the NIfTI volumes in ``folder``; hidden files ignored, anything else an error."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        stem = _stem(p)
        if p.is_dir() or stem is None:
            raise DatasetError(f"{p}: unexpected {'folder' if p.is_dir() else 'file'} in {folder.name}/ "
                               "(only .nii.gz / .nii volumes belong there)")
        if stem in found:
            raise DatasetError(f"{p}: case {stem!r} appears twice ({found[stem].name} and {p.name})")
        found[stem] = p
    return found


def _case_names(images: dict[str, Path], label_stems: set[str]) -> dict[str, Path]:
    """``{case: image path}``: nnU-Net ``<case>_0000`` names when every image carries a 4-digit modality suffix and
    no label is named after a full image stem (then MSD ``<case>`` names, whatever their digits)."""
    matches = {s: MODALITY_RE.match(s) for s in images}
    if not all(matches.values()) or label_stems & set(images):
        return dict(images)
    modalities: dict[str, dict[str, Path]] = {}
    for s, m in matches.items():
        modalities.setdefault(m.group(1), {})[m.group(2)] = images[s]
    cases = {}
    for case, mods in sorted(modalities.items()):
        if len(mods) > 1:
            raise DatasetError(f"{case}: several modalities ({', '.join(p.name for _, p in sorted(mods.items()))}); "
                               "multi-modality (nnU-Net _0000, _0001, ...) is not supported yet: keep one channel")
        if "0000" not in mods:
            raise DatasetError(f"{next(iter(mods.values()))}: nnU-Net image without its _0000 channel "
                               f"(expected {case}_0000.nii.gz)")
        cases[case] = mods["0000"]
    return cases


def _shape3d(path: Path) -> tuple[int, int, int]:
    """The volume's 3D shape from its header (a singleton 4th dimension dropped); anything else is an error."""
    try:
        shape = tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception as e:  # noqa: BLE001 - nibabel raises several kinds; the message names the file either way
        raise DatasetError(f"{path}: not a readable NIfTI volume ({type(e).__name__}: {e})") from e
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise DatasetError(f"{path}: volume of shape {shape}; only 3D volumes are supported "
                           "(4D only with a singleton last dimension)")
    return shape


def _check_axis(axis) -> int:
    try:
        a = int(axis)  # "2" from a command line is fine
    except (TypeError, ValueError):
        a = None
    if isinstance(axis, bool) or a not in (0, 1, 2) or (isinstance(axis, float) and axis != a):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis!r}")
    return a


def find_cases(root: str | Path, require_labels: bool = True, axis: int = DEFAULT_AXIS) -> list[dict]:
    """One case per slice along ``axis`` of every volume under ``root`` (see the module docstring)."""
    axis = _check_axis(axis)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"NIfTI dataset folder does not exist: {root}")
    image_dir, label_dir = root / IMAGES, root / LABELS
    if not image_dir.is_dir():
        if any(_stem(p) for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
            image_dir, label_dir = root, None  # a plain folder of volumes (imagesTs/): images only
        else:
            raise DatasetError(f"{root} is not a NIfTI dataset folder: no {IMAGES}/ (and no .nii.gz volumes in it)")
    images = _volumes(image_dir)
    if not images:
        raise DatasetError(f"{image_dir}: holds no .nii.gz volumes")
    labels = _volumes(label_dir) if label_dir is not None and label_dir.is_dir() else {}
    if require_labels and not labels:
        raise DatasetError(f"{root}: no label volumes (" + (f"{LABELS}/ next to {IMAGES}/ is missing or empty)"
                           if label_dir is not None else f"a plain folder of volumes; labels need a dataset folder "
                           f"holding {IMAGES}/ and {LABELS}/)"))
    cases = _case_names(images, set(labels))
    orphans = sorted(set(labels) - set(cases))
    if orphans:
        raise DatasetError(f"{labels[orphans[0]]}: label without its image (no {orphans[0]}.nii.gz or "
                           f"{orphans[0]}_0000.nii.gz in {IMAGES}/)")
    out = []
    for case, image in sorted(cases.items()):
        shape = _shape3d(image)
        label = labels.get(case)
        if label is None and require_labels:
            raise DatasetError(f"{image}: image without its label (expected {label_dir / (case + '.nii.gz')})")
        if label is not None and _shape3d(label) != shape:
            raise DatasetError(f"{label}: label shape {_shape3d(label)} differs from the shape {shape} of its image "
                               f"{image}")
        for k in range(shape[axis]):
            c = {"image": str(image), "case_id": f"{case}_{k}", "group": case, "slice": k, "slice_axis": axis,
                 "reference": str(image)}
            if label is not None:
                c["label"] = str(label)
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------------------------
# loading slices


def _read_volume(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """The volume's voxels as float32 in stored order (scaling applied), 3D, read-only (it is shared)."""
    try:
        data = nib.load(path).get_fdata(dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - a truncated gzip, a bad header...: name the file
        raise DatasetError(f"{path}: cannot read the volume ({type(e).__name__}: {e})") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"{path}: volume of shape {data.shape}; only 3D volumes are supported")
    data.flags.writeable = False
    return data


_caches: dict[int, object] = {}


def _volume_cache(cache_size: int):
    """One LRU cache of volumes per size, kept at module level (so transforms stay picklable); thread-safe."""
    cache = _caches.get(cache_size)
    if cache is None:
        cache = _caches.setdefault(cache_size, functools.lru_cache(maxsize=cache_size)(_read_volume))
    return cache


def clear_cache() -> None:
    """Forget every cached volume."""
    for cache in list(_caches.values()):
        cache.cache_clear()


def load_volume(path: str | Path, cache_size: int = 4) -> np.ndarray:
    """The volume at ``path`` (float32, 3D, read-only), loaded once while it stays among the ``cache_size`` most
    recently used (the cache key includes the file's modification time and size: a rewritten file is reloaded)."""
    path = str(path)
    st = os.stat(path)
    return _volume_cache(int(cache_size))(path, st.st_mtime_ns, st.st_size)


def slab(volume, k: int, axis: int, context: int = 0, name: str = "volume"):
    """Slices ``k - context .. k + context`` along ``axis`` of a 3D numpy array or tensor, stacked first: shape
    (2 context + 1, H, W). Indices past either end repeat the end slice, so every slice of a volume gets the same
    number of channels, and at ``context`` 0 this is ``volume`` sliced at ``k`` with a channel axis in front."""
    axis, k, context = _check_axis(axis), int(k), int(context)
    if context < 0:
        raise ValueError(f"context must be 0 or more slices, got {context}")
    n = volume.shape[axis]
    if not 0 <= k < n:
        raise IndexError(f"{name}: slice {k} is out of range along axis {axis} (volume shape {tuple(volume.shape)})")
    index = [min(max(i, 0), n - 1) for i in range(k - context, k + context + 1)]
    if isinstance(volume, torch.Tensor):
        return torch.movedim(volume, axis, 0)[index]
    return np.moveaxis(np.take(volume, index, axis=axis), axis, 0)


def load_slice(path: str | Path, k: int, axis: int, cache_size: int = 4, context: int = 0) -> np.ndarray:
    """Slice ``k`` along ``axis`` of the volume at ``path``: ``np.take(volume, k, axis)`` (a float32 copy); with
    ``context``, the slab of :func:`slab` (2 context + 1, H, W)."""
    s = slab(load_volume(path, cache_size), k, axis, context, name=str(path))
    return s if context else s[0]


class LoadNiftiSliced(MapTransform):
    """Replace each key's NIfTI volume path by one slice of it: a float32 ``MetaTensor`` of shape (1, H, W); with
    ``context`` c > 0, the slice and its c neighbours on each side as channels, (2c + 1, H, W) (a "2.5D" input:
    :func:`slab`; the ends of the volume repeat their last slice). Give labels ``context`` 0.

    The slice is ``np.take(volume, d[slice_key], axis=d[axis_key])`` of the volume in stored voxel order (so for
    axis 2, H is the volume's first dimension and W its second); its meta ``filename_or_obj`` is the volume path.
    Volumes go through a small LRU cache (``cache_size`` volumes, shared by every instance with that size, safe
    under ``CacheDataset``'s thread pool), so consecutive slices of a volume read the file once.

    Example::

        load = LoadNiftiSliced(keys=["image", "label"])
        d = load({"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz", "slice": 5, "slice_axis": 2})
    """

    def __init__(self, keys: KeysCollection, slice_key: str = "slice", axis_key: str = "slice_axis",
                 cache_size: int = 4, context: int = 0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if int(cache_size) < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        if isinstance(context, bool) or int(context) != context or context < 0:
            raise ValueError(f"context must be a whole number of slices, 0 or more, got {context!r}")
        self.slice_key, self.axis_key, self.cache_size, self.context = slice_key, axis_key, int(cache_size), int(context)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"LoadNiftiSliced: {key!r} must be a volume path, got {type(path).__name__}")
            for needed in (self.slice_key, self.axis_key):
                if needed not in d:
                    raise KeyError(f"{path}: the case has no {needed!r} (cases come from pipeline.data.nifti)")
            arr = load_slice(path, int(d[self.slice_key]), int(d[self.axis_key]), self.cache_size, self.context)
            arr = arr if self.context else arr[None]
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(arr)),
                                meta={"filename_or_obj": str(path), "spatial_shape": np.asarray(arr.shape[1:])})
        return d
