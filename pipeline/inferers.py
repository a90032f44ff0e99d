"""Inferers MONAI lacks: mirror (flip) and 90-degree-rotation test-time augmentation around any MONAI inferer."""

from __future__ import annotations

from typing import Sequence

import torch
from monai.inferers import Inferer


class FlipTTA(Inferer):
    """Average the logits of ``inferer`` over the input and its flips (and, with ``rot90``, its quarter turns), each
    pass mapped back before averaging.

    With the default flips (horizontal, vertical, both) and ``rot90=True`` the passes are the 8 symmetries of the
    square (the dihedral group: each flip, and each flip after one quarter turn in the first two spatial axes);
    ``rot90`` without flips gives the 4 rotations. nnU-Net mirrors only (Isensee et al. 2021,
    https://www.nature.com/articles/s41592-020-01008-z); dermoscopy and microscopy have no "up", so rotations are
    also plausible and cross-validation (:mod:`pipeline.crossval`) keeps them only where they help.

    Args:
        inferer: the inferer to wrap (e.g. ``SlidingWindowInferer``).
        flips: spatial axes to flip for each extra pass, counted from the first spatial axis
            (default: horizontal, vertical and both, for 2D).
        enabled: with ``False`` no flips (lets a bundle switch flip TTA by one override).
        rot90: also the passes turned by 90 degrees in the first two spatial axes (the output shape is unchanged:
            each turned pass is turned back).
        uncertainty: append one channel, the variance of the foreground probability over every prediction that
            went into the mean: each pass, and within a pass each member of a network with ``with_variance``
            (:class:`pipeline.networks.ensemble.FoldEnsemble`), by the law of total variance (the mean of the
            members' variance plus the variance of the passes' probabilities). The logits are unchanged.

    Example::

        tta = FlipTTA(SlidingWindowInferer(roi_size=(256, 256)), rot90=True)
        logits = tta(images, network)  # mean over 8 passes
    """

    def __init__(self, inferer: Inferer, flips: Sequence[Sequence[int]] = ((1,), (0,), (0, 1)), enabled: bool = True,
                 rot90: bool = False, uncertainty: bool = False):
        super().__init__()
        self.inferer, self.flips, self.enabled, self.rot90 = inferer, [tuple(f) for f in flips], enabled, rot90
        self.uncertainty = bool(uncertainty)

    def passes(self) -> list[tuple[int, tuple[int, ...]]]:
        """(quarter turns, flipped spatial axes) of each pass, the identity first."""
        flips = [()] + (self.flips if self.enabled else [])
        turns = ([0] if not self.rot90 else [0, 1] if len(flips) > 1 else [0, 1, 2, 3])
        return [(k, f) for k in turns for f in flips]

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        out, moments = None, None
        members_vary = self.uncertainty and getattr(network, "with_variance", False)
        for k, axes in self.passes():
            dims = [a + 2 for a in axes]
            x = torch.flip(inputs, dims) if dims else inputs
            x = torch.rot90(x, k, (2, 3)) if k else x
            y = self.inferer(x, network, *args, **kwargs)
            y = torch.rot90(y, -k, (2, 3)) if k else y
            y = torch.flip(y, dims) if dims else y
            if self.uncertainty:
                y, within = (y[:, :-1], y[:, -1:]) if members_vary else (y, torch.zeros_like(y[:, :1]))
                p = torch.sigmoid(y) if y.shape[1] == 1 else torch.softmax(y, dim=1)[:, -1:]
                m = torch.stack([p, p * p, within])
                moments = m if moments is None else moments + m
            out = y if out is None else out + y
        n = len(self.passes())
        if not self.uncertainty:
            return out / n
        mean_p, mean_p2, within = moments / n
        return torch.cat([out / n, within + torch.clamp(mean_p2 - mean_p * mean_p, min=0)], dim=1)
