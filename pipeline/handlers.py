"""Ignite handlers MONAI lacks: a per-epoch run record, TensorBoard overlays, per-case evaluation and mask writing.

Each has ``attach(engine)`` so bundles list it among an engine's handlers. All of them read the decollated
``engine.state.batch`` / ``engine.state.output`` of MONAI engines (``decollate=True``, the default). The case dicts'
extra keys travel through the engine untouched: ``case_id`` and ``group`` (str) come back as strings, ``slice``
(int) as an int (collated to a tensor, decollated back), so sliced volumes (LGG) can be regrouped per patient;
slices of NIfTI volumes (:mod:`pipeline.data.nifti`) also carry ``slice_axis`` (int) and ``reference`` (str, the
source volume), so their predicted volume is written with the source's affine and header.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler
from PIL import Image

from . import metrics as M
from .distributed import all_reduce_sum, broadcast_state, is_main
from .runs import Timer, update_json, write_json
from .visualize import contact_sheet, load_rgb, overlay

logger = logging.getLogger(__name__)


def _items(engine: Engine, with_batch: bool = False):
    """(case_id, source image path, output dict) for each case of the current iteration; with ``with_batch``,
    the case's decollated batch dict (``group``, ``slice``, ...) comes fourth."""
    batch, output = engine.state.batch, engine.state.output
    if isinstance(batch, dict) or isinstance(output, dict):
        raise TypeError("these handlers need decollated engine state (MONAI engines with decollate=True)")
    for b, o in zip(batch, output):
        image = o.get("image", b.get("image"))
        path = getattr(image, "meta", {}).get("filename_or_obj", "")
        case_id = str(b.get("case_id", Path(path).stem))
        yield (case_id, path, o, b) if with_batch else (case_id, path, o)


def _group_slice(b: dict, case_id: str) -> tuple[str, int | None]:
    """The case's group (its own id when it has none) and slice number (None when it has none)."""
    k = b.get("slice")
    if isinstance(k, (list, tuple)):
        k = k[0] if len(k) == 1 else k
    return str(b.get("group", case_id)), None if k is None else int(k)


def _first(x):
    return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x


def _volume_source(b: dict) -> tuple[str | None, int | None]:
    """``(reference volume path, slice axis)`` of a case that is a slice of a NIfTI volume, else ``(None, None)``."""
    reference, axis = _first(b.get("reference")), _first(b.get("slice_axis"))
    if reference is None or axis is None:
        return None, None
    return str(reference), int(axis)


def _source_image(path: str, slice_no: int | None = None, slice_axis: int | None = None) -> np.ndarray:
    """The image to draw outlines on: the source image file, or slice ``slice_no`` along ``slice_axis`` of the
    source NIfTI volume (cached: :func:`pipeline.data.nifti.load_slice`)."""
    if slice_no is not None and slice_axis is not None:
        from .data.nifti import load_slice

        return load_slice(path, slice_no, slice_axis)
    return load_rgb(path)


def _slice_of(b: dict, case_id: str) -> tuple[int | None, int | None]:
    """``(slice number, slice axis)`` of a slice of a volume, else ``(None, None)``."""
    axis = _volume_source(b)[1]
    return (_group_slice(b, case_id)[1], axis) if axis is not None else (None, None)


