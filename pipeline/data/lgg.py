"""LGG brain MRI (Buda et al., Comput Biol Med 2019; TCGA/TCIA) in the Kaggle ``lgg-mri-segmentation`` layout.

::

    kaggle_3m/
      data.csv                                  genomic clusters per patient (allowed, not read)
      TCGA_CS_4941_19960909/                    one folder per patient: TCGA_<institution>_<id>_<date>
        TCGA_CS_4941_19960909_1.tif             slice k = 1: 256 x 256 x 3 uint8 (pre-contrast, FLAIR, post-contrast)
        TCGA_CS_4941_19960909_1_mask.tif        its FLAIR tumour mask, 256 x 256, 0/255
        ...
        TCGA_CS_4941_19960909_10.tif            k is a slice number: 10 comes after 9 (sorted numerically)

``root`` may be the ``kaggle_3m`` folder, a folder holding ``kaggle_3m/`` (the unpacked Kaggle archive; only its
``kaggle_3m/`` is read) or a single patient folder (handy for inference on one patient).

One case per slice: ``image``, ``label`` (when the mask exists), ``case_id`` (the slice file's stem,
``TCGA_CS_4941_19960909_12``), ``group`` (the patient folder: splits keep a patient's slices together) and
``slice`` (k, an int). Cases are sorted by patient, then numerically by slice.

Nothing is skipped silently. Besides patient folders, the top level may hold only ``data.csv``, README/LICENSE
files and ``*.txt`` / ``*.md`` notes (``SYNTHETIC.txt`` marks a synthetic sample); a patient folder may hold only
``<folder>_<k>.tif`` and ``<folder>_<k>_mask.tif`` (``.tiff`` accepted). Hidden files (names starting with ``.``:
``.DS_Store``, ``._*`` resource forks) are operating-system metadata and are ignored at both levels. Anything else
is a :class:`DatasetError` naming the file, as are a mask without its image, an image without its mask
(``require_labels``), two files with the same slice number (``_7.tif`` and ``_07.tif``) and an empty patient folder.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import torch
from monai.transforms import DeleteItemsd, MapTransform, ScaleIntensityRanged
from PIL import Image

from .errors import DatasetError

SUBDIR = "kaggle_3m"
PATIENT_RE = re.compile(r"^TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+_\d{8}$")
TOP_LEVEL_FILES = re.compile(r"^(data\.csv|(readme|license|licence)(\..*)?|.*\.(txt|md))$", re.IGNORECASE)
CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _slice_re(patient: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(patient)}_(\d+)(_mask)?\.tiff?$")


def patient_dirs(root: str | Path) -> list[Path]:
    """The patient folders under ``root`` (see the module docstring for what ``root`` may be)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"LGG dataset folder does not exist: {root}")
    if PATIENT_RE.match(root.name) and not (root / SUBDIR).is_dir():
        return [root]
    base = root / SUBDIR if (root / SUBDIR).is_dir() else root
    patients = []
    for p in _visible(base):
        if p.is_dir() and PATIENT_RE.match(p.name):
            patients.append(p)
        elif p.is_dir():
            raise DatasetError(f"{p}: unexpected folder in a kaggle_3m layout "
                               "(patient folders are named TCGA_<institution>_<id>_<date>)")
        elif not TOP_LEVEL_FILES.match(p.name):
            raise DatasetError(f"{p}: unexpected file in a kaggle_3m layout (only patient folders, data.csv and "
                               "README/*.txt/*.md notes belong there)")
    if not patients:
        raise DatasetError(f"{root} is not an LGG kaggle_3m folder: no patient folders (TCGA_<inst>_<id>_<date>/) "
                           f"in {base}")
    return patients


def _patient_cases(folder: Path, require_labels: bool) -> list[dict]:
    pattern = _slice_re(folder.name)
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for p in _visible(folder):
        m = pattern.match(p.name)
        if not p.is_file() or not m:
            raise DatasetError(f"{p}: unexpected {'folder' if p.is_dir() else 'file'} in patient folder "
                               f"{folder.name} (expected {folder.name}_<k>.tif and {folder.name}_<k>_mask.tif)")
        k, table = int(m.group(1)), masks if m.group(2) else images
        if k in table:
            raise DatasetError(f"{p}: slice {k} of {folder.name} appears twice ({table[k].name} and {p.name})")
        table[k] = p
    if not images and not masks:
        raise DatasetError(f"{folder}: patient folder holds no slices")
    orphans = sorted(set(masks) - set(images))
    if orphans:
        k = orphans[0]
        raise DatasetError(f"{masks[k]}: mask without its image (slice {k} of {folder.name})")
    cases = []
    for k in sorted(images):
        image = images[k]
        case = {"image": str(image), "case_id": image.name.split(".")[0], "group": folder.name, "slice": k}
        if k in masks:
            case["label"] = str(masks[k])
        elif require_labels:
            raise DatasetError(f"{image}: image without its mask (expected {folder.name}_{k}_mask.tif)")
        cases.append(case)
    return cases


def find_cases(root: str | Path, require_labels: bool = True) -> list[dict]:
    """One case per slice under ``root``, sorted by patient then numerically by slice (see module docstring).

    Raises :class:`DatasetError` naming the file for a missing folder, no patient folders, unexpected files or
    folders, a mask without its image, a duplicated slice number, or (``require_labels``) an image without mask.
    """
    cases = []
    for folder in patient_dirs(root):
        cases.extend(_patient_cases(folder, require_labels))
    return cases


