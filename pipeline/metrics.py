"""The metrics of this project, defined once.

All scores compare *binary* masks: the network's output is thresholded (sigmoid > 0.5 for one-channel outputs,
argmax for softmax outputs) before scoring, and the truth is binarised at load time. Scores are computed per image
(per patient volume for MRI), then summarised over images; never pooled over a batch and never on soft outputs.

- IoU  = |P ∩ T| / |P ∪ T|            (MONAI ``compute_iou``, ``include_background=True``, ``ignore_empty=False``)
- Dice = 2 |P ∩ T| / (|P| + |T|)      (MONAI ``compute_dice``, same flags)
- Empty truth: IoU = Dice = 1 if the prediction is empty too, else 0 (so predicting nothing on an empty image
  is rewarded and a false positive on it is punished; nothing is dropped from the mean).
- HD95 = 95th percentile of the symmetric surface distance in pixels (MONAI ``compute_hausdorff_distance``);
  undefined (NaN) when either mask is empty; summaries of HD95 use the finite values and report how many.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU, compute_dice, compute_hausdorff_distance, compute_iou

FLAGS = {"include_background": True, "ignore_empty": False}


def dice_metric() -> DiceMetric:
    """Cumulative Dice for validation handlers, with this module's definition."""
    return DiceMetric(reduction="mean", **FLAGS)


def iou_metric() -> MeanIoU:
    """Cumulative IoU for validation handlers, with this module's definition."""
    return MeanIoU(reduction="mean", **FLAGS)


def _as_batch(mask) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask.detach().cpu())
    t = t.squeeze()
    if t.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D mask (a channel dim of 1 is allowed), got shape {tuple(mask.shape)}")
    return (t > 0).float()[None, None]


def case_record(pred, truth, hd95: bool = True) -> dict:
    """IoU, Dice, HD95 and the areas (in pixels/voxels) of one binary prediction against its truth."""
    p, t = _as_batch(pred), _as_batch(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape[2:])} differs from truth shape {tuple(t.shape[2:])}")
    rec = {
        "iou": float(compute_iou(p, t, **FLAGS)),
        "dice": float(compute_dice(p, t, **FLAGS)),
        "hd95": float("nan"),
        "area_true": int(t.sum()),
        "area_pred": int(p.sum()),
    }
    if hd95 and rec["area_true"] and rec["area_pred"]:
        rec["hd95"] = float(compute_hausdorff_distance(p, t, include_background=True, percentile=95))
    return rec


def summarize(values: Sequence[float]) -> dict:
    """mean, median, std, min, max over the finite values, with ``n`` (finite) and ``n_total``."""
    arr = np.asarray([v for v in values], dtype=np.float64)
    fin = arr[np.isfinite(arr)]
    if fin.size == 0:
        return {"mean": math.nan, "median": math.nan, "std": math.nan, "min": math.nan, "max": math.nan,
                "n": 0, "n_total": int(arr.size)}
    return {"mean": float(fin.mean()), "median": float(np.median(fin)), "std": float(fin.std()),
            "min": float(fin.min()), "max": float(fin.max()), "n": int(fin.size), "n_total": int(arr.size)}


def summarize_records(records: Sequence[dict], keys: Sequence[str] = ("iou", "dice", "hd95")) -> dict:
    return {k: summarize([r[k] for r in records]) for k in keys}