class SliceStack:
    """Binary slice masks per group (patient), kept bit-packed, stacked in slice order into (H, W, n_slices).

    Slices are ordered by their ``slice`` number; cases without one (a group of plain images) by case id. A group
    whose cases name a ``reference`` volume and a ``slice_axis`` (NIfTI slices) is written along that axis with the
    reference's affine and header (:meth:`write_volume`).
    """

    def __init__(self):
        self.groups: dict[str, dict[tuple, tuple]] = {}
        self.sources: dict[str, tuple[str, int]] = {}

    def add(self, group: str, slice_no: int | None, case_id: str, mask: np.ndarray, reference: str | None = None,
            slice_axis: int | None = None) -> None:
        if reference is not None and slice_axis is not None:
            source = self.sources.setdefault(group, (str(reference), int(slice_axis)))
            if source != (str(reference), int(slice_axis)):
                raise RuntimeError(f"{case_id}: {group} mixes slices of {source} and {(reference, slice_axis)}")
        slices = self.groups.setdefault(group, {})
        key = (0, slice_no, "") if slice_no is not None else (1, 0, case_id)
        if key in slices:
            raise RuntimeError(f"{case_id}: slice {slice_no} of {group} was already seen as {slices[key][0]}")
        slices[key] = (case_id, mask.shape, np.packbits(mask.astype(bool)))

    def has_slice_numbers(self, group: str) -> bool:
        return all(key[0] == 0 for key in self.groups[group])

    def volume(self, group: str) -> np.ndarray:
        """uint8 0/1 volume (H, W, n_slices) of the group, slices in order."""
        slices = [v for _, v in sorted(self.groups[group].items())]
        shapes = sorted({shape for _, shape, _ in slices})
        if len(shapes) > 1:
            raise RuntimeError(f"{group}: its slices differ in size {shapes}; they cannot be stacked into a volume")
        return np.stack([np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape)
                         for _, shape, packed in slices], axis=-1).astype(np.uint8)

    def write_volume(self, group: str, out_dir: Path) -> Path:
        """``<out_dir>/volumes/<group>.nii.gz``: uint8 0/1, shape (H, W, n_slices), identity affine; for a group
        with a reference volume, the slices stacked along its slice axis, the reference's shape, affine and header."""
        import nibabel as nib

        path = Path(out_dir) / "volumes" / f"{group}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        if group in self.sources:
            nib.save(self.like_reference(group), str(path))
        else:
            nib.save(nib.Nifti1Image(self.volume(group), np.eye(4)), str(path))
        return path

    def like_reference(self, group: str):
        """The group's slices stacked along its slice axis (``np.moveaxis`` of the (H, W, n) stack) as a NIfTI image
        with the reference volume's affine and a copy of its header (data type uint8, no scaling, display range
        0..1). Every slice 0..n-1 of the reference must be present."""
        import nibabel as nib

        reference, axis = self.sources[group]
        ref = nib.load(reference)
        shape = tuple(int(n) for n in ref.shape[:3])
        numbers = [key[1] for key in sorted(self.groups[group])]
        if numbers != list(range(shape[axis])):
            raise RuntimeError(f"{group}: the predicted slices do not cover the {shape[axis]} slices along axis "
                               f"{axis} of {reference} (got {len(numbers)}: {numbers[:3]}...)")
        vol = np.moveaxis(self.volume(group), -1, axis)
        if vol.shape != shape:
            raise RuntimeError(f"{group}: predicted volume {vol.shape} differs from the shape {shape} of {reference}")
        header = ref.header.copy()
        header.set_data_dtype(np.uint8)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0.0, 1.0
        cls = type(ref) if isinstance(ref, nib.Nifti1Image) else nib.Nifti1Image
        return cls(vol, None, header=header)  # no affine given: the header's qform and sform are kept as they are

    def write_volumes(self, out_dir: Path) -> list[Path]:
        """Volumes of the groups whose cases carry slice numbers (groups of plain images get none)."""
        groups = [g for g in sorted(self.groups) if self.has_slice_numbers(g)]
        skipped = len(self.groups) - len(groups)
        if skipped:
            logger.info("%d inputs carry no slice number (not a sliced layout): no volume written for them", skipped)
        return [self.write_volume(g, out_dir) for g in groups]


def _mask(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.squeeze(0) > 0 if a.ndim == 3 else a > 0


class ValidateEvery(ValidationHandler):
    """MONAI's ``ValidationHandler`` at every ``interval``-th epoch *and* at the last epoch, so a run shorter than the
    interval (or not a multiple of it) still ends validated, with a ``best.pt``.

    In distributed training every rank first takes rank 0's weights and batch-norm statistics, so that each rank's
    share of the validation set is scored with the network that ``best.pt`` (written by rank 0) will hold."""

    def attach(self, engine: Engine) -> None:
        def due(engine: Engine, epoch: int) -> bool:
            return epoch % self.interval == 0 or epoch == engine.state.max_epochs

        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), self)

    def __call__(self, engine: Engine) -> None:
        broadcast_state(getattr(self.validator, "network", None))
        super().__call__(engine)