def has_tumour(mask_path: str | Path) -> bool:
    with Image.open(mask_path) as im:
        return bool(np.asarray(im.convert("L")).max() > 127)


def tumour_weights(cases: list[dict], tumour_fraction: float = 0.5) -> list[float]:
    """Sampling weight per case so that a weighted draw picks a tumour slice with probability ``tumour_fraction``.

    Reads each case's mask once. Tumour slices share ``tumour_fraction`` of the mass, empty slices the rest, evenly
    within each kind; when all slices are of one kind the weights are uniform. For
    ``torch.utils.data.WeightedRandomSampler(weights, num_samples=len(cases), replacement=True)``.
    """
    if not 0.0 < tumour_fraction < 1.0:
        raise ValueError(f"tumour_fraction must lie in (0, 1), got {tumour_fraction}")
    if not cases:
        raise ValueError("tumour_weights needs at least one case")
    flags = []
    for c in cases:
        if "label" not in c:
            raise DatasetError(f"{c.get('case_id', c.get('image'))}: weighting by tumour needs the mask")
        flags.append(has_tumour(c["label"]))
    n_t = sum(flags)
    n_e = len(flags) - n_t
    if n_t == 0 or n_e == 0:
        return [1.0 / len(flags)] * len(flags)
    return [tumour_fraction / n_t if f else (1.0 - tumour_fraction) / n_e for f in flags]


# ---------------------------------------------------------------------------------------------------------------
# intensity scale per patient

SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
INTENSITY_NORMS = ("fixed", "patient")


def _patient_slices(folder: Path) -> list[Path]:
    if PATIENT_RE.match(folder.name):
        return [Path(c["image"]) for c in _patient_cases(folder, require_labels=False)]
    # a flat folder of slices given to inference: taken as one patient
    return [p for p in _visible(folder)
            if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.stem.endswith("_mask")]


@functools.lru_cache(maxsize=1024)
def patient_percentiles(folder: str, percentile: float = 99.0) -> tuple[float, ...]:
    """Per-channel ``percentile`` (grey levels, 0..255) over every pixel of every slice of one patient: the
    images in ``folder`` (a kaggle_3m patient folder; a flat folder of slices counts as one patient), masks left
    out. Read once per folder and process."""
    files = _patient_slices(Path(folder))
    if not files:
        raise DatasetError(f"{folder}: no slices to take the patient's intensity scale from")
    pixels = []
    for f in files:
        try:
            with Image.open(f) as im:
                pixels.append(np.asarray(im.convert("RGB")).reshape(-1, 3))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{f}: cannot read the slice ({e}) for its patient's intensity scale") from e
    return tuple(float(v) for v in np.percentile(np.concatenate(pixels), percentile, axis=0))


class ScaleByPatientd(MapTransform):
    """Divide each channel of a slice by that channel's ``percentile`` over all slices of its patient.

    A fixed 0..255 scaling keeps each scanner's contrast: over the 16 local patients the FLAIR 99th percentile
    ranges from 88 to 186 grey levels, and the tumour's median FLAIR from 50 to 137. Buda et al. (Comput Biol Med
    2019, https://arxiv.org/abs/1906.03720) normalise each volume; this is that step for slices read one at a time:
    the patient is the slice file's folder (:func:`patient_percentiles`, computed once per folder). Per-slice
    percentiles do not work: they move with the tumour in the slice (docs/lgg_recipe.md, v4).

    Args:
        keys: loaded, channel-first images (float), e.g. ``image``.
        path_key: the key holding the image file's path, copied before loading (MONAI ``CopyItemsd``); removed.
        percentile: per channel, over the patient's pixels; 99 maps the brightest 1% of the volume to >= 1.
        min_scale: floor of the divisor in grey levels, so a blank channel is not divided by 0.

    Example::

        Compose([CopyItemsd(keys="image", names="image_path"), LoadImaged(keys="image"),
                 EnsureChannelFirstd(keys="image"), ScaleByPatientd(keys="image", path_key="image_path")])
    """

    def __init__(self, keys, path_key: str = "image_path", percentile: float = 99.0, min_scale: float = 1.0,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
        self.path_key, self.percentile, self.min_scale = path_key, float(percentile), float(min_scale)

    def __call__(self, data):
        d = dict(data)
        if self.path_key not in d:
            raise KeyError(f"ScaleByPatientd needs the image file's path under {self.path_key!r} "
                           "(CopyItemsd before LoadImaged)")
        path = Path(str(d.pop(self.path_key)))
        scale = np.maximum(patient_percentiles(str(path.parent), self.percentile), self.min_scale)
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != len(scale):
                raise ValueError(f"{path}: {img.shape[0]} channels, its patient's scale has {len(scale)}")
            d[key] = img / torch.as_tensor(scale, dtype=img.dtype).reshape(-1, *[1] * (img.ndim - 1))
        return d


def intensity_scaling(mode: str = "patient", percentile: float = 99.0, path_key: str = "image_path") -> list:
    """The LGG bundle's step after loading a slice (``--intensity_norm``): ``fixed`` maps 0..255 to 0..1 for every
    patient; ``patient`` divides each channel by its ``percentile`` over the patient (:class:`ScaleByPatientd`).
    Both consume ``path_key`` (the bundle copies the path there before loading)."""
    if mode == "fixed":
        return [ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0.0, b_max=1.0),
                DeleteItemsd(keys=path_key)]
    if mode == "patient":
        return [ScaleByPatientd(keys="image", path_key=path_key, percentile=percentile)]
    raise ValueError(f"--intensity_norm must be one of {', '.join(INTENSITY_NORMS)}, got {mode!r}")
