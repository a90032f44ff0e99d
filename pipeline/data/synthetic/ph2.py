"""Synthetic PH2 dermoscopy sample in the original layout (:mod:`pipeline.data.ph2` reads it)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..marker import MARKER, marker_text
from ..ph2 import CSV_NAME, IMAGES_DIR
from .draw import smooth_noise


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
    coarse_img = smooth_noise(rng, height, width, cell=32)[..., None]
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


FIRST_ID = 901  # above the real PH2 ids


def write_ph2(root: str | Path, n_cases: int = 30, seed: int = 0) -> Path:
    """Write a synthetic PH2 dataset under ``root`` in the original layout and return ``root``.

    Case ids are IMD901, IMD902, ...: the layout's names, but none of the real set's (IMD002 to IMD437), so synthetic
    and real runs never share a TensorBoard tag or a case id. Includes the real set's quirks: sizes 761-769 x
    553-577, 1-bit lesion masks except the first case's 24-bit RGB mask, ``_roi`` colour-class masks that are not
    the lesion, and ``PH2_dataset.csv``.
    """
    if not 0 < n_cases <= 99:
        raise ValueError(f"write_ph2: n_cases must be 1 to 99 (ids IMD901 to IMD999), got {n_cases}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = root / IMAGES_DIR
    rows = []
    for i in range(n_cases):
        cid = f"IMD{FIRST_ID + i}"
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
    with open(root / CSV_NAME, "w", newline="") as f:
        csv.writer(f).writerows([("Name", "Clinical Diagnosis", "Asymmetry"), *rows])
    (root / MARKER).write_text(marker_text("ph2", n_cases=n_cases, seed=seed))
    return root