class RunRecorder:
    """One readable line per epoch, TensorBoard scalars and ``metrics.json`` for a training run.

    Attach to the trainer *after* ``ValidationHandler`` so that the epoch's validation metrics are available.
    Writes ``train/loss`` (epoch mean), ``train/lr``, ``val/<metric>`` and ``time/epoch_s`` to ``summary_writer``
    and keeps ``history``, ``best`` and ``extra`` (e.g. the dataset and its skipped cases) in
    ``<output_dir>/metrics.json`` after every epoch.

    Distributed training: the loss is the mean over the iterations of all ranks; only rank 0 writes and logs (give
    the other ranks ``summary_writer=None``).
    """

    def __init__(self, output_dir: str, validator: Engine | None = None, optimizer=None, summary_writer=None,
                 key_metric: str = "val_iou", extra: dict | None = None):
        self.path, self.extra = Path(output_dir) / "metrics.json", extra or {}
        self.validator, self.optimizer, self.writer, self.key = validator, optimizer, summary_writer, key_metric
        self.history: list[dict] = []
        self.best: dict = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.run_timer = Timer()
        if self.path.is_file():  # resumed run: keep the history written so far
            import json

            doc = json.loads(self.path.read_text())
            self.history = [h for h in doc.get("history", []) if h["epoch"] <= engine.state.epoch]
            self.best = doc.get("best", {}) or {}

    def _epoch_started(self, engine: Engine) -> None:
        self.epoch_timer = Timer()
        self.loss_sum, self.n = 0.0, 0
        self.lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else math.nan

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        loss = out[0]["loss"] if isinstance(out, list) else out["loss"]
        # MONAI's decollation already made the loss a Python float
        loss = float(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss}) at epoch {engine.state.epoch}, iteration {engine.state.iteration}: "
                "stopping; the checkpoints of the last completed epoch are kept (models/last.pt, models/best.pt)")
        self.loss_sum += loss
        self.n += 1

    def _epoch_completed(self, engine: Engine) -> None:
        epoch, max_epochs = engine.state.epoch, engine.state.max_epochs
        loss_sum, n = all_reduce_sum([self.loss_sum, self.n])
        loss = float(loss_sum) / max(n, 1)
        rec = {"epoch": epoch, "train_loss": loss, "lr": self.lr, "epoch_s": round(self.epoch_timer(), 3),
               "elapsed_s": round(self.run_timer(), 2)}
        if self.validator is not None and self.validator.state.epoch == epoch and self.validator.state.metrics:
            rec.update({k: float(v) for k, v in self.validator.state.metrics.items()})
        self.history.append(rec)
        if self.key in rec and (not self.best or rec[self.key] > self.best[self.key]):
            self.best = {"epoch": epoch, "key_metric": self.key,
                         **{k: v for k, v in rec.items() if k.startswith("val_")}}
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, epoch)
            self.writer.add_scalar("train/lr", self.lr, epoch)
            self.writer.add_scalar("time/epoch_s", rec["epoch_s"], epoch)
            for k, v in rec.items():
                if k.startswith("val_"):
                    self.writer.add_scalar(f"val/{k[4:]}", v, epoch)
            self.writer.flush()
        if not is_main():
            return
        vals = "  ".join(f"{k[4:]} {v:.4f}" for k, v in rec.items() if k.startswith("val_"))
        best = f"  (best {self.key[4:]} {self.best[self.key]:.4f} @ {self.best['epoch']})" if self.best else ""
        logger.info("epoch %d/%d  loss %.4f  lr %.2e  %.1fs%s%s", epoch, max_epochs, loss, self.lr, rec["epoch_s"],
                    f"  val {vals}" if vals else "", best)
        update_json(self.path, **self.extra, history=self.history, best=self.best, epochs_done=epoch,
                    max_epochs=max_epochs)

    def _completed(self, engine: Engine) -> None:
        if not is_main():
            return
        update_json(self.path, train_seconds=round(self.run_timer(), 1), completed=True, **peak_memory())


