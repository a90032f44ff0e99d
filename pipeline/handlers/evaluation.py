"""Per-case (and per-patient) scores of an evaluation, written as CSV, JSON and a sheet of the worst cases."""

from __future__ import annotations

import csv
import heapq
import logging
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events

from .. import gallery
from .. import metrics as M
from ..runs import Timer, write_json
from ..visualize import contact_sheet, overlay
from .cases import (as_mask, as_plane, case_items, group_slice, save_map, slice_of, source_image,
                    volume_source)
from .record import peak_memory
from .volumes import SliceStack, largest_in_volumes

logger = logging.getLogger(__name__)


class CaseMetricsWriter:
    """Scores every case of an evaluation (see :mod:`pipeline.metrics`) and writes, in ``output_dir``:

    - ``per_case.csv``: case_id, iou, dice, hd95, area_true, area_pred (sorted by case id)
    - ``metrics.json``: mean / median / std / n of IoU, Dice and HD95, plus ``extra`` (checkpoint, split, ...)
    - ``worst_cases.png``: the ``worst_k`` lowest-IoU cases with truth and prediction outlines
    - ``gallery/index.html``: the same cases worst first, a row each of image | truth | prediction | errors with
      the case id, IoU and Dice, linking the CSVs (:mod:`pipeline.gallery`)

    With ``group_metrics`` (sliced volumes: LGG), also, as Buda et al. report them (:mod:`pipeline.metrics`):

    - ``per_group.csv``: group, n_slices, dice_volume, iou_volume, area_true, area_pred: each group's (patient's)
      slices stacked in slice order and scored as one volume (sorted by group)
    - in ``metrics.json``: ``groups`` (n, dice_volume and iou_volume summaries over patients), ``tumour_slices``
      (IoU, Dice over the slices with non-empty truth) and ``empty_slices`` (n, predicted_empty, rate)

    With ``volumes``: ``volumes/<group>.nii.gz``, the predicted masks of each group whose cases carry slice numbers,
    stacked as in :class:`MaskWriter`.

    With ``volume_largest_component``, each patient's slice masks (cases with a group and slice numbers) are stacked
    and only their largest 3D component is kept before anything is scored or written (:func:`largest_in_volumes`).

    With ``probabilities`` (``--save_probabilities true``: the engine keeps the foreground probability before the
    threshold as ``probability``): ``probabilities/<case_id>.png``, the probability at full resolution as 8-bit
    (``round(255 p)``), and ``truth/<case_id>.png`` (0/255), the label as it was scored; what cross-validation
    chooses its threshold and post-processing from.
    """

    def __init__(self, output_dir: str, worst_k: int = 8, extra: dict | None = None, group_metrics: bool = False,
                 volumes: bool = False, probabilities: bool = False, volume_largest_component: bool = False):
        self.out, self.worst_k, self.extra = Path(output_dir), worst_k, extra or {}
        self.group_metrics, self.volumes, self.probabilities = bool(group_metrics), bool(volumes), bool(probabilities)
        self.volume_largest = bool(volume_largest_component)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.records, self.worst, self.timer = [], [], Timer()
        self.preds, self.truths = SliceStack(), SliceStack()
        self.index, self.pending = [], []

    def _iteration(self, engine: Engine) -> None:
        for case_id, path, o, b in case_items(engine, with_batch=True):
            if "label" not in o:
                raise KeyError(f"{case_id}: evaluation needs a label for every case ({path})")
            pred, truth = as_mask(o["pred"]), as_mask(o["label"])
            group, k = group_slice(b, case_id)
            if self.probabilities:
                self._write_probability(case_id, o, truth)
                self.index.append({"case_id": case_id, "group": group, "slice": "" if k is None else k})
            item = {"case_id": case_id, "path": path, "group": group, "slice": k, "source": volume_source(b),
                    "slice_of": slice_of(b, case_id), "mask": pred, "truth": truth}
            if self.volume_largest:  # scored at the end, once each patient's volume is complete
                self.pending.append(item)
            else:
                self._score(item)

    def _score(self, item: dict) -> None:
        case_id, pred, truth = item["case_id"], item["mask"], item["truth"]
        rec = {"case_id": case_id, **M.case_record(pred, truth)}
        self.records.append(rec)
        if self.group_metrics or self.volumes:
            reference, axis = item["source"]
            self.preds.add(item["group"], item["slice"], case_id, pred, reference=reference, slice_axis=axis)
            if self.group_metrics:
                self.truths.add(item["group"], item["slice"], case_id, truth)
        heap_item = (-rec["iou"], case_id, (item["path"], *item["slice_of"]), pred, truth, rec["dice"])
        if len(self.worst) < self.worst_k:
            heapq.heappush(self.worst, heap_item)
        else:
            heapq.heappushpop(self.worst, heap_item)

    def _write_probability(self, case_id: str, o: dict, truth: np.ndarray) -> None:
        if "probability" not in o:
            raise KeyError(f"{case_id}: no probability kept (the engine keeps it with --save_probabilities true)")
        save_map(self.out / "probabilities" / f"{case_id}.png", as_plane(o["probability"]))
        save_map(self.out / "truth" / f"{case_id}.png", truth.astype(np.float32))

    def _completed(self, engine: Engine) -> None:
        for item in largest_in_volumes(self.pending):
            self._score(item)
        self.pending = []
        self.out.mkdir(parents=True, exist_ok=True)
        self.records.sort(key=lambda r: r["case_id"])
        fields = ["case_id", "iou", "dice", "hd95", "area_true", "area_pred"]
        with open(self.out / "per_case.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in self.records:
                w.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in fields})
        if self.probabilities:
            with open(self.out / "probabilities" / "index.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["case_id", "group", "slice"])
                w.writeheader()
                w.writerows(sorted(self.index, key=lambda r: r["case_id"]))
        summary = M.summarize_records(self.records)
        doc = {**self.extra, "n_cases": len(self.records), "summary": summary}
        calibration = getattr(engine.state, "calibration", None)  # set by a Calibration handler attached before
        if calibration:
            doc["calibration"] = {k: calibration[k] for k in ("ece", "mce", "pixels")}
        if self.group_metrics:
            doc.update(self._write_groups())
        if self.volumes:
            self.preds.write_volumes(self.out)
        seconds = self.timer()
        write_json(self.out / "metrics.json", {**doc, "seconds": round(seconds, 1),
                                               "seconds_per_case": round(seconds / max(len(self.records), 1), 3),
                                               **peak_memory(),
                                               "metric_definition": "pipeline.metrics (thresholded, per image)"})
        worst = sorted(self.worst, key=lambda t: (-t[0], t[1]))
        if worst:
            images = [source_image(*src) for _, _, src, *_ in worst]
            contact_sheet([overlay(im, pred=pr, truth=tr) for im, (_, _, _, pr, tr, _) in zip(images, worst)],
                          [f"{cid}  IoU {-niou:.3f}" for niou, cid, *_ in worst], self.out / "worst_cases.png")
            rows = [{"case_id": cid, "scores": {"IoU": -niou, "Dice": dice}, "image": im, "pred": pr, "truth": tr}
                    for im, (niou, cid, _, pr, tr, dice) in zip(images, worst)]
            links = {"cases": "per_case.csv", **({"groups": "per_group.csv"} if self.group_metrics else {})}
            gallery.write(self.out, rows, f"Worst cases: {self.extra.get('split', 'evaluation')} split, "
                          f"{len(self.records)} cases, checkpoint {self.extra.get('ckpt', '')}", links)
        logger.info("evaluated %d cases: IoU mean %.4f median %.4f | Dice mean %.4f median %.4f -> %s",
                    len(self.records), summary["iou"]["mean"], summary["iou"]["median"], summary["dice"]["mean"],
                    summary["dice"]["median"], self.out)

    def _write_groups(self) -> dict:
        """``per_group.csv`` and the group / tumour-slice / empty-slice summaries for ``metrics.json``."""
        rows = [{"group": g, **M.volume_record(self.preds.volume(g), self.truths.volume(g))}
                for g in sorted(self.truths.groups)]
        fields = ["group", "n_slices", "dice_volume", "iou_volume", "area_true", "area_pred"]
        with open(self.out / "per_group.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in fields})
        groups = M.summarize_groups(rows)
        slices = M.slice_summaries(self.records)
        logger.info("volume Dice over %d groups: mean %.4f median %.4f | tumour slices (%d): IoU mean %.4f | "
                    "empty slices predicted empty: %d of %d", groups["n"], groups["dice_volume"]["mean"],
                    groups["dice_volume"]["median"], slices["tumour_slices"]["n"],
                    slices["tumour_slices"]["iou"]["mean"], slices["empty_slices"]["predicted_empty"],
                    slices["empty_slices"]["n"])
        return {"groups": groups, **slices,
                "group_metric_definition": "pipeline.metrics.volume_record (Dice / IoU of each group's stacked "
                                           "slices; tumour_slices: non-empty truth; empty_slices: empty truth)"}
