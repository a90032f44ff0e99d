"""Losses selectable by name with one override (``--loss NAME``); MONAI's and PyTorch's where they exist.

All take raw logits of a one-channel (sigmoid) output and a binary target of the same shape.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dicece": lambda: DiceCELoss(sigmoid=True),
    "dice": lambda: DiceLoss(sigmoid=True),
    "dicefocal": lambda: DiceFocalLoss(sigmoid=True),
    "bce": nn.BCEWithLogitsLoss,
}


def build_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]()