def peak_memory() -> dict:
    """Peak resident memory of this process (``peak_rss_gb``) and, on CUDA, peak allocated GPU memory
    (``peak_cuda_gb``), in GiB."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


class TensorBoardOverlays:
    """Validation images with truth (green) and prediction (magenta) outlines, one image tag per case.

    The first ``max_cases`` cases of each validation run are drawn on their source image at full resolution,
    then shrunk to ``width`` pixels; the step is the trainer epoch (MONAI evaluators run with it). A None
    ``summary_writer`` (ranks other than 0 in distributed training) draws nothing; rank 0 draws the first cases of its
    own share of the validation set.
    """

    def __init__(self, summary_writer, max_cases: int = 4, width: int = 384, tag: str = "val/overlay"):
        self.writer, self.max_cases, self.width, self.tag = summary_writer, max_cases, width, tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: setattr(self, "_done", 0))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)

    def _iteration(self, engine: Engine) -> None:
        if self.writer is None:
            return
        for case_id, path, o, b in _items(engine, with_batch=True):
            if self._done >= self.max_cases:
                return
            # traced at the width shown: tracing outlines at source resolution at every validation cost about as
            # much as the network's forward passes
            img = overlay(_source_image(path, *_slice_of(b, case_id)), pred=_mask(o["pred"]),
                          truth=_mask(o["label"]) if "label" in o else None, width=self.width)
            self.writer._get_file_writer().add_summary(_png_summary(f"{self.tag}/{case_id}", img), engine.state.epoch)
            self._done += 1


def _png_summary(tag: str, img: np.ndarray):
    """The TensorBoard image summary ``SummaryWriter.add_image`` writes, PNG-encoded at zlib level 1: at its default
    level 6, encoding four dermoscopy overlays took a fifth of a PH2 validation pass; level 1 is 4x faster for a
    10% larger file."""
    import io

    from tensorboard.compat.proto.summary_pb2 import Summary

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    h, w = img.shape[:2]
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(height=h, width=w, colorspace=img.shape[2],
                                                                      encoded_image_string=buf.getvalue()))])


class VolumeDice:
    """Validation metric ``val_volume_dice``: the mean over groups (patients) of the Dice of each group's slices
    taken as one volume (:func:`pipeline.metrics.dice_from_counts` of the voxel counts summed over its slices), the
    figure evaluation reports as ``groups.dice_volume`` (Buda et al.'s metric). Mean per-slice IoU, the default key
    metric, counts every tumour-free slice predicted empty as a perfect score, so on LGG it kept a checkpoint that
    predicted little at all.

    Attach to the validator before the handlers that read ``engine.state.metrics`` (list it in the validator's
    ``val_handlers``). Args:
        groups: every group of the validation set (needed in distributed validation, where each rank sees a share
            and the counts are summed across ranks); None: the groups seen.
        name: the metric name in ``engine.state.metrics``.
    """

    def __init__(self, groups: list[str] | None = None, name: str = "val_volume_dice"):
        self.groups, self.name = (sorted(set(groups)) if groups is not None else None), name
        self.counts: dict[str, np.ndarray] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.counts.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._completed)

    def _iteration(self, engine: Engine) -> None:
        for case_id, _, o, b in _items(engine, with_batch=True):
            if "label" not in o:
                raise KeyError(f"{case_id}: VolumeDice needs the label of every validation case")
            group = _group_slice(b, case_id)[0]
            if self.groups is not None and group not in self.groups:
                raise KeyError(f"{case_id}: group {group!r} is not among the {len(self.groups)} validation groups "
                               "given")
            p, t = _mask(o["pred"]), _mask(o["label"])
            self.counts.setdefault(group, np.zeros(3))[:] += (np.count_nonzero(p & t), np.count_nonzero(p),
                                                              np.count_nonzero(t))

    def _completed(self, engine: Engine) -> None:
        groups = self.groups if self.groups is not None else sorted(self.counts)
        if not groups:
            raise RuntimeError("VolumeDice: the validation set is empty")
        flat = all_reduce_sum([float(x) for g in groups for x in self.counts.get(g, np.zeros(3))])
        counts = np.asarray(flat, dtype=np.float64).reshape(len(groups), 3)
        engine.state.metrics[self.name] = float(np.mean([M.dice_from_counts(*c) for c in counts]))


class CaseMetricsWriter:
    """Scores every case of an evaluation (see :mod:`pipeline.metrics`) and writes, in ``output_dir``:

    - ``per_case.csv``: case_id, iou, dice, hd95, area_true, area_pred (sorted by case id)
    - ``metrics.json``: mean / median / std / n of IoU, Dice and HD95, plus ``extra`` (checkpoint, split, ...)
    - ``worst_cases.png``: the ``worst_k`` lowest-IoU cases with truth and prediction outlines

    With ``group_metrics`` (sliced volumes: LGG), also, as Buda et al. report them (:mod:`pipeline.metrics`):

    - ``per_group.csv``: group, n_slices, dice_volume, iou_volume, area_true, area_pred: each group's (patient's)
      slices stacked in slice order and scored as one volume (sorted by group)
    - in ``metrics.json``: ``groups`` (n, dice_volume and iou_volume summaries over patients), ``tumour_slices``
      (IoU, Dice over the slices with non-empty truth) and ``empty_slices`` (n, predicted_empty, rate)

    With ``volumes``: ``volumes/<group>.nii.gz``, the predicted masks of each group whose cases carry slice numbers,
    stacked as in :class:`MaskWriter`.
    """

    def __init__(self, output_dir: str, worst_k: int = 8, extra: dict | None = None, group_metrics: bool = False,
                 volumes: bool = False):
        self.out, self.worst_k, self.extra = Path(output_dir), worst_k, extra or {}
        self.group_metrics, self.volumes = bool(group_metrics), bool(volumes)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.records, self.worst, self.timer = [], [], Timer()
        self.preds, self.truths = SliceStack(), SliceStack()

    def _iteration(self, engine: Engine) -> None:
        for case_id, path, o, b in _items(engine, with_batch=True):
            if "label" not in o:
                raise KeyError(f"{case_id}: evaluation needs a label for every case ({path})")
            pred, truth = _mask(o["pred"]), _mask(o["label"])
            rec = {"case_id": case_id, **M.case_record(pred, truth)}
            self.records.append(rec)
            if self.group_metrics or self.volumes:
                group, k = _group_slice(b, case_id)
                reference, axis = _volume_source(b)
                self.preds.add(group, k, case_id, pred, reference=reference, slice_axis=axis)
                if self.group_metrics:
                    self.truths.add(group, k, case_id, truth)
            item = (-rec["iou"], case_id, (path, *_slice_of(b, case_id)), pred, truth)
            if len(self.worst) < self.worst_k:
                heapq.heappush(self.worst, item)
            else:
                heapq.heappushpop(self.worst, item)

    def _completed(self, engine: Engine) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.records.sort(key=lambda r: r["case_id"])
        fields = ["case_id", "iou", "dice", "hd95", "area_true", "area_pred"]
        with open(self.out / "per_case.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in self.records:
                w.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in fields})
        summary = M.summarize_records(self.records)
        doc = {**self.extra, "n_cases": len(self.records), "summary": summary}
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
            contact_sheet([overlay(_source_image(*src), pred=pr, truth=tr) for _, _, src, pr, tr in worst],
                          [f"{cid}  IoU {-niou:.3f}" for niou, cid, *_ in worst], self.out / "worst_cases.png")
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


class MaskWriter:
    """Writes ``masks/<case_id>.png`` (0/255, the source image's exact size), ``overlays/<case_id>.png`` and
    ``predictions.csv`` (case, source, size, predicted area) under ``output_dir``.

    With ``volumes`` (sliced layouts: LGG) it also stacks each group's (patient's) predicted slice masks in slice
    order and writes ``volumes/<group>.nii.gz`` with nibabel: uint8 0/1, shape (H, W, n_slices), identity affine
    (voxel spacing unknown: the slices carry none). Inputs without a slice number (a flat folder of images) get
    masks only. Slices of NIfTI volumes (cases with ``reference`` and ``slice_axis``: :mod:`pipeline.data.nifti`)
    get their volume only, whatever ``volumes`` says: ``volumes/<case>.nii.gz`` with the source volume's shape,
    affine and header (:meth:`SliceStack.like_reference`), and a row per slice in ``predictions.csv``.
    """

    def __init__(self, output_dir: str, overlays: bool = True, volumes: bool = False):
        self.out, self.overlays, self.volumes = Path(output_dir), overlays, bool(volumes)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.rows, self.stack = [], SliceStack()

    def _iteration(self, engine: Engine) -> None:
        for case_id, path, o, b in _items(engine, with_batch=True):
            mask = _mask(o["pred"])
            reference, axis = _volume_source(b)
            if self.volumes or reference is not None:
                self.stack.add(*_group_slice(b, case_id), case_id, mask, reference=reference, slice_axis=axis)
            if reference is not None:  # a slice of a NIfTI volume: the volume is written at the end
                self.rows.append({"case_id": case_id, "source": path, "width": mask.shape[1],
                                  "height": mask.shape[0], "area_pred": int(mask.sum())})
                continue
            (self.out / "masks").mkdir(parents=True, exist_ok=True)
            with Image.open(path) as src:
                if src.size != (mask.shape[1], mask.shape[0]):
                    raise RuntimeError(f"{case_id}: predicted mask {mask.shape[::-1]} != source size {src.size}")
            Image.fromarray(mask.astype(np.uint8) * 255).save(self.out / "masks" / f"{case_id}.png")
            if self.overlays:
                (self.out / "overlays").mkdir(parents=True, exist_ok=True)
                Image.fromarray(overlay(load_rgb(path), pred=mask)).save(self.out / "overlays" / f"{case_id}.png")
            self.rows.append({"case_id": case_id, "source": path, "width": mask.shape[1], "height": mask.shape[0],
                              "area_pred": int(mask.sum())})

    def _completed(self, engine: Engine) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "predictions.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["case_id", "source", "width", "height", "area_pred"])
            w.writeheader()
            w.writerows(sorted(self.rows, key=lambda r: r["case_id"]))
        n_masks = len(self.rows) - sum(len(self.stack.groups[g]) for g in self.stack.sources)
        if n_masks or not self.stack.sources:
            logger.info("wrote %d masks to %s", n_masks, self.out / "masks")
        if self.volumes or self.stack.sources:
            written = self.stack.write_volumes(self.out)
            logger.info("wrote %d volumes to %s", len(written), self.out / "volumes")


def load_network_weights(network: torch.nn.Module, path: str, map_location="cpu") -> dict:
    """Load ``path`` (a ``best.pt`` state dict or a ``last.pt`` training checkpoint) into ``network`` with
    ``torch.load(weights_only=True)``. A checkpoint made for another network, width or channel count fails with a
    message saying which parameters differ, not a stack of key errors. Returns the loaded checkpoint."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"cannot read checkpoint {path}: {e}") from e
    state = ckpt.get("network", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} holds no network weights (expected a state dict, or a dict with 'network')")
    own = network.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        problems = []
        if missing or unexpected:
            problems.append(f"{len(missing)} parameters of the network are not in the checkpoint (e.g. "
                            f"{missing[:2]}) and {len(unexpected)} in the checkpoint are not in the network (e.g. "
                            f"{unexpected[:2]})")
        if shapes:
            problems.append(f"{len(shapes)} differ in shape (e.g. {shapes[0]})")
        raise RuntimeError(f"checkpoint {path} does not fit the configured network {type(network).__name__}: "
                           + "; ".join(problems) + ". Pass the --network, --width, --network_kwargs and channel "
                           "settings it was trained with (see its run's config.json).")
    network.load_state_dict(state)
    return ckpt


