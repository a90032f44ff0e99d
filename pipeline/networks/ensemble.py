"""An ensemble of fold models that behaves as one network: the mean of their foreground probabilities, as logits.

Cross-validation (:mod:`pipeline.crossval`) trains one model per fold; ensemble inference averages their
probabilities (nnU-Net's practice, Isensee et al. 2021, https://www.nature.com/articles/s41592-020-01008-z). The
engines threshold ``sigmoid`` (one channel) or ``softmax`` (two channels) of a network's output
(:class:`pipeline.transforms.Foregroundd`), so the ensemble returns the logit of the mean probability (one channel)
or the log of the mean class probabilities (two channels): everything after the network (sliding window, flip
test-time augmentation, threshold, post-processing) stays as it is for one model.

Example::

    members = [build_network("unet") for _ in range(5)]  # each with its fold's weights loaded
    net = FoldEnsemble(members)
    logits = net(images)  # (B, 1, H, W): logit of the mean of the five sigmoids
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


class FoldEnsemble(nn.Module):
    """Args:
        members: the fold networks (same input and output shape).
        eps: probabilities are clamped to [eps, 1 - eps] before the logit, so certain pixels stay finite.
        with_variance: append one channel, the variance over members of the foreground probability (how much the
            fold models disagree; :class:`pipeline.inferers.FlipTTA` with ``uncertainty`` reads it). The other
            channels are unchanged.
    """

    def __init__(self, members: Sequence[nn.Module], eps: float = 1e-6, with_variance: bool = False):
        super().__init__()
        if not members:
            raise ValueError("FoldEnsemble needs at least one member")
        self.members, self.eps, self.with_variance = nn.ModuleList(members), eps, bool(with_variance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [m(x) for m in self.members]
        outs = [o[0] if isinstance(o, (list, tuple)) else o for o in outs]  # networks with auxiliary outputs
        if outs[0].shape[1] == 1:
            each = torch.stack([torch.sigmoid(o.float()) for o in outs])
            out = torch.logit(each.mean(0).clamp(self.eps, 1 - self.eps))
        else:
            each = torch.stack([torch.softmax(o.float(), dim=1) for o in outs])
            out = torch.log(each.mean(0).clamp_min(self.eps))
        if not self.with_variance:
            return out
        return torch.cat([out, each[:, :, -1:].var(0, unbiased=False)], dim=1)  # foreground: the last channel

    @classmethod
    def from_checkpoints(cls, template: nn.Module, paths: Sequence[str | Path], map_location="cpu",
                         with_variance: bool = False) -> FoldEnsemble:
        """One copy of ``template`` per checkpoint, each with its weights (loaded with
        :func:`pipeline.handlers.load_network_weights`, which names what does not fit)."""
        from ..handlers.checkpoints import load_network_weights

        members = []
        for path in paths:
            member = copy.deepcopy(template)
            load_network_weights(member, str(path), map_location=map_location)
            members.append(member.eval())
        return cls(members, with_variance=with_variance)
