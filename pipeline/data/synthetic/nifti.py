"""Synthetic NIfTI sample in the Medical Segmentation Decathlon layout (:mod:`pipeline.data.nifti` reads it)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..marker import MARKER, marker_text
from ..nifti import IMAGES, LABELS


def synthetic_volume(rng: np.random.Generator, shape=(64, 64, 12)) -> tuple[np.ndarray, np.ndarray]:
    """One MR-like volume (float32) and its organ label (uint8 0/1), both of ``shape`` (x, y, z).

    A textured elliptical body of moderate intensity in every slice and a bright ellipsoidal 'organ' inside it that
    spans a contiguous run of about half the slices (none at the ends), with Rician-like noise.
    """
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32),
                          np.arange(nz, dtype=np.float32), indexing="ij")
    bx, by = nx / 2 + rng.uniform(-2, 2), ny / 2 + rng.uniform(-2, 2)
    body = ((x - bx) / (0.42 * nx)) ** 2 + ((y - by) / (0.36 * ny)) ** 2 <= 1.0
    run = max(3, int(round(nz * rng.uniform(0.4, 0.6))))
    first = int(rng.integers(1, nz - run))  # at least one empty slice at either end
    oz = first + (run - 1) / 2
    ox, oy = bx + rng.uniform(-0.12, 0.12) * nx, by + rng.uniform(-0.1, 0.1) * ny
    ax, ay = rng.uniform(0.12, 0.2) * nx, rng.uniform(0.1, 0.17) * ny
    organ = ((x - ox) / ax) ** 2 + ((y - oy) / ay) ** 2 + ((z - oz) / (run / 2)) ** 2 <= 1.0
    organ &= body
    tissue, bright = rng.uniform(250, 350), rng.uniform(1.8, 2.4)
    coarse = rng.normal(0, 1, (nx // 8 + 2, ny // 8 + 2, nz))
    texture = np.kron(coarse, np.ones((8, 8, 1)))[:nx, :ny, :]
    img = body * (tissue + 15 * texture) + organ * tissue * (bright - 1)
    noise = rng.normal(0, 12, (2, *shape))
    img = np.hypot(img + noise[0], noise[1]).astype(np.float32)  # magnitude image: Rician background
    return img, organ.astype(np.uint8)


def synthetic_affine(rng: np.random.Generator, spacing=(0.8, 0.8, 2.5)) -> np.ndarray:
    """An LPS-stored, anisotropic affine with an offset (not the identity, so a lost affine shows)."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [25.6 + rng.uniform(-5, 5), 25.6 + rng.uniform(-5, 5), -15.0 + rng.uniform(-5, 5)]
    return affine


def write_nifti(root: str | Path, n_cases: int = 4, seed: int = 0) -> Path:
    """Write a synthetic MSD-layout sample of ``n_cases`` volumes (64 x 64 x 10-14, spacing 0.8 x 0.8 x 2.5 mm)
    under ``root``: ``imagesTr/<case>.nii.gz`` (float32), ``labelsTr/<case>.nii.gz`` (uint8 0/1), a
    ``dataset.json`` and the synthetic marker; return ``root``."""
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    (root / LABELS).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n_cases):
        case = f"organ_{i + 1:03d}"
        img, lab = synthetic_volume(rng, (64, 64, int(rng.integers(10, 15))))
        affine = synthetic_affine(rng)
        image = nib.Nifti1Image(img, affine)
        image.header.set_xyzt_units("mm", "sec")
        label = nib.Nifti1Image(lab, affine)
        label.header.set_data_dtype(np.uint8)
        label.header.set_xyzt_units("mm", "sec")
        nib.save(image, str(root / IMAGES / f"{case}.nii.gz"))
        nib.save(label, str(root / LABELS / f"{case}.nii.gz"))
        training.append({"image": f"./{IMAGES}/{case}.nii.gz", "label": f"./{LABELS}/{case}.nii.gz"})
    doc = {"name": "SyntheticOrgan", "description": "synthetic MR-like volumes (not real data)",
           "tensorImageSize": "3D", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "organ"}, "numTraining": n_cases,
           "numTest": 0, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(doc, indent=2) + "\n")
    (root / MARKER).write_text(marker_text("nifti", n_cases=n_cases, seed=seed))
    return root
