"""``SegNet``: encoder-decoder that upsamples with the encoder's max-pooling indices (2D only)."""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

# Convolutions per encoder stage (VGG16's 13 conv layers) and stage widths in units of ``width``.
ENCODER_CONVS = (2, 2, 3, 3, 3)
STAGE_WIDTHS = (1, 2, 4, 8, 8)


class MaxUnpool2d(nn.MaxUnpool2d):
    """``nn.MaxUnpool2d`` whose forward TorchScript can compile.

    ``torch.jit.script`` fails on ``F.max_unpool2d`` (internal assert "Expected IntList but got Int" in torch 2.x), so
    this subclass calls the ATen op directly. Valid for this network's non-overlapping pooling (kernel = stride, no
    padding), where the indices alone define the result; ``output_size`` is therefore required.
    """

    def forward(self, input: torch.Tensor, indices: torch.Tensor, output_size: List[int]) -> torch.Tensor:
        return torch.ops.aten.max_unpool2d(input, indices, output_size[-2:])


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """SegNet (`Badrinarayanan et al., 2017 <https://arxiv.org/abs/1511.00561>`_), trained from scratch.

    Encoder: VGG16's 13 convolution - batch norm - ReLU layers in 5 stages (2, 2, 3, 3, 3 convolutions; widths
    ``w, 2w, 4w, 8w, 8w``), each followed by 2x2 max-pooling that remembers the argmax locations. Decoder: the
    mirror image; every stage first places its input at the remembered locations (``nn.MaxUnpool2d``, sparse
    upsampling, no learnt parameters and no skip concatenation), then applies 3, 3, 3, 2, 2 convolution - BN - ReLU
    layers; a final 3x3 convolution gives the logits.

    Pooling uses ``ceil_mode=True`` and unpooling gets the pre-pooling size (``output_size``), so any height and width
    works without padding and every pixel takes part in pooling.

    Args:
        spatial_dims: must be 2 (the layers are 2D-only).
        in_channels: input channels.
        out_channels: output channels (logits, no activation).
        width: channels of the first stage (64 in the paper).

    Shapes:
        input ``(B, in_channels, H, W)``, output ``(B, out_channels, H, W)``; any ``H, W``.

    Examples::

        >>> net = SegNet(in_channels=3, out_channels=1, width=8)
        >>> net(torch.rand(2, 3, 61, 77)).shape
        torch.Size([2, 1, 61, 77])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"SegNet is 2D only (max-unpooling layers), got spatial_dims={spatial_dims}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"SegNet: {name} must be >= 1, got {value}")
        ch = [width * m for m in STAGE_WIDTHS]
        enc, cin = [], in_channels
        for n, c in zip(ENCODER_CONVS, ch):
            enc.append(nn.Sequential(*(_conv_bn_relu(cin if j == 0 else c, c) for j in range(n))))
            cin = c
        self.encoder = nn.ModuleList(enc)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)
        # Decoder stage i mirrors encoder stage i (deepest first): keep the channels, the last layer maps to the
        # channels of the stage above (the first stage keeps ``width``; the final conv then maps to out_channels).
        dec = []
        for i in reversed(range(len(ch))):
            n, c, c_next = ENCODER_CONVS[i], ch[i], ch[max(i - 1, 0)]
            dec.append(nn.Sequential(*(_conv_bn_relu(c, c if j < n - 1 else c_next) for j in range(n))))
        self.decoder = nn.ModuleList(dec)
        # One unpooling layer per stage (parameter-free); separate modules keep the architecture readable in print().
        self.unpool = nn.ModuleList(MaxUnpool2d(2, 2) for _ in ch)
        self.head = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices: List[torch.Tensor] = []
        sizes: List[List[int]] = []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(list(x.shape[-2:]))
            x, idx = self.pool(x)
            indices.append(idx)
        for unpool, stage in zip(self.unpool, self.decoder):
            # Deepest indices first; output_size restores odd sizes lost to pooling.
            x = stage(unpool(x, indices.pop(), sizes.pop()))
        return self.head(x)
