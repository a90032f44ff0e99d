"""``PSPNet``: pyramid scene parsing network on a dilated ResNet-style backbone trained from scratch (2D only)."""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.networks.padding import PAD_MODES, crop_to, pad_to_multiple


def _conv_bn_relu(cin: int, cout: int, kernel_size: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions and an identity or 1x1 projection shortcut), optionally dilated."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        # Projection shortcut only where the shape changes (None is a TorchScript-friendly "absent" submodule).
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def _stage(cin: int, cout: int, blocks: int, stride: int, dilation: int, first_dilation: int) -> nn.Sequential:
    # As in torchvision's replace_stride_with_dilation, the first block keeps the previous stage's dilation.
    layers = [BasicBlock(cin, cout, stride, first_dilation)]
    layers += [BasicBlock(cout, cout, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """Pyramid pooling module: for each bin size ``b``, adaptive average pooling to ``b x b``, 1x1 conv-BN-ReLU (no BN
    for ``b == 1``) and bilinear upsampling back to the feature size; the branches are concatenated with the input."""

    def __init__(self, channels: int, bins: Sequence[int], reduction: int):
        super().__init__()
        # A 1x1 bin leaves one value per channel and sample, which batch norm cannot normalise in training with
        # batch size 1 (it raises); that branch uses a biased conv + ReLU instead.
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(channels, reduction) if b > 1 else
                          nn.Sequential(nn.Conv2d(channels, reduction, 1), nn.ReLU(inplace=True)))
            for b in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size: List[int] = list(x.shape[-2:])
        out = [x]
        for branch in self.branches:
            out.append(F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False))
        return torch.cat(out, dim=1)


class PSPNet(nn.Module):
    """PSPNet (`Zhao et al., CVPR 2017 <https://arxiv.org/abs/1612.01105>`_) with a ResNet-style backbone trained
    from scratch.

    Backbone: 7x7 stride-2 stem convolution and 3x3 stride-2 max-pooling (stride 4), then four stages of basic blocks
    (``layers``, ResNet18-like by default) with widths ``w, 2w, 4w, 8w``; stage 2 has stride 2 and stages 3 and 4 use
    dilation 2 and 4 instead of striding, so the output stride is 8. Head: pyramid pooling over ``bins`` (each branch
    reduces the ``C = 8w`` channels to ``C // len(bins)``), concatenation with the features, 3x3 conv-BN-ReLU to
    ``C // 4`` channels (the paper's ratio, 2048 -> 512), dropout 0.1, 1x1 classifier and bilinear upsampling to
    the input size. Inputs are padded to a multiple of 8 first, so the feature grid covers the (padded) image exactly,
    and the output is cropped back to the input size.

    With ``aux_head=True`` an auxiliary classifier on stage 3 (deep supervision, as in the paper) is built; in training
    mode ``forward`` then returns ``(main, aux)``, both at input size. In eval mode only the main logits are returned.

    Args:
        spatial_dims: must be 2.
        in_channels: input channels.
        out_channels: output channels (logits, no activation).
        width: channels of the first stage (64 in ResNet; 16 by default here, a network trained from scratch on small
            data sets).
        layers: basic blocks per stage (4 stages).
        bins: output sizes of the pyramid pooling branches.
        aux_head: build the auxiliary stage-3 classifier.
        dropout: dropout before the classifiers.
        pad_mode: ``"replicate"`` or ``"constant"`` padding of inputs not divisible by 8.

    Shapes:
        input ``(B, in_channels, H, W)``, output ``(B, out_channels, H, W)`` (and the same for ``aux``); any ``H, W``.

    Examples::

        >>> net = PSPNet(in_channels=3, out_channels=1, width=8, aux_head=True)
        >>> main, aux = net.train()(torch.rand(2, 3, 61, 77))
        >>> main.shape, aux.shape
        (torch.Size([2, 1, 61, 77]), torch.Size([2, 1, 61, 77]))
        >>> net.eval()(torch.rand(1, 3, 61, 77)).shape
        torch.Size([1, 1, 61, 77])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
                 layers: Sequence[int] = (2, 2, 2, 2), bins: Sequence[int] = (1, 2, 3, 6), aux_head: bool = False,
                 dropout: float = 0.1, pad_mode: str = "replicate"):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"PSPNet is 2D only, got spatial_dims={spatial_dims}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"PSPNet: {name} must be >= 1, got {value}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"PSPNet: layers must be 4 positive block counts, got {tuple(layers)}")
        if len(bins) == 0 or any(int(b) < 1 for b in bins):
            raise ValueError(f"PSPNet: bins must be a non-empty sequence of positive integers, got {tuple(bins)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"PSPNet: dropout must be in [0, 1), got {dropout}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"PSPNet: pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 7, 2, padding=3, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))
        self.layer1 = _stage(w, w, layers[0], stride=1, dilation=1, first_dilation=1)
        self.layer2 = _stage(w, 2 * w, layers[1], stride=2, dilation=1, first_dilation=1)
        self.layer3 = _stage(2 * w, 4 * w, layers[2], stride=1, dilation=2, first_dilation=1)
        self.layer4 = _stage(4 * w, 8 * w, layers[3], stride=1, dilation=4, first_dilation=2)
        c = 8 * w
        reduction, head = max(c // len(bins), 1), max(c // 4, 1)
        self.ppm = PyramidPooling(c, bins, reduction)
        self.head = nn.Sequential(_conv_bn_relu(c + len(bins) * reduction, head, 3), nn.Dropout2d(dropout),
                                  nn.Conv2d(head, out_channels, 1))
        # Auxiliary classifier on stage 3 (4w channels -> w, the paper's 1024 -> 256 ratio).
        self.aux = (nn.Sequential(_conv_bn_relu(4 * w, w, 3), nn.Dropout2d(dropout), nn.Conv2d(w, out_channels, 1))
                    if aux_head else None)
        self.pad_mode = pad_mode
        self.stride = 8  # output stride of the backbone: inputs are padded to a multiple of it

    def _to_input(self, y: torch.Tensor, padded: List[int], size: List[int]) -> torch.Tensor:
        return crop_to(F.interpolate(y, size=padded, mode="bilinear", align_corners=False), size)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        size: List[int] = list(x.shape[-2:])
        x = pad_to_multiple(x, self.stride, self.pad_mode)
        padded: List[int] = list(x.shape[-2:])
        f3 = self.layer3(self.layer2(self.layer1(self.stem(x))))
        main = self._to_input(self.head(self.ppm(self.layer4(f3))), padded, size)
        if self.aux is not None and self.training:
            return main, self._to_input(self.aux(f3), padded, size)
        return main
