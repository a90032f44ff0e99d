"""Transforms MONAI lacks."""

from __future__ import annotations

import threading as threading_module
import warnings
from contextlib import contextmanager
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import Compose, Invertd, MapTransform, RandomizableTrait, RandomizableTransform, Transform
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


class LoadMaskUniond(MapTransform):
    """Load one binary mask, or several (one per object, as DSB2018 gives one file per nucleus), as their union.

    For each key the value is a path or a list of paths. Every file is read with PIL (``convert('L')``) and must be
    binary, i.e. hold at most two distinct values (nonzero is foreground: 0/255, 0/1 and 1-bit files all work); all
    files of one key must share one size. The result is a float32 :class:`monai.data.MetaTensor` of shape
    ``(1, H, W)`` (the ``(C, H, W)`` orientation in which numpy and PIL see the image, as the bundles' image loaders
    use ``PILReader(reverse_indexing=False)``) with values 0 and 1 and ``filename_or_obj`` the first path.

    Deterministic, so ``CacheDataset`` builds each union once, not every epoch.

    Raises ``ValueError`` naming the file for a non-binary mask, a size mismatch or an empty list.

    Example::

        load = LoadMaskUniond(keys="label")
        d = load({"label": ["masks/a.png", "masks/b.png"]})   # d["label"].shape == (1, H, W)
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    @staticmethod
    def union(paths) -> "MetaTensor":
        from monai.data import MetaTensor

        paths = [paths] if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence) else list(paths)
        if not paths:
            raise ValueError("LoadMaskUniond: empty list of mask files")
        out, size0 = None, None
        for p in paths:
            with Image.open(p) as im:
                size = im.size
                a = np.asarray(im.convert("L"))
            values = np.unique(a)
            if values.size > 2:
                shown = ", ".join(str(int(v)) for v in values[:8]) + (", ..." if values.size > 8 else "")
                raise ValueError(f"{p}: not a binary mask: {values.size} distinct values ({shown})")
            if out is None:
                out, size0 = np.zeros(a.shape, dtype=bool), size
            elif size != size0:
                raise ValueError(f"{p}: mask size {size[0]}x{size[1]} differs from {size0[0]}x{size0[1]} "
                                 f"of {paths[0]} (width x height)")
            out |= a > 0
        meta = {"filename_or_obj": str(paths[0]), "spatial_shape": np.array(out.shape)}
        return MetaTensor(torch.from_numpy(out[None].astype(np.float32)), meta=meta)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.union(d[key])
        return d


def bright_background(image, threshold: float = 0.5) -> bool:
    """Whether a channel-first image in [0, 1] has a bright background: the median of its channel mean exceeds
    ``threshold`` (DSB2018's bright-field and H&E images; fluorescence is dark)."""
    return float(torch.as_tensor(image).float().mean(0).median()) > threshold


class InvertBrightBackgroundd(MapTransform):
    """Invert (``1 - x``) images whose background is bright, so that objects are bright on dark in every image.

    DSB2018 mixes fluorescence (bright nuclei on black) with bright-field and H&E images (dark nuclei on a bright
    background: 15 of the 82 shared images); one network then learns two opposite contrasts from few examples of
    the second. An image counts as bright-background when the median of its channel mean exceeds ``threshold``
    (intensities in [0, 1], after the bundle's percentile scaling). Deterministic (cached with the image).

    Inverted, an image's darkest value is what its brightest 1% were, which on a slide filled with tissue (no white
    background) is rare glare, so its tissue ends mid-grey, where fluorescence has nuclei. ``median_to_zero`` then
    rescales an inverted image so its median (its background, wherever objects cover less than half of it) is 0 and
    its 99th percentile 1, clipped.

    Args:
        keys: image keys (values in [0, 1], channel first).
        threshold: median intensity above which an image is inverted.
        median_to_zero: rescale each inverted image from its median..99th percentile (all channels) to 0..1.

    Example::

        t = InvertBrightBackgroundd(keys="image")
        d = t({"image": torch.full((3, 8, 8), 0.9)})  # d["image"] is 0.1 everywhere
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, median_to_zero: bool = False,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.threshold, self.median_to_zero = float(threshold), bool(median_to_zero)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            if bright_background(d[key], self.threshold):
                d[key] = 1.0 - d[key]
                if self.median_to_zero:
                    values = np.asarray(d[key], dtype=np.float32)
                    lo, hi = np.median(values), np.percentile(values, 99)
                    if hi > lo:
                        d[key] = ((d[key] - float(lo)) / float(hi - lo)).clip(0.0, 1.0)
        return d


class CheckPaird(MapTransform):
    """Fail early, naming the files, when an image and its mask do not belong together.

    Checks, on freshly loaded data (before any resizing or binarisation): the mask has the image's spatial size, and
    the mask is binary (at most two distinct values, e.g. 0/255 or 0/1; anti-aliased or multi-class masks are not).
    Raises ``ValueError`` with both file names otherwise.

    Args:
        keys: ``(image_key, label_key)``.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"CheckPaird needs exactly two keys (image, label), got {self.keys}")

    @staticmethod
    def _name(x) -> str:
        return str(getattr(x, "meta", {}).get("filename_or_obj", "<in memory>"))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        image_key, label_key = self.keys
        if label_key not in d and self.allow_missing_keys:
            return d
        image, label = d[image_key], d[label_key]
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise ValueError(f"{self._name(label)}: mask size {tuple(label.shape[1:])} differs from the size "
                             f"{tuple(image.shape[1:])} of its image {self._name(image)}")
        values = torch.unique(torch.as_tensor(label))
        if values.numel() > 2:
            shown = ", ".join(f"{float(v):g}" for v in values[:6])
            raise ValueError(f"{self._name(label)}: mask is not binary: {values.numel()} distinct values "
                             f"({shown}{', ...' if values.numel() > 6 else ''})")
        return d


