"""``UNet2``: the U-Net variant of earlier skin-lesion projects (strided-convolution downsampling)."""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
from monai.networks.layers import Conv, Norm

from pipeline.networks.padding import PAD_MODES, crop_to, pad_to_multiple


def _conv_bn_relu(spatial_dims: int, cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: the following batch norm has its own shift.
    return nn.Sequential(Conv[Conv.CONV, spatial_dims](cin, cout, 3, stride=stride, padding=1, bias=False),
                         Norm[Norm.BATCH, spatial_dims](cout), nn.ReLU(inplace=True))


def _double_conv(spatial_dims: int, cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn_relu(spatial_dims, cin, cout), _conv_bn_relu(spatial_dims, cout, cout))


class _Up(nn.Module):
    """Decoder level: transposed conv halving the channels, concatenation with the skip, two-conv block."""

    def __init__(self, spatial_dims: int, cin: int, cout: int):
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](cin, cout, 2, stride=2)
        self.fuse = _double_conv(spatial_dims, 2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, self.up(x)], dim=1))


class UNet2(nn.Module):
    """U-Net (`Ronneberger et al., 2015 <https://arxiv.org/abs/1505.04597>`_) with learnt downsampling.

    Each level is the classic pair of 3x3 convolution - batch norm - ReLU layers. Unlike the original, the encoder
    downsamples with a strided (stride 2) 3x3 convolution - BN - ReLU instead of max-pooling; the decoder upsamples
    with 2x2 stride-2 transposed convolutions that halve the channels, concatenates the encoder's skip and applies a
    two-conv block; a 1x1 convolution produces the logits.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: input channels.
        out_channels: output channels (logits, no activation).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: number of downsamplings (total stride ``2**depth``).
        pad_mode: how inputs whose size is not a multiple of ``2**depth`` are padded: ``"replicate"`` or
            ``"constant"``; the output is cropped back to the input size.

    Shapes:
        input ``(B, in_channels, *spatial)``, output ``(B, out_channels, *spatial)``; any spatial size.

    Examples::

        >>> net = UNet2(spatial_dims=2, in_channels=3, out_channels=1, width=8)
        >>> net(torch.rand(2, 3, 61, 77)).shape
        torch.Size([2, 1, 61, 77])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
                 depth: int = 4, pad_mode: str = "replicate"):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"UNet2 supports spatial_dims 2 or 3, got {spatial_dims}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                            ("depth", depth)):
            if int(value) < 1:
                raise ValueError(f"UNet2: {name} must be >= 1, got {value}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"UNet2: pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        ch = [width * 2**i for i in range(depth + 1)]
        self.stem = _double_conv(spatial_dims, in_channels, ch[0])
        # Encoder level i: strided conv keeps the channels, the two-conv block doubles them.
        self.down = nn.ModuleList(nn.Sequential(_conv_bn_relu(spatial_dims, ch[i], ch[i], stride=2),
                                                _double_conv(spatial_dims, ch[i], ch[i + 1])) for i in range(depth))
        self.up = nn.ModuleList(_Up(spatial_dims, ch[i + 1], ch[i]) for i in reversed(range(depth)))  # deepest first
        self.head = Conv[Conv.CONV, spatial_dims](ch[0], out_channels, 1)
        self.stride = 2**depth
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size: List[int] = list(x.shape[2:])
        x = self.stem(pad_to_multiple(x, self.stride, self.pad_mode))
        skips: List[torch.Tensor] = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for up in self.up:  # the deepest skip was appended last
            x = up(x, skips.pop())
        return crop_to(self.head(x), size)
