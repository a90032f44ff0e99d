"""On-disk layout readers (one module per layout), synthetic samples and splits.

Every reader exposes ``find_cases(root, require_labels=True) -> list[dict]`` with ``image``, ``case_id``,
``group`` (the unit a split keeps together: the case for PH2, the patient for MRI) and ``label`` when masks exist.
Readers raise :class:`DatasetError` naming the file and the problem; they never skip silently.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .errors import DatasetError

LAYOUTS = {"ph2": "pipeline.data.ph2", "lgg": "pipeline.data.lgg", "dsb2018": "pipeline.data.dsb2018", "folder": "pipeline.data.folder"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

__all__ = ["DatasetError", "LAYOUTS", "find_cases", "find_inputs"]


def _reader(layout: str):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(sorted(LAYOUTS))}")
    return importlib.import_module(LAYOUTS[layout])


def find_cases(layout: str, root: str | Path, require_labels: bool = True) -> list[dict]:
    """Cases of a dataset folder in the given layout (see the layout's module)."""
    return _reader(layout).find_cases(root, require_labels=require_labels)


def find_inputs(input_dir: str | Path, layout: str) -> list[dict]:
    """Images to run inference on: a folder in the bundle's layout (labels optional), else a flat folder of
    png/jpg/bmp/tif files whose stems become case ids."""
    root = Path(input_dir)
    if not root.is_dir():
        raise DatasetError(f"input_dir does not exist or is not a folder: {root}")
    try:
        return find_cases(layout, root, require_labels=False)
    except DatasetError as layout_error:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{root} holds no images (png/jpg/bmp/tif) and is not a {layout} folder: "
                               f"{layout_error}") from None
        seen: dict[str, Path] = {}
        for p in files:
            if p.stem in seen:
                raise DatasetError(f"two inputs share the case id {p.stem!r}: {seen[p.stem].name} and {p.name}")
            seen[p.stem] = p
        return [{"image": str(p), "case_id": p.stem, "group": p.stem} for p in files]
