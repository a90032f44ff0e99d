"""PH2 dermoscopy dataset (Mendonça et al., EMBC 2013) in its original layout.

::

    PH2Dataset/
      PH2_dataset.csv                      Name,Clinical Diagnosis,...   (optional; 0 common nevus, 1 atypical, 2 melanoma)
      PH2 Dataset images/
        IMD002/
          IMD002_Dermoscopic_Image/IMD002.bmp   RGB, about 765 x 572 (sizes vary by a few pixels)
          IMD002_lesion/IMD002_lesion.bmp       lesion mask, 1-bit BMP (IMD002: 24-bit RGB, 0/255)
          IMD002_roi/*.bmp                      colour-class masks: NOT the lesion, ignored

``root`` may be the ``PH2Dataset`` folder or its ``PH2 Dataset images`` folder.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .errors import DatasetError

IMAGES_DIR = "PH2 Dataset images"
CSV_NAME = "PH2_dataset.csv"
CASE_RE = re.compile(r"^IMD\d{3}$")


def images_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"PH2 dataset folder does not exist: {root}")
    if (root / IMAGES_DIR).is_dir():
        return root / IMAGES_DIR
    if any(CASE_RE.match(p.name) for p in root.iterdir() if p.is_dir()):
        return root
    raise DatasetError(
        f"{root} is not a PH2 dataset folder: expected '{IMAGES_DIR}/IMDxxx/' inside it (or IMDxxx/ folders directly)"
    )


def read_diagnoses(csv_path: str | Path) -> dict[str, int]:
    """Clinical diagnosis per case id from ``PH2_dataset.csv`` (``Name,Clinical Diagnosis,...``)."""
    out: dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "Name" not in reader.fieldnames or "Clinical Diagnosis" not in reader.fieldnames:
            raise DatasetError(f"{csv_path}: expected columns 'Name' and 'Clinical Diagnosis', got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                out[row["Name"].strip()] = int(row["Clinical Diagnosis"])
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{csv_path}, line {line}: bad diagnosis {row['Clinical Diagnosis']!r}") from e
    return out


def find_cases(root: str | Path, require_labels: bool = True) -> list[dict]:
    """List the PH2 cases under ``root``, sorted by case id.

    Returns dicts with ``image``, ``label`` (when present), ``case_id`` (``IMDxxx``), ``group`` (= case id) and
    ``diagnosis`` (-1 when the CSV is absent or does not list the case).
    Raises :class:`DatasetError` for a missing folder, a case without its image, or (``require_labels``) without mask.
    """
    img_root = images_root(root)
    csv_path = img_root.parent / CSV_NAME
    diagnoses = read_diagnoses(csv_path) if csv_path.is_file() else {}
    cases = []
    for case_dir in sorted(p for p in img_root.iterdir() if p.is_dir()):
        cid = case_dir.name
        if not CASE_RE.match(cid):
            raise DatasetError(f"{case_dir}: unexpected folder in a PH2 layout (case folders are named IMDxxx)")
        image = case_dir / f"{cid}_Dermoscopic_Image" / f"{cid}.bmp"
        label = case_dir / f"{cid}_lesion" / f"{cid}_lesion.bmp"
        if not image.is_file():
            raise DatasetError(f"{cid}: dermoscopic image missing: {image}")
        case = {"image": str(image), "case_id": cid, "group": cid, "diagnosis": diagnoses.get(cid, -1)}
        if label.is_file():
            case["label"] = str(label)
        elif require_labels:
            raise DatasetError(f"{cid}: lesion mask missing: {label}")
        cases.append(case)
    if not cases:
        raise DatasetError(f"no PH2 cases (IMDxxx folders) found in {img_root}")
    return cases