class RandReplicateChanneld(RandomizableTransform, MapTransform):
    """With probability ``prob``, replace every channel of the image by one of them (e.g. FLAIR).

    Some LGG patients were scanned without pre- or post-contrast sequences and their three "channels" are copies of
    the FLAIR slice; a network that has only seen three distinct sequences misses their tumours entirely. Showing it
    such inputs during training makes it fall back on FLAIR.

    Args:
        keys: image keys, channel-first.
        channel: the channel to replicate (FLAIR is channel 1 in the kaggle_3m TIFFs).
        prob: probability per image.
    """

    def __init__(self, keys: KeysCollection, channel: int = 1, prob: float = 0.2, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.channel = channel

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            if not 0 <= self.channel < img.shape[0]:
                raise ValueError(f"channel {self.channel} out of range for an image with {img.shape[0]} channels")
            d[key] = img[self.channel:self.channel + 1].expand_as(img).clone()
        return d


class Foregroundd(MapTransform):
    """Foreground probability of a network output, whatever its head: sigmoid of a one-channel output, or the
    softmax probability of channel 1 of a two-channel (background, foreground) output (loss ``ce``). The result is
    always one channel, so thresholding, post-processing and metrics are the same for both heads."""

    def __init__(self, keys="pred", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.shape[0] == 1:
                d[key] = torch.sigmoid(x)
            elif x.shape[0] == 2:
                d[key] = torch.softmax(x, dim=0)[1:2]
            else:
                raise ValueError(f"{key}: expected a one-channel (sigmoid) or two-channel (softmax) output, "
                                 f"got {x.shape[0]} channels")
        return d


class InvertToSourced(Invertd):
    """MONAI's ``Invertd``, quiet when the preprocessing has no invertible step. LGG, DSB2018 and NIfTI keep the
    source grid, so there is nothing to resample, yet ``Invertd`` must still give the prediction the image's metadata;
    MONAI's ``Compose.inverse`` then warned once per image (1,388 lines in one LGG cross-validation's log, burying
    the scores). The filter for that one message is installed when the transform is built, not around each call:
    changing the filters resets Python's once-per-location record, so a per-call ``catch_warnings`` would repeat every
    once-a-run warning (skimage's, from the small-object removal that follows) for every image. Every other warning
    passes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        warnings.filterwarnings("ignore", message="inverse has been called but no invertible transforms")


class SplitUncertaintyd(MapTransform):
    """Move the last channel of ``key`` (the variance of the foreground probability that :class:`FlipTTA` with
    ``uncertainty`` appends) to ``name`` as its standard deviation, leaving the logits as they were. Runs after
    ``Invertd`` (both are resampled back to the source together) and before :class:`Foregroundd`."""

    def __init__(self, keys="pred", name: str = "uncertainty", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.name = name

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.shape[0] < 2:
                raise ValueError(f"{key}: expected logits and a variance channel, got {x.shape[0]} channel(s)")
            d[key], d[self.name] = x[:-1], torch.sqrt(torch.clamp(x[-1:], min=0))
        return d


def fill_binary_holes(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """``mask`` (bool, any number of spatial dims) with its holes filled: background components that do not touch
    the array's border, connected with at most ``connectivity`` orthogonal hops (default: all ``mask.ndim``)."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    labels, _ = ndimage.label(~mask, structure)
    faces = [np.take(labels, i, axis=axis).ravel() for axis in range(mask.ndim) for i in (0, -1)]
    open_ = np.unique(np.concatenate(faces))
    return ~np.isin(labels, open_[open_ > 0])


def remove_small_blobs(mask: np.ndarray, max_size: int, connectivity: int | None = None) -> np.ndarray:
    """``mask`` (bool, any number of spatial dims) without its components of at most ``max_size`` pixels, connected
    with at most ``connectivity`` orthogonal hops (default: all ``mask.ndim``, 8-connected in 2D): scikit-image's
    ``remove_small_objects(max_size=...)``. Written out rather than MONAI's ``RemoveSmallObjects`` because that
    passes ``min_size`` positionally, which scikit-image 0.26 reads as ``max_size`` (removing blobs of exactly that
    size) and earlier versions as "fewer than" (keeping them; scikit-image#8001): the masks depended on the
    installed version. This project's machines install 0.26, whose reading the recent published choices used: it is kept."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    labels, _ = ndimage.label(mask, structure)
    keep = np.bincount(labels.ravel()) > max_size
    keep[0] = False
    return keep[labels]


class _BinaryMaskd(MapTransform):
    """Applies ``self.apply`` (bool array in, bool array out) to one-channel binary masks, returned in the input's
    type, dtype, device and meta."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.shape[0] != 1:
                raise ValueError(f"{key}: {type(self).__name__} expects a one-channel mask, got {x.shape[0]} channels")
            t = x.as_tensor() if isinstance(x, MetaTensor) else x  # MetaTensor ops cost more than the work itself
            arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
            out = self.apply(arr[0] > 0)[None]
            if not isinstance(t, torch.Tensor):
                y = out.astype(arr.dtype)
            else:
                y = torch.from_numpy(out).to(device=t.device, dtype=t.dtype)
                if isinstance(x, MetaTensor):
                    y = MetaTensor(y)
                    y.copy_meta_from(x)
            d[key] = y
        return d


class FillBinaryHolesd(_BinaryMaskd):
    """MONAI's ``FillHolesd`` for one-channel binary masks (what the lesion post-processing sees): the same pixels
    (tested against it), about 8x faster on a 768x560 mask. MONAI grows the outside inwards by iterated binary
    dilation, which took a fifth of a PH2 validation pass; here the background is labelled once and the components
    that touch the border are kept open."""

    def __init__(self, keys: KeysCollection, connectivity: int | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.connectivity = connectivity

    def apply(self, mask: np.ndarray) -> np.ndarray:
        return fill_binary_holes(mask, self.connectivity)


class RemoveSmallBlobsd(_BinaryMaskd):
    """Removes the components of at most ``max_size`` pixels from one-channel binary masks
    (:func:`remove_small_blobs`: what MONAI's ``RemoveSmallObjectsd(min_size=max_size)`` does with scikit-image 0.26,
    whatever scikit-image is installed)."""

    def __init__(self, keys: KeysCollection, max_size: int, connectivity: int | None = None,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.max_size, self.connectivity = int(max_size), connectivity

    def apply(self, mask: np.ndarray) -> np.ndarray:
        return remove_small_blobs(mask, self.max_size, self.connectivity)


def lesion_postprocessing(min_size: int = 0, keep_largest: bool = False, fill_holes: bool = False,
                          keys: KeysCollection = "pred") -> list:
    """The post-processing of a thresholded one-channel mask, in the order the bundles apply it: blobs of at most
    ``min_size`` pixels removed (8-connected in 2D), then only the largest component kept, then its holes filled.
    One definition for the engines (``lesion_postprocessing`` in configs/engine.json) and for the choices made
    out-of-fold (:mod:`pipeline.crossval`), so what was chosen is what runs."""
    from monai.transforms import KeepLargestConnectedComponentd

    out = []
    if min_size:
        out.append(RemoveSmallBlobsd(keys=keys, max_size=min_size))
    if keep_largest:
        out.append(KeepLargestConnectedComponentd(keys=keys, applied_labels=[1]))
    if fill_holes:
        out.append(FillBinaryHolesd(keys=keys))
    return out


def largest_component_3d(volume: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a binary (H, W, D) volume (MONAI's ``KeepLargestConnectedComponent``,
    whose default connectivity is full): for a patient whose slices are stacked, the one tumour kept in 3D."""
    from monai.transforms import KeepLargestConnectedComponent

    v = torch.as_tensor(np.asarray(volume, dtype=np.uint8))[None]
    out = KeepLargestConnectedComponent(applied_labels=[1])(v)
    return np.asarray(out[0].cpu() if hasattr(out, "cpu") else out[0]) > 0


def _plain(data):
    """The dict with its MetaTensors as plain tensors (sharing storage: no copy)."""
    if not isinstance(data, Mapping):
        return data
    return {k: v.as_tensor() if isinstance(v, MetaTensor) else v for k, v in data.items()}


@contextmanager
def _no_meta():
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


class TrainCompose(Compose):
    """``Compose`` for a training chain whose random part needs no metadata: the transforms from the first random
    one on run with MONAI's MetaTensor tracking switched off, and the deterministic head (what ``CacheDataset``
    caches) returns plain tensors, so the per-epoch work is the tensor operations only.

    Why: on 256x256 crops the metadata bookkeeping (affine and operation history per call, deep copies of the
    cached item) costs about twice the augmentation itself (about 6 ms against 2 ms per sample on one core), enough
    to put the engine 15-20% behind a hand-written loop with a light network (``python -m pipeline.bench.speed``).
    Same transforms, same random draws, same values: only the tensor type differs. The chain must therefore not
    contain transforms that read metadata after its first random transform (spatial inversion, file names).

    Tracking is a process-wide MONAI switch, so it is only turned off on the main thread of a process (the
    inline loader or a ``DataLoader`` worker process); from any other thread (``ThreadDataLoader``) the chain runs
    with metadata, unchanged.
    """

    def _first_random(self) -> int | None:
        return self.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))

    def __call__(self, input_, start=0, end=None, threading=False, lazy=None):
        first = self._first_random()
        if first is None:
            return super().__call__(input_, start, end, threading, lazy)
        if start < first:  # the deterministic head (what CacheDataset caches): with metadata, returned plain
            input_ = _plain(super().__call__(input_, start, first if end is None else min(end, first), threading, lazy))
            if end is not None and end <= first:
                return input_
            start = first
        if threading_module.current_thread() is not threading_module.main_thread():
            return super().__call__(input_, start, end, threading, lazy)
        with _no_meta():
            return super().__call__(_plain(input_), start, end, threading, lazy)
