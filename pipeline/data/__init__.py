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
LAYOUTS["nifti"] = "pipeline.data.nifti"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

__all__ = ["DatasetError", "LAYOUTS", "find_cases", "find_inputs"]


def __getattr__(name: str):
    """``pipeline.data.<layout>`` imports its reader on first use, so a bundle expression may name it (e.g.
    ``pipeline.data.lgg.intensity_scaling``) before any case was found."""
    if name in LAYOUTS:
        return importlib.import_module(LAYOUTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _reader(layout: str):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(sorted(LAYOUTS))}")
    return importlib.import_module(LAYOUTS[layout])


def find_cases(layout: str, root: str | Path, require_labels: bool = True, **layout_args) -> list[dict]:
    """Cases of a dataset folder in the given layout (see the layout's module); ``layout_args`` go to its reader
    (e.g. ``axis`` for ``nifti``)."""
    return _reader(layout).find_cases(root, require_labels=require_labels, **layout_args)


def find_inputs(input_dir: str | Path, layout: str, **layout_args) -> list[dict]:
    """Images to run inference on: a folder in the bundle's layout (labels optional), else a flat folder of
    png/jpg/bmp/tif files whose stems become case ids."""
    root = Path(input_dir)
    if not root.is_dir():
        raise DatasetError(f"input_dir does not exist or is not a folder: {root}")
    try:
        return find_cases(layout, root, require_labels=False, **layout_args)
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


def _innermost(e: BaseException) -> str:
    from ..errors import unreadable_image

    while e.__cause__ is not None:
        e = e.__cause__
    return unreadable_image(e) or f"{type(e).__name__}: {e}"


def check_cases(cases: list[dict], transform, skip: bool = False, workers: int = 2) -> tuple[list[dict], list[dict]]:
    """Load every case once through ``transform`` (the bundle's image + mask loading and checks) before any
    training, so a bad file anywhere in the dataset, the test split included, stops the run at once with an error
    naming the case and the file. With ``skip`` the bad cases are set aside instead, each listed in the log with its
    reason. Returns ``(good_cases, skipped)``."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    log = logging.getLogger(__name__)

    def attempt(case):
        try:
            transform(dict(case))
        except Exception as e:  # noqa: BLE001 - any failure to load a case makes it bad; it is reported below
            return {"case_id": case["case_id"], "error": _innermost(e)}
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        errors = list(pool.map(attempt, cases))
    bad = [e for e in errors if e is not None]
    if bad and not skip:
        more = f" (and {len(bad) - 1} more bad cases)" if len(bad) > 1 else ""
        raise DatasetError(f"{bad[0]['case_id']}: {bad[0]['error']}{more}; fix the data, or pass "
                           "--skip_bad_cases true to set bad cases aside")
    for b in bad:
        log.warning("skipping bad case %s: %s", b["case_id"], b["error"])
    good = [c for c, e in zip(cases, errors) if e is None]
    if bad:
        log.warning("skipped %d of %d cases (--skip_bad_cases true); listed in config.json and metrics.json",
                    len(bad), len(cases))
    if not good:
        raise DatasetError(f"all {len(cases)} cases are bad; first: {bad[0]['case_id']}: {bad[0]['error']}")
    return good, bad
