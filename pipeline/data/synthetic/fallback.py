"""The synthetic fallback: when a bundle's default dataset folder is absent, a sample written in its layout."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ...distributed import is_main, main_process_first
from ..marker import MARKER, is_synthetic, marker_text
from .dsb2018 import write_dsb2018
from .lgg import write_lgg
from .nifti import write_nifti
from .ph2 import write_ph2

logger = logging.getLogger(__name__)

BANNER = "#" * 100
WRITERS = {"ph2": write_ph2, "lgg": write_lgg, "dsb2018": write_dsb2018, "nifti": write_nifti}


def resolve_dataset_dir(dataset_dir: str, default_dir: str, layout: str, synthetic_dir: str, **kwargs) -> str:
    """The folder a run reads: ``dataset_dir`` if it exists; if it is the bundle's default and absent, a synthetic
    sample in ``synthetic_dir`` (written once, reused after). A user-given path that does not exist is an error.
    In distributed training rank 0 resolves it (and writes the sample) before the other ranks."""
    with main_process_first():
        return _resolve_dataset_dir(dataset_dir, default_dir, layout, synthetic_dir, **kwargs)


def _resolve_dataset_dir(dataset_dir: str, default_dir: str, layout: str, synthetic_dir: str, **kwargs) -> str:
    if Path(dataset_dir).exists():
        if is_synthetic(dataset_dir):
            _announce(dataset_dir, layout)
        return str(dataset_dir)
    if str(Path(dataset_dir)) != str(Path(default_dir)):
        raise FileNotFoundError(f"dataset_dir does not exist: {dataset_dir}")
    if layout not in WRITERS:
        raise ValueError(f"no synthetic writer for layout {layout!r}; available: {sorted(WRITERS)}")
    target = Path(synthetic_dir)
    params = {"n_cases": 30, "seed": 0, **kwargs}
    marker = target / MARKER
    if not marker.is_file() or marker.read_text() != marker_text(layout, **params):
        tmp = target.with_name(target.name + ".partial")
        for old in (tmp, target):
            if old.exists():
                shutil.rmtree(old)
        WRITERS[layout](tmp, **params)
        tmp.rename(target)  # a killed generator never leaves a half-written set that looks complete
    _announce(target, layout, missing=dataset_dir)
    return str(target)


def _announce(path, layout: str, missing: str | None = None) -> None:
    if not is_main():  # distributed training: the banner once, from rank 0
        return
    why = f"the default dataset folder '{missing}' does not exist, so " if missing else ""
    logger.warning(
        "\n%s\n#  SYNTHETIC DATA: %sthis run uses the synthetic %s sample in '%s'.\n"
        "#  Its metrics say nothing about real data. See data/README.md to get the real dataset.\n%s",
        BANNER, why, layout.upper(), path, BANNER,
    )
