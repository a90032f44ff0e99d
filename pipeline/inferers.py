"""Inferers MONAI lacks: flip test-time augmentation around any MONAI inferer."""

from __future__ import annotations

from typing import Sequence

import torch
from monai.inferers import Inferer


class FlipTTA(Inferer):
    """Average the logits of ``inferer`` over the input and its flips, each flipped back before averaging.

    Args:
        inferer: the inferer to wrap (e.g. ``SlidingWindowInferer``).
        flips: spatial axes to flip for each extra pass, counted from the first spatial axis
            (default: horizontal, vertical and both, for 2D).
        enabled: with ``False`` the wrapper just calls ``inferer`` (lets a bundle switch TTA by one override).

    Example::

        tta = FlipTTA(SlidingWindowInferer(roi_size=(256, 256)))
        logits = tta(images, network)
    """

    def __init__(self, inferer: Inferer, flips: Sequence[Sequence[int]] = ((1,), (0,), (0, 1)), enabled: bool = True):
        super().__init__()
        self.inferer, self.flips, self.enabled = inferer, [tuple(f) for f in flips], enabled

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        out = self.inferer(inputs, network, *args, **kwargs)
        if not self.enabled or not self.flips:
            return out
        for axes in self.flips:
            dims = [a + 2 for a in axes]
            out = out + torch.flip(self.inferer(torch.flip(inputs, dims), network, *args, **kwargs), dims)
        return out / (len(self.flips) + 1)
