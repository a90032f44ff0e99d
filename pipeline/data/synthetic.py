"""Small synthetic datasets written in the real on-disk layouts, so every bundle runs without real data.

The images are drawn, not sampled from real patients: they exercise the readers, transforms, engines and reports
end to end, and a network can learn them, but numbers measured on them say nothing about real data.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import dsb2018, ph2  # dsb2018 imports this module only inside its functions
from . import lgg  # lgg imports this module only inside write_lgg
from . import nifti  # nifti imports this module only inside write_nifti

logger = logging.getLogger(__name__)

MARKER = "SYNTHETIC.txt"
BANNER = "#" * 100


def _blob(h: int, w: int, rng: np.random.Generator, cy: float, cx: float, radius: float) -> np.ndarray:
    """Irregular closed shape: a circle whose radius is perturbed by a few random harmonics."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.hypot(yy - cy, xx - cx)
    boundary = np.full_like(theta, radius)
    for k in range(2, 7):
        boundary += radius * rng.uniform(0.02, 0.12) / (k / 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= boundary


def dermoscopy_image(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One PH2-like RGB image (uint8, H x W x 3) and its exact lesion mask (bool, H x W).

    Skin-toned textured background, an irregular pigmented lesion with colour variation, hairs drawn over both,
    and the dark circular vignette of a dermoscope.
    """
    skin = np.array([rng.uniform(190, 230), rng.uniform(140, 175), rng.uniform(120, 150)], dtype=np.float32)
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = skin
    # low-frequency skin texture
    coarse = rng.normal(0, 1, (height // 32 + 2, width // 32 + 2, 1)).astype(np.float32)
    coarse_img = np.array(Image.fromarray(coarse[..., 0]).resize((width, height), Image.BICUBIC))[..., None]
    img += 6 * coarse_img + rng.normal(0, 3, img.shape).astype(np.float32)

    radius = rng.uniform(0.14, 0.36) * min(height, width)
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    mask = _blob(height, width, rng, cy, cx, radius)
    red = rng.uniform(80, 140)
    green = red * rng.uniform(0.5, 0.65)
    lesion = np.array([red, green, green * rng.uniform(0.6, 0.85)], dtype=np.float32)
    # darker core and a second blotch give the colour variation real lesions have
    core = _blob(height, width, rng, cy + rng.uniform(-0.2, 0.2) * radius, cx + rng.uniform(-0.2, 0.2) * radius,
                 radius * rng.uniform(0.3, 0.6)) & mask
    alpha = mask.astype(np.float32)
    img = img * (1 - alpha[..., None]) + (lesion + 8 * coarse_img) * alpha[..., None]
    img[core] *= rng.uniform(0.55, 0.8)

    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(0, 9)):  # hairs: dark quadratic curves across the field
        p0, p1, p2 = (rng.uniform([0, 0], [width, height]) for _ in range(3))
        t = np.linspace(0, 1, 40)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        draw.line([tuple(p) for p in pts], fill=tuple(int(v) for v in rng.uniform(20, 60, 3)),
                  width=int(rng.integers(1, 4)))
    img = np.asarray(pil).astype(np.float32)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2))
    vignette = np.clip(1.15 - rng.uniform(0.25, 0.6) * np.clip(r - 0.55, 0, None) ** 1.5 * 2.5, 0.05, 1.0)
    img *= vignette[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_ph2(root: str | Path, n_cases: int = 30, seed: int = 0) -> Path:
    """Write a synthetic PH2 dataset under ``root`` in the original layout and return ``root``.

    Includes the real set's quirks: sizes 761-769 x 553-577, 1-bit lesion masks except the first case's 24-bit RGB
    mask, ``_roi`` colour-class masks that are not the lesion, and ``PH2_dataset.csv``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = root / ph2.IMAGES_DIR
    rows = []
    for i in range(n_cases):
        cid = f"IMD{i + 1:03d}"
        h, w = int(rng.integers(553, 578)), int(rng.integers(761, 770))
        img, mask = dermoscopy_image(rng, h, w)
        case = images / cid
        for sub in ("_Dermoscopic_Image", "_lesion", "_roi"):
            (case / f"{cid}{sub}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(case / f"{cid}_Dermoscopic_Image" / f"{cid}.bmp")
        m = Image.fromarray(mask.astype(np.uint8) * 255)
        (m.convert("RGB") if i == 0 else m.convert("1")).save(case / f"{cid}_lesion" / f"{cid}_lesion.bmp")
        Image.fromarray((mask & (rng.random(mask.shape) < 0.5)).astype(np.uint8) * 255).convert("1").save(
            case / f"{cid}_roi" / f"{cid}_R1_Label1.bmp"
        )
        rows.append((cid, int(rng.integers(0, 3)), int(rng.integers(0, 3))))
    with open(root / ph2.CSV_NAME, "w", newline="") as f:
        csv.writer(f).writerows([("Name", "Clinical Diagnosis", "Asymmetry"), *rows])
    (root / MARKER).write_text(_marker_text("ph2", n_cases=n_cases, seed=seed))
    return root


def _marker_text(layout: str, **params) -> str:
    args = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return (f"Synthetic {layout.upper()}-format sample written by pipeline.data.synthetic ({args}).\n"
            "Not real data: metrics measured on it say nothing about real images.\n")


WRITERS = {"ph2": write_ph2, "lgg": lgg.write_lgg, "dsb2018": dsb2018.write_dsb2018}
WRITERS["nifti"] = nifti.write_nifti


def is_synthetic(root: str | Path) -> bool:
    root = Path(root)
    return any((p / MARKER).is_file() for p in (root, *root.parents[:2]))


def resolve_dataset_dir(dataset_dir: str, default_dir: str, layout: str, synthetic_dir: str, **kwargs) -> str:
    """The folder a run reads: ``dataset_dir`` if it exists; if it is the bundle's default and absent, a synthetic
    sample in ``synthetic_dir`` (written once, reused after). A user-given path that does not exist is an error.
    In distributed training rank 0 resolves it (and writes the sample) before the other ranks."""
    from ..distributed import main_process_first

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
    if not marker.is_file() or marker.read_text() != _marker_text(layout, **params):
        tmp = target.with_name(target.name + ".partial")
        for old in (tmp, target):
            if old.exists():
                shutil.rmtree(old)
        WRITERS[layout](tmp, **params)
        tmp.rename(target)  # a killed generator never leaves a half-written set that looks complete
    _announce(target, layout, missing=dataset_dir)
    return str(target)


def _announce(path, layout: str, missing: str | None = None) -> None:
    from ..distributed import is_main

    if not is_main():  # distributed training: the banner once, from rank 0
        return
    why = f"the default dataset folder '{missing}' does not exist, so " if missing else ""
    logger.warning(
        "\n%s\n#  SYNTHETIC DATA: %sthis run uses the synthetic %s sample in '%s'.\n"
        "#  Its metrics say nothing about real data. See data/README.md to get the real dataset.\n%s",
        BANNER, why, layout.upper(), path, BANNER,
    )
