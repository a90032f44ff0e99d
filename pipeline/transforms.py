"""Transforms MONAI lacks."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from PIL import Image, ImageDraw


class RandHairsd(RandomizableTransform, MapTransform):
    """Draw random dark hairs over an image, leaving the label untouched (dermoscopy augmentation).

    Hairs crossing a lesion are the commonest failure of lesion segmenters trained on small sets: the network
    learns "dark and elongated = lesion". Each hair is a quadratic Bezier curve of random length, thickness and
    dark brown-grey colour, alpha-blended over all channels of a channel-first image with values in [0, 1].

    Args:
        keys: image keys (channel-first ``(C, H, W)`` arrays or tensors).
        prob: probability of drawing hairs on an image.
        max_hairs: number of hairs drawn is uniform in ``[1, max_hairs]``.
        thickness: range of line widths in pixels.
        allow_missing_keys: as in MONAI's ``MapTransform``.

    Example::

        aug = RandHairsd(keys="image", prob=0.5, max_hairs=10)
        sample = aug({"image": torch.rand(3, 256, 256), "label": torch.zeros(1, 256, 256)})
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.5, max_hairs: int = 10,
                 thickness: Sequence[int] = (1, 3), allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if max_hairs < 1 or thickness[0] < 1 or thickness[1] < thickness[0]:
            raise ValueError(f"need max_hairs >= 1 and 1 <= thickness[0] <= thickness[1], got {max_hairs}, {thickness}")
        self.max_hairs, self.thickness = max_hairs, (int(thickness[0]), int(thickness[1]))

    def _hairs(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Coverage (H, W) in [0, 1] and one RGB-ish colour per hair, drawn with this transform's random state."""
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        n = int(self.R.randint(1, self.max_hairs + 1))
        t = np.linspace(0.0, 1.0, 32)[:, None]
        for _ in range(n):
            p0, p1, p2 = (self.R.uniform((0, 0), (width, height)) for _ in range(3))
            pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
            draw.line([tuple(p) for p in pts], fill=int(self.R.uniform(180, 255)),
                      width=int(self.R.randint(self.thickness[0], self.thickness[1] + 1)))
        colour = self.R.uniform(0.03, 0.25) * np.array([1.0, self.R.uniform(0.75, 0.95), self.R.uniform(0.6, 0.9)])
        return np.asarray(canvas, dtype=np.float32) / 255.0, colour.astype(np.float32)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            alpha, colour = self._hairs(int(img.shape[-2]), int(img.shape[-1]))
            alpha_t = torch.as_tensor(alpha, device=img.device)[None]
            colour_t = torch.as_tensor(np.resize(colour, img.shape[0]), device=img.device)[:, None, None]
            d[key] = img * (1 - alpha_t) + colour_t.to(img.dtype) * alpha_t
        return d
