"""2018 Data Science Bowl nuclei (Broad Institute, BBBC038, CC0) in the Kaggle ``stage1_train`` layout.

::

    stage1_train/
      <id>/
        images/<id>.png        RGBA (alpha 255): fluorescence, bright-field or H&E; 256x256 up to 1388x1040
        masks/<mask id>.png    one binary 0/255 mask per nucleus, the image's size; the target is their union

``root`` may be the ``stage1_train`` folder or a folder that contains ``stage1_train/``. Names starting with a dot
(``.DS_Store``, ...) and the synthetic-sample marker ``SYNTHETIC.txt`` in ``root`` are not data and are passed over;
anything else that does not fit the layout is an error.

:func:`pipeline.data.synthetic.write_dsb2018` writes a small synthetic set in this layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .marker import MARKER

SPLIT_DIR = "stage1_train"


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def train_root(root: str | Path) -> Path:
    """The ``stage1_train`` folder: ``root`` itself, or ``root/stage1_train`` when that exists."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"DSB2018 dataset folder does not exist: {root}")
    if (root / SPLIT_DIR).is_dir():
        return root / SPLIT_DIR
    return root


def find_cases(root: str | Path, require_labels: bool = True) -> list[dict]:
    """List the DSB2018 cases under ``root``, sorted by id.

    Returns dicts with ``image`` (the ``images/<id>.png`` path), ``label`` (the sorted list of the case's mask paths;
    absent when the case has no ``masks/`` folder and ``require_labels`` is false), ``case_id`` and ``group`` (both
    the id folder's name). Raises :class:`DatasetError` for a missing folder, no cases, a case without
    ``images/<id>.png``, (``require_labels``) a case without masks, and any file or folder that does not fit.
    """
    top = train_root(root)
    cases = []
    for case_dir in _visible(top):
        if not case_dir.is_dir():
            if case_dir.name == MARKER:
                continue
            raise DatasetError(f"{case_dir}: unexpected file in a DSB2018 stage1_train folder "
                               "(expected only <id>/ case folders)")
        cid = case_dir.name
        for entry in _visible(case_dir):
            if entry.name not in ("images", "masks") or not entry.is_dir():
                raise DatasetError(f"{entry}: unexpected {'folder' if entry.is_dir() else 'file'} in DSB2018 case "
                                   f"{cid} (expected only images/ and masks/)")
        image = case_dir / "images" / f"{cid}.png"
        if not image.is_file():
            raise DatasetError(f"{cid}: image missing: {image}")
        for entry in _visible(case_dir / "images"):
            if entry != image:
                raise DatasetError(f"{entry}: unexpected {'folder' if entry.is_dir() else 'file'} in {cid}/images/ "
                                   f"(expected only {cid}.png)")
        case = {"image": str(image), "case_id": cid, "group": cid}
        masks_dir = case_dir / "masks"
        if masks_dir.is_dir():
            masks = _visible(masks_dir)
            for m in masks:
                if not m.is_file() or m.suffix.lower() != ".png":
                    raise DatasetError(f"{m}: unexpected {'folder' if m.is_dir() else 'file'} in {cid}/masks/ "
                                       "(expected one .png mask per nucleus)")
            if masks:
                case["label"] = [str(m) for m in masks]
            elif require_labels:
                raise DatasetError(f"{cid}: no masks in {masks_dir}")
        elif require_labels:
            raise DatasetError(f"{cid}: masks folder missing: {masks_dir}")
        cases.append(case)
    if not cases:
        raise DatasetError(f"no DSB2018 cases (<id>/images/<id>.png folders) found in {top}")
    return cases


def bright_background_weights(cases: list[dict], fraction: float | None = None) -> list[float]:
    """Sampling weight per case so that a weighted draw picks a bright-background image (bright-field, H&E) with
    probability ``fraction``; ``None`` keeps each kind's share of the cases (uniform weights).

    DSB2018's bright-background images are few (15 of the 82 shared) and score lowest out-of-fold; drawing them
    more often is the usual remedy, though on the shared images 0.35 lost 0.006 out-of-fold (README, DSB2018),
    so the bundle leaves it off. An image's kind is decided by the rule
    :class:`pipeline.transforms.InvertBrightBackgroundd` applies, on the image scaled to its 1st..99th percentiles
    as the bundle scales it. Reads each image once. For ``torch.utils.data.WeightedRandomSampler(weights,
    num_samples=len(cases), replacement=True)``; when all images are of one kind the weights are uniform.
    """
    from monai.transforms import ScaleIntensityRangePercentiles
    from PIL import Image

    from ..transforms import bright_background

    if not cases:
        raise ValueError("bright_background_weights needs at least one case")
    if fraction is None:
        return [1.0 / len(cases)] * len(cases)
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"bright_background_fraction must lie in (0, 1) or be null, got {fraction}")
    scale = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)
    flags = []
    for c in cases:
        try:
            with Image.open(c["image"]) as im:
                rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{c['image']}: cannot be read as an image ({e})") from None
        flags.append(bright_background(scale(rgb)))
    n_b = sum(flags)
    n_d = len(flags) - n_b
    if n_b == 0 or n_d == 0:
        return [1.0 / len(flags)] * len(flags)
    return [fraction / n_b if f else (1.0 - fraction) / n_d for f in flags]