class WeightsLoader:
    """Loads network weights when attached (before the engine runs), with :func:`load_network_weights`."""

    def __init__(self, load_path: str, network: torch.nn.Module, map_location="cpu"):
        self.path, self.network, self.map_location = load_path, network, map_location

    def attach(self, engine: Engine) -> None:
        if isinstance(self.network, torch.jit.ScriptModule):  # an exported .ts file: the weights came with it
            logger.info("using the exported TorchScript network %s", self.path)
            return
        load_network_weights(self.network, self.path, self.map_location)
        logger.info("loaded network weights from %s", self.path)


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill during the write leaves the previous file intact


class Checkpoints:
    """``models/last.pt`` after every epoch (network, optimizer, scheduler, trainer state and the best score so far)
    and ``models/best.pt`` (network weights) whenever the validator's ``key_metric`` improves; both written
    atomically (temporary file, then rename), so a killed run never leaves a corrupt checkpoint.

    With ``resume`` the trainer continues from ``last.pt`` in ``save_dir`` to its planned ``max_epochs``: weights,
    optimizer, scheduler and epoch count are restored, and ``best.pt`` is only replaced by a better score than the
    one recorded before the interruption. A larger (or smaller) ``--epochs`` than the checkpoint's plan extends (or
    shortens) the run, and a cosine learning-rate schedule is continued on the new length from the resumed epoch.

    Distributed training: every rank keeps the best score (the validation metric is the same on all ranks) and
    resumes from ``last.pt`` (the run folder must be readable from every node); only rank 0 writes.

    Args:
        save_dir: the run's ``models`` folder.
        objects: name -> object with ``state_dict``/``load_state_dict``; must include ``network``.
        validator: the evaluator whose ``key_metric`` picks ``best.pt`` (None: no best checkpoint).
        key_metric: the validator metric to maximise.
        resume: continue from ``save_dir/last.pt`` (an error if it does not exist).
    """

    def __init__(self, save_dir: str, objects: dict, validator: Engine | None = None, key_metric: str = "val_iou",
                 resume: bool = False):
        self.dir, self.objects, self.validator, self.key = Path(save_dir), objects, validator, key_metric
        self.resume, self.best = resume, {"metric": -math.inf, "epoch": 0}

    def attach(self, trainer: Engine) -> None:
        if self.resume:
            self._load(trainer)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._save_last)
        if self.validator is not None:
            self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._save_best, trainer)

    def _load(self, trainer: Engine) -> None:
        path = self.dir / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {path}")
        ckpt = load_network_weights(self.objects["network"], str(path))
        max_epochs = trainer.state.max_epochs
        for name, obj in self.objects.items():
            if name != "network":
                obj.load_state_dict(ckpt[name])
        if trainer.state.epoch >= max_epochs:
            raise ValueError(f"--resume: {path} already completed {trainer.state.epoch} epochs; the planned "
                             f"--epochs is {max_epochs}")
        trainer.state.max_epochs = max_epochs  # the plan of this run, not the one stored in the checkpoint
        self._stretch_cosine(max_epochs)
        self.best = ckpt.get("best", self.best)
        logger.info("resuming from %s at epoch %d of %d", path, trainer.state.epoch, max_epochs)

    def _stretch_cosine(self, max_epochs: int) -> None:
        """A cosine schedule loaded from a checkpoint planned for another ``--epochs`` would keep the old length and
        raise the learning rate again after it: continue it on the new length instead, from the same epoch (the
        closed-form value there, from which PyTorch's recursive steps go on consistently)."""
        sched = self.objects.get("lr_scheduler")
        if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.T_max == max_epochs:
            return
        t, old = sched.last_epoch, sched.T_max
        lrs = [sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * t / max_epochs)) / 2
               for base in sched.base_lrs]
        logger.warning("--resume with --epochs %d where the checkpoint planned %d: the cosine learning-rate schedule "
                       "now ends at epoch %d; learning rate at epoch %d: %.3g -> %.3g", max_epochs, old, max_epochs,
                       t, sched.get_last_lr()[0], lrs[0])
        sched.T_max = max_epochs
        for group, lr in zip(sched.optimizer.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = lrs

    def _save_last(self, trainer: Engine) -> None:
        if not is_main():
            return
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        _atomic_save({**state, "best": self.best}, self.dir / "last.pt")

    def _save_best(self, validator: Engine, trainer: Engine) -> None:
        if self.key not in validator.state.metrics:
            raise KeyError(f"--key_metric {self.key!r} is not a validation metric of this bundle; it has: "
                           f"{', '.join(sorted(validator.state.metrics))}")
        value = float(validator.state.metrics[self.key])
        if value > self.best["metric"]:
            self.best = {"metric": value, "epoch": trainer.state.epoch, "key_metric": self.key}
            if is_main():
                _atomic_save(self.objects["network"].state_dict(), self.dir / "best.pt")
