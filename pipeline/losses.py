"""Losses selectable by name with one override (``--loss NAME``); MONAI's and PyTorch's where they exist.

All but ``ce`` take the raw logits of a one-channel (sigmoid) output and a binary target of the same shape.
``ce`` is two-class softmax cross-entropy: it needs a two-channel output (``--out_channels 2``); the engine then
takes the softmax probability of channel 1 as the foreground probability (:class:`pipeline.transforms.Foregroundd`).

=============  ==========================================================================================
name           loss
=============  ==========================================================================================
``bce``        ``torch.nn.BCEWithLogitsLoss``
``bce_smooth`` BCE against label-smoothed targets ``y (1 - s) + (1 - y) s``, ``smooth_factor`` s = 0.1
               (the ``SoftBCEWithLogitsLoss`` of segmentation_models_pytorch the earlier projects used)
``dice``       ``monai.losses.DiceLoss(sigmoid=True)``
``dicece``     ``monai.losses.DiceCELoss(sigmoid=True)``
``dicefocal``  ``monai.losses.DiceFocalLoss(sigmoid=True)``
``tversky``    ``monai.losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7)`` (Salehi et al. 2017: weights
               false negatives more than false positives)
``ce``         ``torch.nn.CrossEntropyLoss`` over two channels (background, foreground)
=============  ==========================================================================================
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, TverskyLoss


class SmoothBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits against label-smoothed targets: 1 -> ``1 - smooth_factor``, 0 ->
    ``smooth_factor``. Keeps the logits finite on confidently labelled pixels (Szegedy et al. 2016,
    https://arxiv.org/abs/1512.00567); the loss of a perfect prediction is not 0 but the targets' entropy."""

    def __init__(self, smooth_factor: float = 0.1, pos_weight: torch.Tensor | None = None):
        super().__init__()
        if not 0 <= smooth_factor < 0.5:
            raise ValueError(f"smooth_factor must be in [0, 0.5), got {smooth_factor}")
        self.smooth_factor = smooth_factor
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        soft = target * (1 - self.smooth_factor) + (1 - target) * self.smooth_factor
        return F.binary_cross_entropy_with_logits(logits, soft, pos_weight=self.pos_weight)


class TwoClassCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy of a two-channel output (background, foreground) against a binary one-channel target."""

    def __init__(self, weight: list[float] | None = None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 2:
            raise ValueError(f"loss 'ce' needs a two-channel network output (--out_channels 2), got {logits.shape[1]}")
        return F.cross_entropy(logits, target[:, 0].long(), weight=self.weight)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": nn.BCEWithLogitsLoss,
    "bce_smooth": SmoothBCEWithLogitsLoss,
    "dice": lambda **kw: DiceLoss(sigmoid=True, **kw),
    "dicece": lambda **kw: DiceCELoss(sigmoid=True, **kw),
    "dicefocal": lambda **kw: DiceFocalLoss(sigmoid=True, **kw),
    "tversky": lambda **kw: TverskyLoss(sigmoid=True, **{"alpha": 0.3, "beta": 0.7, **kw}),
    "ce": TwoClassCrossEntropyLoss,
}

#: the number of output channels each loss expects (all others: 1)
OUT_CHANNELS = {"ce": 2}


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
