"""Synthetic DSB2018 nuclei sample in the Kaggle ``stage1_train`` layout (:mod:`pipeline.data.dsb2018` reads it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..marker import MARKER, marker_text
from .draw import smooth_noise

SIZES = ((256, 256), (256, 320), (360, 360), (520, 696))  # (height, width), as in the real set
KINDS = ("fluorescence", "he", "fluorescence", "brightfield")


def _hex_id(*parts) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    """Boolean (h, w) mask of a rotated ellipse, computed inside its bounding box only."""
    out = np.zeros((h, w), dtype=bool)
    r = max(ry, rx)
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, h)
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    out[y0:y1, x0:x1] = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return out


def nuclei_masks(rng: np.random.Generator, height: int, width: int) -> list[np.ndarray]:
    """Random elliptical nuclei as separate boolean masks that never overlap; about a third are placed against an
    earlier nucleus so that they touch (the few pixels claimed twice stay with the earlier one)."""
    n = int(rng.integers(8, 24) * height * width / (256 * 256))
    occupied = np.zeros((height, width), dtype=bool)
    centres: list[tuple[float, float, float]] = []
    masks = []
    for _ in range(4 * n):
        if len(masks) == n:
            break
        ry, rx = rng.uniform(5, 14), rng.uniform(5, 14)
        if centres and rng.random() < 0.35:  # touch an earlier nucleus
            py, px, pr = centres[int(rng.integers(len(centres)))]
            theta = rng.uniform(0, 2 * np.pi)
            dist = pr + min(ry, rx) * 0.9
            cy, cx = py + dist * np.sin(theta), px + dist * np.cos(theta)
        else:
            cy, cx = rng.uniform(8, height - 8), rng.uniform(8, width - 8)
        full = _ellipse(height, width, cy, cx, ry, rx, rng.uniform(0, np.pi))
        m = full & ~occupied
        if m.sum() < 12 or m.sum() < 0.8 * full.sum():  # off the image, or mostly under another nucleus
            continue
        occupied |= m
        centres.append((cy, cx, max(ry, rx)))
        masks.append(m)
    return masks


def nuclei_image(rng: np.random.Generator, kind: str, masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """An RGBA uint8 image of the given nuclei: ``fluorescence`` (bright grey nuclei on a dark background, sometimes
    dim), ``he`` (dark purple nuclei on pink) or ``brightfield`` (dark grey nuclei on light grey)."""
    h, w = height, width
    texture = smooth_noise(rng, h, w, cell=8)
    if kind == "fluorescence":
        bg = np.full((h, w), rng.uniform(2, 15), dtype=np.float32)
        img = bg + 2 * texture
        top = rng.uniform(25, 60) if rng.random() < 0.4 else rng.uniform(80, 220)  # dim sets exist in the real data
        for m in masks:
            img[m] = rng.uniform(0.5, 1.0) * top + 0.1 * top * texture[m]
        img = np.repeat(img[..., None], 3, axis=-1)
        noise = 2.0
    else:
        if kind == "he":
            bg_rgb = np.array([rng.uniform(215, 240), rng.uniform(180, 210), rng.uniform(205, 230)])
            nuc_rgb = np.array([rng.uniform(70, 120), rng.uniform(40, 80), rng.uniform(110, 160)])
        else:
            g = rng.uniform(170, 215)
            bg_rgb, nuc_rgb = np.array([g, g, g]), np.full(3, rng.uniform(60, 120))
        img = np.empty((h, w, 3), dtype=np.float32)
        img[:] = bg_rgb + 6 * texture[..., None]
        for m in masks:
            img[m] = nuc_rgb * rng.uniform(0.8, 1.15) + 8 * texture[m][:, None]
        noise = 4.0
    img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.8)))  # soft nucleus borders
    return np.concatenate([img, np.full((h, w, 1), 255, dtype=np.uint8)], axis=-1)


def write_dsb2018(root: str | Path, n_cases: int = 12, seed: int = 0) -> Path:
    """Write a synthetic DSB2018 ``stage1_train`` set under ``root`` and return ``root``.

    Cases cycle through the real set's commonest sizes (256x256, 256x320, 360x360, 520x696) and through
    fluorescence, H&E and bright-field looks; ids are 64-hex-digit hashes like Kaggle's; every nucleus is its own
    0/255 PNG in ``masks/``. Deterministic in ``seed``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        cid = _hex_id("dsb2018", seed, i)
        h, w = SIZES[i % len(SIZES)]
        kind = KINDS[(i // len(SIZES) + i) % len(KINDS)]
        masks = nuclei_masks(rng, h, w)
        img = nuclei_image(rng, kind, masks, h, w)
        (root / cid / "images").mkdir(parents=True, exist_ok=True)
        (root / cid / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / cid / "images" / f"{cid}.png")
        for k, m in enumerate(masks):
            Image.fromarray(m.astype(np.uint8) * 255).save(root / cid / "masks" / f"{_hex_id(cid, k)}.png")
    (root / MARKER).write_text(marker_text("dsb2018", n_cases=n_cases, seed=seed))
    return root
