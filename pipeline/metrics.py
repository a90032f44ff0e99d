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

Sliced volumes (LGG brain MRI), as Buda et al. (Comput Biol Med 2019) report them, on top of the per-slice scores:

- Volume Dice / IoU per patient (``volume_record``): the patient's slice masks stacked in slice order into one
  volume, and Dice / IoU of that volume: |P ∩ T| and |P|, |T| summed over all slices, *not* the mean of per-slice
  scores. An empty predicted volume against an empty truth volume scores 1. Summarised as mean / median / std / n
  over patients (``summarize_groups``).
- During training the same volume Dice is the validation metric ``val_volume_dice`` of sliced bundles
  (``pipeline.handlers.VolumeDice``, from the per-patient sums of ``dice_from_counts``), the one that picks
  ``best.pt``.
- Tumour slices (``slice_summaries``): per-slice IoU and Dice summarised over the slices whose truth is non-empty.
- Empty slices (``slice_summaries``): of the slices whose truth is empty, how many are predicted empty (``rate``).
"""

from __future__ import annotations

import math
import warnings
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
        with warnings.catch_warnings():  # MONAI 1.5+ passes its own deprecated argument to get_mask_edges
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
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


def _stack(volume) -> np.ndarray:
    """A (H, W, S) boolean volume from an (H, W, S) array or a sequence of (H, W) slice masks (in slice order)."""
    if isinstance(volume, (list, tuple)):
        if not volume:
            raise ValueError("a volume needs at least one slice")
        return np.stack([_as_batch(s)[0, 0].numpy() > 0 for s in volume], axis=-1)
    a = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if a.ndim != 3:
        raise ValueError(f"expected an (H, W, n_slices) volume or a list of slices, got shape {a.shape}")
    return a > 0


def volume_record(pred, truth) -> dict:
    """Dice and IoU of one patient's whole volume (slices stacked in slice order), with its size and areas.

    ``pred`` and ``truth`` are (H, W, n_slices) arrays or sequences of (H, W) slice masks. Returns ``n_slices``,
    ``dice_volume``, ``iou_volume`` (1 when both volumes are empty, 0 when only one is), ``area_true`` and
    ``area_pred`` (voxels).
    """
    p, t = _stack(pred), _stack(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction volume shape {p.shape} differs from truth volume shape {t.shape}")
    rec = case_record(p, t, hd95=False)
    return {"n_slices": int(p.shape[-1]), "dice_volume": rec["dice"], "iou_volume": rec["iou"],
            "area_true": rec["area_true"], "area_pred": rec["area_pred"]}


def dice_from_counts(intersection: float, pred: float, truth: float) -> float:
    """Dice from voxel counts |P ∩ T|, |P|, |T|: the definition above (1 when both are empty)."""
    return 1.0 if pred + truth == 0 else 2.0 * intersection / (pred + truth)


def summarize_groups(group_records: Sequence[dict]) -> dict:
    """Summaries over patients of ``volume_record`` results: ``n`` patients, ``dice_volume`` and ``iou_volume``."""
    return {"n": len(group_records), **summarize_records(group_records, ("dice_volume", "iou_volume"))}


def slice_summaries(records: Sequence[dict]) -> dict:
    """From per-slice ``case_record`` results: IoU / Dice over tumour slices (non-empty truth) and the rate of
    empty-truth slices predicted empty (NaN when there are none)."""
    tumour = [r for r in records if r["area_true"] > 0]
    empty = [r for r in records if r["area_true"] == 0]
    predicted_empty = sum(r["area_pred"] == 0 for r in empty)
    return {
        "tumour_slices": {"n": len(tumour), **summarize_records(tumour, ("iou", "dice"))},
        "empty_slices": {"n": len(empty), "predicted_empty": int(predicted_empty),
                         "rate": predicted_empty / len(empty) if empty else math.nan},
    }
