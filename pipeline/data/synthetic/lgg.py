"""Synthetic LGG brain MRI sample in the Kaggle ``kaggle_3m`` layout (:mod:`pipeline.data.lgg` reads it)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ..marker import MARKER, marker_text
from .draw import smooth_noise


def _shape_field(h: int, w: int, cy: float, cx: float, radius: float, harmonics) -> np.ndarray:
    """Signed radial field (<= 0 inside) of a circle of ``radius`` perturbed by fixed harmonics."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    boundary = np.full_like(theta, radius)
    for k, amp, phase in harmonics:
        boundary += radius * amp * np.cos(k * theta + phase)
    return np.hypot(yy - cy, xx - cx) - boundary


def brain_volume(rng: np.random.Generator, n_slices: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic patient: images (S, H, W, 3) uint8 and tumour masks (S, H, W) bool.

    An elliptical head (bright scalp ring, brain, dark ventricles) shrinking towards the top and bottom slices,
    three channels with different contrasts (pre-contrast, FLAIR, post-contrast), and a tumour that occupies a
    contiguous run of about a third of the slices, bright in FLAIR (channel 1), faintly enhancing in post-contrast.
    """
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2 + rng.uniform(-8, 8), w / 2 + rng.uniform(-8, 8)
    ay, ax = rng.uniform(0.36, 0.42) * h, rng.uniform(0.28, 0.34) * w  # head semi-axes (taller than wide)
    tissue = np.array([rng.uniform(90, 120), rng.uniform(100, 130), rng.uniform(85, 115)], dtype=np.float32)
    run = max(2, int(round(n_slices * rng.uniform(0.28, 0.38))))
    first = int(rng.integers(max(1, n_slices // 5), max(2, n_slices - run - n_slices // 6) + 1))
    first = min(first, n_slices - run)
    t_angle = rng.uniform(0, 2 * np.pi)
    t_dist = rng.uniform(0.15, 0.45)
    t_radius = rng.uniform(0.10, 0.17) * min(ay, ax) * 2
    harmonics = [(k, rng.uniform(0.03, 0.15) / (k / 2), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
    flair_gain = rng.uniform(1.6, 2.0)

    images = np.zeros((n_slices, h, w, 3), dtype=np.uint8)
    masks = np.zeros((n_slices, h, w), dtype=bool)
    for s in range(n_slices):
        z = -0.92 + 1.84 * s / max(n_slices - 1, 1)  # position through the head, -1 bottom .. 1 top
        scale = np.sqrt(max(1.0 - z * z, 0.05))
        r = np.hypot((yy - cy) / (ay * scale), (xx - cx) / (ax * scale))
        head = r <= 1.0
        brain = r <= 0.88
        img = np.zeros((h, w, 3), dtype=np.float32)
        texture = smooth_noise(rng, h, w)
        img[head & ~brain] = tissue * np.array([1.5, 0.6, 1.4], dtype=np.float32)  # scalp: bright in T1, dark FLAIR
        img[brain] = tissue
        img += (6 * texture)[..., None] * brain[..., None]
        ventricles = np.hypot((yy - cy) / (ay * scale * 0.22), (xx - cx) / (ax * scale * 0.12)) <= 1.0
        img[ventricles & brain] *= np.array([0.55, 0.35, 0.5], dtype=np.float32)  # CSF: dark, darkest in FLAIR
        if first <= s < first + run:
            u = (s - first + 0.5) / run  # 0..1 through the tumour's run: largest in the middle
            radius = t_radius * (0.45 + 0.55 * np.sin(np.pi * u)) * scale
            ty = cy + np.sin(t_angle) * t_dist * ay * scale
            tx = cx + np.cos(t_angle) * t_dist * ax * scale
            field = _shape_field(h, w, ty, tx, radius, harmonics)
            tumour = (field <= 0) & brain
            edge = np.clip(1.0 - np.abs(field) / 3.0, 0, 1) * tumour  # enhancing rim for post-contrast
            img[tumour, 1] *= flair_gain
            img[tumour, 0] *= 0.85
            img[..., 2] += 35 * edge
            masks[s] = tumour
        img += rng.normal(0, 3, img.shape).astype(np.float32) * head[..., None]
        images[s] = np.clip(img, 0, 255).astype(np.uint8)
    return images, masks


def write_lgg(root: str | Path, n_cases: int = 6, seed: int = 0) -> Path:
    """Write a synthetic LGG sample of ``n_cases`` patients (12-20 slices each) under ``root`` in the
    ``kaggle_3m`` layout (deflate TIFFs, 0/255 L-mode masks, a ``data.csv``) and return ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_cases):
        date = f"{int(rng.integers(1985, 2005))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        patient = f"TCGA_SY_{i + 1:04d}_{date}"
        folder = root / patient
        folder.mkdir()
        images, masks = brain_volume(rng, int(rng.integers(12, 21)))
        for k, (img, mask) in enumerate(zip(images, masks), start=1):
            Image.fromarray(img).save(folder / f"{patient}_{k}.tif", compression="tiff_deflate")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{patient}_{k}_mask.tif",
                                                              compression="tiff_deflate")
        rows.append((patient[:12], int(rng.integers(1, 5)), int(rng.integers(1, 6))))
    with open(root / "data.csv", "w", newline="") as f:
        csv.writer(f).writerows([("Patient", "RNASeqCluster", "MethylationCluster"), *rows])
    (root / MARKER).write_text(marker_text("lgg", n_cases=n_cases, seed=seed))
    return root
