"""Networks selectable by name with one override (``--network NAME``).

MONAI's own networks are used as they are; custom families live in their own modules here. Every builder takes
``spatial_dims``, ``in_channels``, ``out_channels`` and a base ``width`` (channels of the first stage), and
returns a module whose output has the input's spatial size, for any input size: MONAI networks that need sizes
divisible by their total stride are wrapped in ``PadToMultiple`` (their parameters then sit under ``net.``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch.nn as nn
from monai.networks.nets import BasicUNet, SegResNet, UNet

from pipeline.networks.padding import PadToMultiple
from pipeline.networks.pspnet import PSPNet
from pipeline.networks.segnet import SegNet
from pipeline.networks.unet2 import UNet2


def _widths(width: int, levels: int = 5) -> tuple[int, ...]:
    return tuple(width * 2**i for i in range(levels))


def unet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16, **kwargs) -> nn.Module:
    """MONAI ``UNet``: strided-convolution encoder, transposed-convolution decoder, 5 levels (total stride 16, so
    inputs are padded to a multiple of 16 and the output cropped back)."""
    return PadToMultiple(UNet(spatial_dims, in_channels, out_channels, channels=_widths(width), strides=(2, 2, 2, 2),
                              num_res_units=kwargs.pop("num_res_units", 0), norm=kwargs.pop("norm", "batch"), **kwargs),
                         k=16)


def resunet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16, **kwargs) -> nn.Module:
    """MONAI ``UNet`` with two residual units per level (Kerfoot et al., 2018)."""
    return unet(spatial_dims, in_channels, out_channels, width, num_res_units=kwargs.pop("num_res_units", 2), **kwargs)


def classic_unet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
                 **kwargs) -> nn.Module:
    """U-Net of Ronneberger et al., 2015 (https://arxiv.org/abs/1505.04597) as MONAI ``BasicUNet``: two 3x3 convs per
    level, max-pooling down, 2x2 transposed-convolution up and skip concatenation; 5 levels (total stride 16).

    ReLU as in the paper, plus batch norm (absent in the paper, used for trainability from scratch and consistency
    with the other families); both can be overridden with ``act=`` / ``norm=``.
    """
    return PadToMultiple(BasicUNet(spatial_dims, in_channels, out_channels, features=(*_widths(width), width),
                                   act=kwargs.pop("act", "relu"), norm=kwargs.pop("norm", "batch"),
                                   upsample=kwargs.pop("upsample", "deconv"), **kwargs), k=16)


def segresnet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
              **kwargs) -> nn.Module:
    """MONAI ``SegResNet`` (Myronenko, 2018, without the VAE branch), 4 levels (total stride 8).

    Its group norm uses 8 groups, which needs ``width`` divisible by 8; smaller or odd widths fall back to
    ``gcd(8, width)`` groups (every level's channels are multiples of ``width``).
    """
    norm = kwargs.pop("norm", ("GROUP", {"num_groups": math.gcd(8, width)}))
    return PadToMultiple(SegResNet(spatial_dims, init_filters=width, in_channels=in_channels,
                                   out_channels=out_channels, norm=norm, **kwargs), k=8)


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "unet": unet,
    "resunet": resunet,
    "unet2": UNet2,
    "classic_unet": classic_unet,
    "segresnet": segresnet,
    "segnet": SegNet,
    "pspnet": PSPNet,
}


def build_network(name: str, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
                  **kwargs) -> nn.Module:
    """Instantiate the network registered as ``name``; unknown names raise with the list of valid ones."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(sorted(NETWORKS))}")
    # Checked here once for all families (MONAI's own networks would fail later with less clear errors).
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return NETWORKS[name](spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, width=width,
                          **kwargs)
