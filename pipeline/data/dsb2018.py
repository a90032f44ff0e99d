"""2018 Data Science Bowl nuclei (Broad Institute, BBBC038, CC0) in the Kaggle ``stage1_train`` layout.

::

    stage1_train/
      <id>/
        images/<id>.png        RGBA (alpha 255): fluorescence, bright-field or H&E; 256x256 up to 1388x1040
        masks/<mask id>.png    one binary 0/255 mask per nucleus, the image's size; the target is their union

``root`` may be the ``stage1_train`` folder or a folder that contains ``stage1_train/``. Names starting with a dot
(``.DS_Store``, ...) and the synthetic-sample marker ``SYNTHETIC.txt`` in ``root`` are not data and are passed over;
anything else that does not fit the layout is an error.

:func:`write_dsb2018` writes a small synthetic set in this layout (see :mod:`pipeline.data.synthetic`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .errors import DatasetError

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
    from .synthetic import MARKER  # late import: synthetic imports this module for its WRITERS table

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


# ---------------------------------------------------------------------------------------------------------------------
# synthetic sample

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
    texture = rng.normal(0, 1, (h // 8 + 2, w // 8 + 2)).astype(np.float32)
    texture = np.asarray(Image.fromarray(texture).resize((w, h), Image.BICUBIC))
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
    from .synthetic import MARKER, _marker_text

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
    (root / MARKER).write_text(_marker_text("dsb2018", n_cases=n_cases, seed=seed))
    return root
