"""Any dataset as two folders, images and masks matched by file name.

::

    root/
      images/ISIC_0000000.jpg            png / jpg / jpeg / bmp / tif / tiff
      masks/ISIC_0000000_segmentation.png

A mask's stem is the image's stem, or the image's stem plus one of :data:`MASK_SUFFIXES` (``_mask``, ``_masks``,
``_segmentation``, ``_seg``, ``_label``; the suffix's case does not matter, so ISIC's ``_Segmentation`` fits).
Files with other extensions (``LICENSE.txt``, ``ATTRIBUTION.txt``, ...) and names starting with a dot are not
images and are passed over; the count is logged. Everything else that does not pair up is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = ("_mask", "_masks", "_segmentation", "_seg", "_label")
IMAGES_DIR, MASKS_DIR = "images", "masks"


def _files(folder: Path) -> list[Path]:
    """Image files of ``folder``, sorted; a subfolder is an error, other files are counted and passed over."""
    files, other = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            raise DatasetError(f"{p}: unexpected folder in {folder} (the folder layout is flat: "
                               f"{IMAGES_DIR}/<name>.<ext> and {MASKS_DIR}/<name>[_suffix].<ext>)")
        (files if p.suffix.lower() in IMAGE_SUFFIXES else other).append(p)
    if other:
        logger.info("%s: passed over %d file(s) that are not images: %s", folder, len(other),
                    ", ".join(p.name for p in other[:5]) + (", ..." if len(other) > 5 else ""))
    return files


def _image_stems(mask_stem: str) -> list[str]:
    """Stems of the images a mask with this stem may belong to: itself, and itself less a known suffix."""
    stems = [mask_stem]
    for suffix in MASK_SUFFIXES:
        if mask_stem.lower().endswith(suffix) and len(mask_stem) > len(suffix):
            stems.append(mask_stem[: -len(suffix)])
    return stems


def find_cases(root: str | Path, require_labels: bool = True) -> list[dict]:
    """Pair ``root/images/*`` with ``root/masks/*``; cases sorted by image stem.

    Returns dicts with ``image``, ``label`` (one mask path; absent without a mask when ``require_labels`` is false),
    ``case_id`` (the image's stem) and ``group`` (= case id). Raises :class:`DatasetError` naming the files for: no
    ``images/`` folder, no images, two images with one stem, (``require_labels``) no ``masks/`` folder or an image
    without a mask, a mask without an image, a mask that fits two images, and two masks for one image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder does not exist: {root}")
    images_dir, masks_dir = root / IMAGES_DIR, root / MASKS_DIR
    if not images_dir.is_dir():
        raise DatasetError(f"{root} is not a folder-layout dataset: '{IMAGES_DIR}/' folder missing "
                           f"(expected {IMAGES_DIR}/ and {MASKS_DIR}/ inside it)")
    images: dict[str, Path] = {}
    for p in _files(images_dir):
        if p.stem in images:
            raise DatasetError(f"two images share the case id {p.stem!r}: {images[p.stem]} and {p}")
        images[p.stem] = p
    if not images:
        raise DatasetError(f"no images (png/jpg/jpeg/bmp/tif/tiff) in {images_dir}")

    labels: dict[str, Path] = {}
    if masks_dir.is_dir():
        for m in _files(masks_dir):
            owners = [s for s in _image_stems(m.stem) if s in images]
            if not owners:
                raise DatasetError(f"{m}: mask without an image (looked for {IMAGES_DIR}/ "
                                   f"{' or '.join(repr(s) for s in _image_stems(m.stem))} with any image extension)")
            if len(owners) > 1:
                raise DatasetError(f"{m}: mask fits more than one image: "
                                   f"{', '.join(str(images[s]) for s in owners)}")
            cid = owners[0]
            if cid in labels:
                raise DatasetError(f"two masks for image {images[cid]}: {labels[cid]} and {m}")
            labels[cid] = m
    elif require_labels:
        raise DatasetError(f"{root}: '{MASKS_DIR}/' folder missing (needed for training and evaluation)")

    cases = []
    for cid in sorted(images):
        case = {"image": str(images[cid]), "case_id": cid, "group": cid}
        if cid in labels:
            case["label"] = str(labels[cid])
        elif require_labels:
            raise DatasetError(f"image without a mask: {images[cid]} (expected {masks_dir}/{cid}.<ext> or "
                               f"{cid}<suffix>.<ext>, suffix one of {', '.join(MASK_SUFFIXES)})")
        cases.append(case)
    return cases
