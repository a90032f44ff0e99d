"""Networks selectable by name with one override (``--network NAME``).

MONAI's own networks are used as they are; custom families live in their own modules here. Every builder takes
``spatial_dims``, ``in_channels``, ``out_channels`` and a base ``width`` (channels of the first stage), and
returns a module whose output has the input's spatial size.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from monai.networks.nets import UNet


def _widths(width: int, levels: int = 5) -> tuple[int, ...]:
    return tuple(width * 2**i for i in range(levels))


def unet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16, **kwargs) -> nn.Module:
    """MONAI ``UNet``: strided-convolution encoder, transposed-convolution decoder, 5 levels (total stride 16)."""
    return UNet(spatial_dims, in_channels, out_channels, channels=_widths(width), strides=(2, 2, 2, 2),
                num_res_units=kwargs.pop("num_res_units", 0), norm=kwargs.pop("norm", "batch"), **kwargs)


def resunet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16, **kwargs) -> nn.Module:
    """MONAI ``UNet`` with two residual units per level (Kerfoot et al., 2018)."""
    return unet(spatial_dims, in_channels, out_channels, width, num_res_units=kwargs.pop("num_res_units", 2), **kwargs)


NETWORKS: dict[str, Callable[..., nn.Module]] = {"unet": unet, "resunet": resunet}


def build_network(name: str, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 1, width: int = 16,
                  **kwargs) -> nn.Module:
    """Instantiate the network registered as ``name``; unknown names raise with the list of valid ones."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name](spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, width=width,
                          **kwargs)
