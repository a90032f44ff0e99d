"""Drawing helpers the synthetic layouts share."""

from __future__ import annotations

import numpy as np
from PIL import Image


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int = 16) -> np.ndarray:
    """Low-frequency texture: float32 (h, w), standard normal values on a grid of about ``cell`` pixels, upsampled
    bicubically."""
    coarse = rng.normal(0, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
