"""Padding helpers that let strided networks accept any spatial size.

Encoder-decoder networks with total stride ``k`` need every spatial size to be a multiple of ``k`` (otherwise skip
connections disagree in size, or the output is not the input's size). These helpers pad the input on the far side
of every spatial dimension up to the next multiple of ``k`` and crop the output back, so the padded border never
shifts the image content and the output has exactly the input's spatial size.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD_MODES = ("replicate", "constant")


def pad_to_multiple(x: torch.Tensor, k: int, mode: str = "replicate") -> torch.Tensor:
    """Pad the spatial dims (all dims after batch and channel) of ``x`` at their end up to a multiple of ``k``."""
    pad: List[int] = []
    # F.pad lists (before, after) pairs starting from the last dimension.
    for d in range(x.dim() - 1, 1, -1):
        pad += [0, (k - x.shape[d] % k) % k]
    if sum(pad) == 0:  # nothing to do: skip the copy
        return x
    return F.pad(x, pad, mode=mode)


def crop_to(y: torch.Tensor, size: List[int]) -> torch.Tensor:
    """Crop the spatial dims of ``y`` to ``size`` (keeping the start, where ``pad_to_multiple`` left the image)."""
    for i, s in enumerate(size):
        y = y.narrow(2 + i, 0, s)
    return y


class PadToMultiple(nn.Module):
    """Wrap a network so that it accepts any spatial size.

    The input is padded at the end of each spatial dimension up to a multiple of ``k`` (the wrapped network's total
    stride), passed through ``net`` and the output is cropped back to the input's spatial size.

    Args:
        net: the network to wrap; stored as ``self.net`` (state-dict keys gain a ``net.`` prefix).
        k: the multiple to pad to, usually the network's total stride.
        mode: ``"replicate"`` (default: repeats border pixels, so normalisation statistics see no artificial
            black frame) or ``"constant"`` (zero padding).

    Shapes:
        input ``(B, C_in, *spatial)``, output ``(B, C_out, *spatial)`` with the same ``spatial``.

    Examples::

        >>> from monai.networks.nets import UNet
        >>> net = PadToMultiple(UNet(2, 3, 1, channels=(8, 16, 32), strides=(2, 2)), k=4)
        >>> net(torch.rand(1, 3, 61, 77)).shape
        torch.Size([1, 1, 61, 77])
    """

    def __init__(self, net: nn.Module, k: int, mode: str = "replicate"):
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        if mode not in PAD_MODES:
            raise ValueError(f"mode must be one of {PAD_MODES}, got {mode!r}")
        self.net = net
        self.k = int(k)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size: List[int] = list(x.shape[2:])
        return crop_to(self.net(pad_to_multiple(x, self.k, self.mode)), size)
