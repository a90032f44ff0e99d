"""What the validator needs beyond MONAI: validation at the last epoch too, and per-patient volume Dice."""

from __future__ import annotations

import numpy as np
from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler

from .. import metrics as M
from ..distributed import all_reduce_sum, broadcast_state
from .cases import as_mask, case_items, group_slice


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
        for case_id, _, o, b in case_items(engine, with_batch=True):
            if "label" not in o:
                raise KeyError(f"{case_id}: VolumeDice needs the label of every validation case")
            group = group_slice(b, case_id)[0]
            if self.groups is not None and group not in self.groups:
                raise KeyError(f"{case_id}: group {group!r} is not among the {len(self.groups)} validation groups "
                               "given")
            p, t = as_mask(o["pred"]), as_mask(o["label"])
            self.counts.setdefault(group, np.zeros(3))[:] += (np.count_nonzero(p & t), np.count_nonzero(p),
                                                              np.count_nonzero(t))

    def _completed(self, engine: Engine) -> None:
        groups = self.groups if self.groups is not None else sorted(self.counts)
        if not groups:
            raise RuntimeError("VolumeDice: the validation set is empty")
        flat = all_reduce_sum([float(x) for g in groups for x in self.counts.get(g, np.zeros(3))])
        counts = np.asarray(flat, dtype=np.float64).reshape(len(groups), 3)
        engine.state.metrics[self.name] = float(np.mean([M.dice_from_counts(*c) for c in counts]))
