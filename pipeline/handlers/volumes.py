"""Slice masks regrouped per patient and stacked into volumes (NIfTI with the source's affine where there is one)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def largest_in_volumes(items: list[dict]) -> list[dict]:
    """``items`` (dicts with ``group``, ``slice`` and a 2D ``mask``) with each group's masks replaced by the slices of
    its largest 3D component (:func:`pipeline.transforms.largest_component_3d`), the group's slices stacked in slice
    order; groups whose cases carry no slice number (plain images) are left as they are."""
    from ..transforms import largest_component_3d

    by_group: dict[str, list[dict]] = {}
    for item in items:
        by_group.setdefault(item["group"], []).append(item)
    out = []
    for group, members in by_group.items():
        if any(m["slice"] is None for m in members) or len({m["mask"].shape for m in members}) > 1:
            out += members
            continue
        members = sorted(members, key=lambda m: m["slice"])
        kept = largest_component_3d(np.stack([m["mask"] for m in members], axis=-1))
        out += [{**m, "mask": kept[..., j]} for j, m in enumerate(members)]
    return out


class SliceStack:
    """Binary slice masks per group (patient), kept bit-packed, stacked in slice order into (H, W, n_slices); with
    ``binary=False``, float maps (probabilities), kept as float32 and written as float32 volumes.

    Slices are ordered by their ``slice`` number; cases without one (a group of plain images) by case id. A group
    whose cases name a ``reference`` volume and a ``slice_axis`` (NIfTI slices) is written along that axis with the
    reference's affine and header (:meth:`write_volume`).
    """

    def __init__(self, binary: bool = True):
        self.binary = bool(binary)
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
        slices[key] = (case_id, mask.shape, np.packbits(mask.astype(bool)) if self.binary
                       else np.asarray(mask, np.float32))

    def has_slice_numbers(self, group: str) -> bool:
        return all(key[0] == 0 for key in self.groups[group])

    def volume(self, group: str) -> np.ndarray:
        """uint8 0/1 volume (H, W, n_slices) of the group, slices in order (float32 for a float stack)."""
        slices = [v for _, v in sorted(self.groups[group].items())]
        shapes = sorted({shape for _, shape, _ in slices})
        if len(shapes) > 1:
            raise RuntimeError(f"{group}: its slices differ in size {shapes}; they cannot be stacked into a volume")
        if not self.binary:
            return np.stack([data for _, _, data in slices], axis=-1)
        return np.stack([np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape)
                         for _, shape, packed in slices], axis=-1).astype(np.uint8)

    def write_volume(self, group: str, out_dir: Path, folder: str = "volumes") -> Path:
        """``<out_dir>/<folder>/<group>.nii.gz``: uint8 0/1 (float32 for a float stack), shape (H, W, n_slices),
        identity affine; for a group with a reference volume, the slices stacked along its slice axis, the
        reference's shape, affine and header."""
        import nibabel as nib

        path = Path(out_dir) / folder / f"{group}.nii.gz"
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
        header.set_data_dtype(np.uint8 if self.binary else np.float32)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0.0, 1.0
        cls = type(ref) if isinstance(ref, nib.Nifti1Image) else nib.Nifti1Image
        return cls(vol, None, header=header)  # no affine given: the header's qform and sform are kept as they are

    def write_volumes(self, out_dir: Path, folder: str = "volumes") -> list[Path]:
        """Volumes of the groups whose cases carry slice numbers (groups of plain images get none)."""
        groups = [g for g in sorted(self.groups) if self.has_slice_numbers(g)]
        skipped = len(self.groups) - len(groups)
        if skipped:
            logger.info("%d inputs carry no slice number (not a sliced layout): no volume written for them", skipped)
        return [self.write_volume(g, out_dir, folder) for g in groups]
