"""Predicted masks, overlays and volumes written by ``inference``."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events
from PIL import Image

from ..visualize import load_rgb, overlay
from .cases import as_mask, as_plane, case_items, group_slice, save_map, volume_source
from .volumes import SliceStack, largest_in_volumes

logger = logging.getLogger(__name__)


class MaskWriter:
    """Writes ``masks/<case_id>.png`` (0/255, the source image's exact size), ``overlays/<case_id>.png`` and
    ``predictions.csv`` (case, source, size, predicted area) under ``output_dir``.

    With ``volumes`` (sliced layouts: LGG) it also stacks each group's (patient's) predicted slice masks in slice
    order and writes ``volumes/<group>.nii.gz`` with nibabel: uint8 0/1, shape (H, W, n_slices), identity affine
    (voxel spacing unknown: the slices carry none). Inputs without a slice number (a flat folder of images) get
    masks only. Slices of NIfTI volumes (cases with ``reference`` and ``slice_axis``: :mod:`pipeline.data.nifti`)
    get their volume only, whatever ``volumes`` says: ``volumes/<case>.nii.gz`` with the source volume's shape,
    affine and header (:meth:`SliceStack.like_reference`), and a row per slice in ``predictions.csv``.

    With ``volume_largest_component`` each patient's slice masks are stacked and only their largest 3D component is
    kept before anything is written (:func:`largest_in_volumes`).

    With ``probabilities`` (``--save_probabilities true``) also the foreground probability before the threshold:
    ``probabilities/<case_id>.png`` (8-bit, ``round(255 p)``, full resolution) and, where the engine measured it
    (flip / rot90 TTA or a fold ensemble: :class:`pipeline.inferers.FlipTTA` with ``uncertainty``), the
    disagreement of the predictions averaged, ``uncertainty/<case_id>.png``: the standard deviation of the
    probability over the TTA passes and fold models, 8-bit as ``round(510 sd)`` (sd is at most 0.5). Volumes
    (NIfTI slices; LGG with ``volumes``): ``probabilities/<group>.nii.gz`` and ``uncertainty/<group>.nii.gz``,
    float32 (p and sd themselves), stacked as the masks are, with the source's affine and header for NIfTI inputs.
    """

    def __init__(self, output_dir: str, overlays: bool = True, volumes: bool = False,
                 volume_largest_component: bool = False, probabilities: bool = False):
        self.out, self.overlays, self.volumes = Path(output_dir), overlays, bool(volumes)
        self.volume_largest, self.probabilities = bool(volume_largest_component), bool(probabilities)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.rows, self.stack, self.pending = [], SliceStack(), []
        self.maps = {"probabilities": SliceStack(binary=False), "uncertainty": SliceStack(binary=False)}
        self.measured_uncertainty = False

    def _iteration(self, engine: Engine) -> None:
        for case_id, path, o, b in case_items(engine, with_batch=True):
            group, k = group_slice(b, case_id)
            item = {"case_id": case_id, "path": path, "group": group, "slice": k, "source": volume_source(b),
                    "mask": as_mask(o["pred"])}
            if self.probabilities:
                if "probability" not in o:
                    raise KeyError(f"{case_id}: no probability kept by the engine's post-processing")
                item["maps"] = {"probabilities": as_plane(o["probability"])}
                if "uncertainty" in o:
                    item["maps"]["uncertainty"] = as_plane(o["uncertainty"])
                    self.measured_uncertainty = True
            if self.volume_largest:  # written at the end, once each patient's volume is complete
                self.pending.append(item)
            else:
                self._write(item)

    def _write(self, item: dict) -> None:
        case_id, path, mask = item["case_id"], item["path"], item["mask"]
        reference, axis = item["source"]
        if self.volumes or reference is not None:
            self.stack.add(item["group"], item["slice"], case_id, mask, reference=reference, slice_axis=axis)
        for folder, plane in item.get("maps", {}).items():
            if self.volumes or reference is not None:
                self.maps[folder].add(item["group"], item["slice"], case_id, plane, reference=reference,
                                      slice_axis=axis)
            if reference is None:
                save_map(self.out / folder / f"{case_id}.png", plane, 255 if folder == "probabilities" else 510)
        if reference is not None:  # a slice of a NIfTI volume: the volume is written at the end
            self.rows.append({"case_id": case_id, "source": path, "width": mask.shape[1],
                              "height": mask.shape[0], "area_pred": int(mask.sum())})
            return
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
        for item in largest_in_volumes(self.pending):
            self._write(item)
        self.pending = []
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
            for folder, stack in self.maps.items():
                if stack.groups:
                    stack.write_volumes(self.out, folder)
        if self.probabilities:
            logger.info("wrote probabilities%s to %s", " and uncertainty" if self.measured_uncertainty else
                        " (no uncertainty: one model without TTA has nothing to disagree with)", self.out)
