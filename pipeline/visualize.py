"""Overlays for reviewers: the image with the truth outlined in green and the prediction in red/magenta.

Arrays are (H, W[, C]) everywhere here, as PIL and numpy see images; transforms keep MONAI's channel-first
(C, H, W) layout with ``reverse_indexing=False``, so no transposes are needed at the edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import binary_dilation
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

TRUTH = (0, 230, 0)
PRED = (255, 0, 255)


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image as read: grey is repeated, a float slice (NIfTI) stretched to 0..255."""
    img = np.asarray(image)
    img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        img = ((img - lo) / (hi - lo + 1e-8) * 255).astype(np.uint8)
    return img


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    edge = find_boundaries(mask > 0, mode="inner")
    return binary_dilation(edge, structure=disk(thickness)) if thickness > 1 else edge


def overlay(image: np.ndarray, pred: np.ndarray | None = None, truth: np.ndarray | None = None,
            thickness: int | None = None, width: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``image`` with outlines of ``truth`` (green) and ``pred`` (magenta). With ``width``, an
    image wider than that is first shrunk to it (aspect kept; masks nearest-neighbour), so the outlines are traced on
    the pixels that will be shown instead of on the full-resolution image."""
    img = as_rgb(image)
    masks = []
    for mask, colour in ((truth, TRUTH), (pred, PRED)):
        if mask is None:
            continue
        mask = np.asarray(mask).squeeze() > 0
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {img.shape[:2]}")
        masks.append((mask, colour))
    if width and img.shape[1] > width:
        size = (width, max(1, round(img.shape[0] * width / img.shape[1])))
        img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
        masks = [(np.asarray(Image.fromarray(m.astype(np.uint8)).resize(size, Image.NEAREST)) > 0, c) for m, c in masks]
    out = img.copy()
    t = thickness or max(1, round(max(img.shape[:2]) / 300))
    both = len(masks) == 2
    for mask, colour in masks:
        # with both, the truth is traced wider and first: where prediction and truth agree, green still flanks the
        # magenta line instead of being hidden under it
        out[_outline(mask, t + 2 if both and colour == TRUTH else t)] = colour
    return out


def with_legend(image: np.ndarray, truth: bool = True, pred: bool = True) -> np.ndarray:
    """``image`` with a strip below it naming the outline colours (TensorBoard shows images without captions)."""
    img = Image.fromarray(np.asarray(image))
    strip = Image.new("RGB", (img.width, 16), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = 4
    for show, colour, text in ((truth, TRUTH, "truth"), (pred, PRED, "prediction")):
        if show:
            draw.rectangle((x, 4, x + 8, 12), fill=colour)
            draw.text((x + 12, 2), text, fill=(0, 0, 0))
            x += 20 + 6 * len(text) + 8
    out = Image.new("RGB", (img.width, img.height + 16))
    out.paste(img, (0, 0))
    out.paste(strip, (0, img.height))
    return np.asarray(out)


def contact_sheet(tiles: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, width: int = 384,
                  columns: int = 4) -> Path:
    """Save tiles (RGB, any sizes) resized to ``width`` in a grid with a caption above each."""
    if not tiles:
        raise ValueError("contact sheet needs at least one tile")
    ims = [Image.fromarray(t).resize((width, max(1, round(t.shape[0] * width / t.shape[1]))), Image.BILINEAR)
           for t in tiles]
    cap_h, cell_h = 18, max(im.height for im in ims) + 18
    cols = min(columns, len(ims))
    rows = (len(ims) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * width, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, cap) in enumerate(zip(ims, captions)):
        x, y = (i % cols) * width, (i // cols) * cell_h
        max_chars = max(8, (width - 8) // 6)  # PIL's default font is about 6 px per character
        if len(cap) > max_chars:  # long ids (DSB2018's 64-hex) keep their start and the score at the end
            head, _, score = cap.partition("  ")
            cap = f"{head[:max(4, max_chars - len(score) - 4)]}…  {score}" if score else cap[:max_chars]
        draw.text((x + 4, y + 3), cap, fill="black")
        sheet.paste(im, (x, y + cap_h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
