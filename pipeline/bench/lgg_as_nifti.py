"""LGG kaggle_3m as a one-channel NIfTI set in the MSD layout: real volumes for measuring ``bundles/nifti.json``.

::

    python -m pipeline.bench.lgg_as_nifti --output_dir /tmp/lgg_flair_nifti            # ../shared/data/lgg
    python -m monai.bundle run cross_validation --config_file bundles/nifti.json \\
        --dataset_dir /tmp/lgg_flair_nifti --output_dir runs/cv/nifti-lgg-flair

Each patient folder becomes ``imagesTr/<patient>.nii.gz`` (its FLAIR channel, channel 1 of the slices, stacked
along axis 2 in slice order: shape (256, 256, slices), uint8 as stored) and ``labelsTr/<patient>.nii.gz`` (its
masks, 0/1). The affine is the identity: kaggle_3m keeps no spacing. Slices come from
:func:`pipeline.data.lgg.find_cases`, so the same checks apply (nothing skipped, an unlabelled slice is an error).

The output is derived from the shared data: write it outside the project (``/tmp``), never into ``data/``.
"""

from __future__ import annotations

import argparse
from itertools import groupby
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from ..data import lgg
from ..data.errors import DatasetError

FLAIR = 1  # kaggle_3m slices are (pre-contrast, FLAIR, post-contrast)


def convert(root: str | Path, output_dir: str | Path) -> list[str]:
    """Write the MSD layout of every patient under ``root`` into ``output_dir``; returns the patients written."""
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: not empty; give a new folder (the conversion never overwrites)")
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    written = []
    for patient, slices in groupby(lgg.find_cases(root), key=lambda c: c["group"]):
        slices = list(slices)
        image = np.stack([np.asarray(Image.open(c["image"]))[..., FLAIR] for c in slices], axis=2)
        label = np.stack([np.asarray(Image.open(c["label"])) > 127 for c in slices], axis=2).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(out / "imagesTr" / f"{patient}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(out / "labelsTr" / f"{patient}.nii.gz"))
        written.append(patient)
    return written


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_dir", default=str(Path(__file__).resolve().parents[2].parent / "shared/data/lgg"),
                   help="kaggle_3m (or the folder holding it); default ../shared/data/lgg")
    p.add_argument("--output_dir", required=True, help="a new folder, outside the project (e.g. /tmp/lgg_flair_nifti)")
    args = p.parse_args(argv)
    patients = convert(args.dataset_dir, args.output_dir)
    print(f"{len(patients)} patients written to {args.output_dir} (FLAIR channel, MSD layout)")


if __name__ == "__main__":
    from ..errors import install_excepthook

    install_excepthook()
    main()
