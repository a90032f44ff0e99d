"""Losses selectable by name with one override (``--loss NAME``); MONAI's and PyTorch's where they exist.

All take raw logits of a one-channel (sigmoid) output and a binary target of the same shape.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dicece": lambda **kw: DiceCELoss(sigmoid=True, **kw),
    "dice": lambda **kw: DiceLoss(sigmoid=True, **kw),
    "dicefocal": lambda **kw: DiceFocalLoss(sigmoid=True, **kw),
    "bce": nn.BCEWithLogitsLoss,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate the loss registered as ``name`` with extra ``kwargs`` (e.g. ``batch=True`` for the Dice losses:
    Dice over the whole batch instead of per image, which keeps images with empty masks from dominating)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)


class WithAuxiliary(nn.Module):
    """Apply ``loss`` to a network's output, and to its auxiliary outputs with ``aux_weight`` when it has some.

    Networks with deep supervision (PSPNet with ``aux_head=True``) return ``(main, aux, ...)`` in training mode and
    only ``main`` in eval mode; this wrapper lets one trainer configuration serve both kinds. PSPNet's paper weights
    the auxiliary loss 0.4.
    """

    def __init__(self, loss: nn.Module, aux_weight: float = 0.4):
        super().__init__()
        self.loss, self.aux_weight = loss, aux_weight

    def forward(self, pred, target):
        if isinstance(pred, (tuple, list)):
            main, *aux = pred
            return self.loss(main, target) + self.aux_weight * sum(self.loss(a, target) for a in aux)
        return self.loss(pred, target)
