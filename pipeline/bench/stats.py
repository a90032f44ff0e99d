"""The statistics of the studies, the benchmarks and their reports, in one place: the per-unit scores of an
evaluation, summaries, the bootstrap confidence interval of a mean and the paired difference of two sets of scores.

A unit is what one score is of: an image, or a patient volume for grouped data (LGG, NIfTI). Intervals are 95%
percentile bootstraps of the mean over units (resampling units with replacement, ``N_BOOTSTRAP`` resamples, seed 0,
so a report is reproducible); a paired difference resamples the per-unit differences.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from pipeline.metrics import summarize  # noqa: F401  (the summary evaluation writes: mean, median, std, min, max, n)

N_BOOTSTRAP = 10000


def bootstrap_ci(values, n: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (resampling cases with replacement)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(n, v.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict:
    """``a`` minus ``b`` on the units both score, paired by unit: the units (sorted), their number, the mean
    difference with its paired bootstrap 95% CI, and on how many units ``a`` scores higher."""
    units = sorted(set(a) & set(b))
    diff = np.array([a[u] - b[u] for u in units], dtype=float)
    return {"units": units, "n": len(units), "mean": float(diff.mean()) if units else math.nan,
            "ci": bootstrap_ci(diff), "better": int((diff > 0).sum())}


def unit_scores(eval_dir: Path) -> tuple[str, dict[str, dict[str, float]]]:
    """Per-unit scores of one evaluation folder: per patient volume for grouped data (``per_group.csv``), else per
    image (``per_case.csv``). Returns (unit, {"iou": {id: value}, "dice": {...}, "hd95": {...}})."""
    grouped = Path(eval_dir) / "per_group.csv"
    if grouped.is_file():
        rows = list(csv.DictReader(open(grouped)))
        return "patient", {"iou": {r["group"]: float(r["iou_volume"]) for r in rows},
                           "dice": {r["group"]: float(r["dice_volume"]) for r in rows}}
    rows = list(csv.DictReader(open(Path(eval_dir) / "per_case.csv")))
    return "image", {k: {r["case_id"]: float(r[k]) for r in rows if r[k] not in ("", "nan")}
                     for k in ("iou", "dice", "hd95")}
