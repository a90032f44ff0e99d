"""Where decoded, resized cases are kept between epochs: in memory (default), on disk, or nowhere."""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset

CACHES = ("memory", "disk", "none")


def cached_dataset(data: list[dict], transform, cache: str = "memory", cache_dir: str = "data/cache",
                   num_workers: int | None = None, progress: bool = True):
    """A MONAI dataset over ``data`` that runs ``transform``'s deterministic head (loading, checks, resizing) once.

    - ``memory``: ``CacheDataset`` (fastest; RAM grows with the data set: see docs/performance.md for sizes).
    - ``disk``: ``PersistentDataset`` under ``cache_dir``: each case's deterministic result is written once as a
      ``.pt`` file, keyed by the case *and* the transforms' parameters (:func:`transform_hash`), so a changed
      ``image_size`` never reads a stale file; RAM stays flat, each epoch reads the files back.
    - ``none``: plain ``Dataset`` (every epoch decodes every image again).
    """
    if cache == "memory":
        return CacheDataset(data, transform, cache_rate=1.0, num_workers=num_workers, progress=progress)
    if cache == "disk":
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        return MetadataPersistentDataset(data, transform, cache_dir=cache_dir, hash_transform=transform_hash,
                                         track_meta=True)  # validation inverts the resize from the cached metadata
    if cache == "none":
        return Dataset(data, transform)
    raise ValueError(f"--cache must be one of {', '.join(CACHES)}, got {cache!r}")


@functools.cache  # read at every cached item's load: built once
def _metadata_globals() -> tuple:
    """What MONAI metadata pickles besides tensors: numpy arrays and dtypes (``spatial_shape``, ...) and MONAI's
    enums (``applied_operations``). Without them ``torch.load(weights_only=True)`` refuses a cached MetaTensor and
    ``PersistentDataset`` takes the file for corrupt: it deletes and recomputes it at every read."""
    from monai.utils import enums

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtypes = [v for v in vars(np.dtypes).values() if isinstance(v, type)]  # Int64DType, ...
    monai_enums = [v for v in vars(enums).values() if isinstance(v, type) and issubclass(v, enum.Enum)]
    return (np.ndarray, np.dtype, _reconstruct, *dtypes, *monai_enums)


class MetadataPersistentDataset(PersistentDataset):
    """MONAI's ``PersistentDataset`` whose weights-only loads accept MONAI metadata (:func:`_metadata_globals`)."""

    def _cachecheck(self, item_transformed):
        with torch.serialization.safe_globals(list(_metadata_globals())):
            return super()._cachecheck(item_transformed)


def _describe(obj, depth: int = 0):
    """A JSON-able description of ``obj``'s parameters: public attributes, recursively; functions (also lambdas,
    which MONAI's ``pickle_hashing`` cannot take) by name, bytecode and constants."""
    if depth > 8:
        return type(obj).__qualname__
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple, set)):
        return [_describe(o, depth + 1) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        a = np.ascontiguousarray(obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj)
        return [list(a.shape), str(a.dtype), hashlib.sha1(a.tobytes()).hexdigest()]
    code = getattr(obj, "__code__", None)
    if code is not None:
        return [getattr(obj, "__qualname__", ""), code.co_code.hex(), repr(code.co_consts)]
    if hasattr(obj, "__dict__"):
        return [type(obj).__qualname__, {k: _describe(v, depth + 1) for k, v in sorted(vars(obj).items())
                                          if not k.startswith("_") and k not in ("R",)}]
    return type(obj).__qualname__


def transform_hash(transforms) -> bytes:
    """Hash of the parameters of ``transforms`` (the deterministic head MONAI's ``PersistentDataset`` caches)."""
    return hashlib.md5(json.dumps(_describe(transforms), sort_keys=True, default=str).encode()).hexdigest().encode()
