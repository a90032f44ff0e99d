import warnings

import numpy as np
import pytest
import torch

from pipeline.transforms import RandHairsd


def sample():
    return {"image": torch.full((3, 64, 80), 0.8), "label": torch.ones(1, 64, 80)}


def test_hairs_darken_image_only():
    t = RandHairsd(keys="image", prob=1.0, max_hairs=5)
    t.set_random_state(0)
    out = t(sample())
    changed = (out["image"] < 0.79).any(0)
    assert 0 < changed.float().mean() < 0.5  # some thin dark lines, not a wash
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 0.8 + 1e-6
    assert torch.equal(out["label"], sample()["label"])
    assert out["image"].shape == (3, 64, 80)


def test_prob_zero_and_seeding():
    t = RandHairsd(keys="image", prob=0.0)
    assert torch.equal(t(sample())["image"], sample()["image"])
    a, b = RandHairsd(keys="image", prob=1.0), RandHairsd(keys="image", prob=1.0)
    a.set_random_state(3)
    b.set_random_state(3)
    np.testing.assert_array_equal(a(sample())["image"], b(sample())["image"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_hairs"):
        RandHairsd(keys="image", max_hairs=0)


def test_replicate_channel():
    from pipeline.transforms import RandReplicateChanneld

    img = torch.stack([torch.full((4, 5), float(c)) for c in range(3)])
    t = RandReplicateChanneld(keys="image", channel=1, prob=1.0)
    out = t({"image": img, "label": torch.ones(1, 4, 5)})["image"]
    assert out.shape == (3, 4, 5) and torch.equal(out, torch.ones(3, 4, 5))
    assert torch.equal(RandReplicateChanneld(keys="image", prob=0.0)({"image": img})["image"], img)
    with pytest.raises(ValueError, match="channel 5 out of range"):
        RandReplicateChanneld(keys="image", channel=5, prob=1.0)({"image": img})


def _train_chain(cls):
    from monai.transforms import (AsDiscreted, EnsureTyped, RandAdjustContrastd, RandFlipd, RandRotate90d,
                                  RandScaleIntensityd, RandSpatialCropd, ScaleIntensityd, SpatialPadd)

    keys = ["image", "label"]
    return cls([ScaleIntensityd(keys="image"), AsDiscreted(keys="label", threshold=0.5),
                SpatialPadd(keys=keys, spatial_size=(48, 48)),
                RandSpatialCropd(keys=keys, roi_size=(48, 48), random_size=False),
                RandFlipd(keys=keys, prob=0.5, spatial_axis=0), RandRotate90d(keys=keys, prob=0.5),
                RandScaleIntensityd(keys="image", factors=0.2, prob=0.5, channel_wise=True),
                RandAdjustContrastd(keys="image", prob=0.5), EnsureTyped(keys=keys, track_meta=False)])


def _case(seed):
    from monai.data import MetaTensor

    g = torch.Generator().manual_seed(seed)
    return {"image": MetaTensor(torch.rand(3, 40, 56, generator=g)),
            "label": MetaTensor(torch.rand(1, 40, 56, generator=g))}


@pytest.mark.parametrize("cached", [True, False])
def test_train_compose_matches_compose(cached):
    """Same draws, same values as a plain Compose, cached head (CacheDataset's calls) or whole chain."""
    from monai.data import MetaTensor, get_track_meta
    from monai.transforms import Compose

    from pipeline.transforms import TrainCompose

    ref, fast = _train_chain(Compose), _train_chain(TrainCompose)
    ref.set_random_state(7)
    fast.set_random_state(7)
    first = fast.get_index_of_first(lambda t: hasattr(t, "set_random_state"))
    for seed in range(12):
        if cached:
            head_ref, head_fast = ref(_case(seed), end=first), fast(_case(seed), end=first, threading=True)
            assert isinstance(head_ref["image"], MetaTensor) and not isinstance(head_fast["image"], MetaTensor)
            a, b = ref(head_ref, start=first), fast(head_fast, start=first)
        else:
            a, b = ref(_case(seed)), fast(_case(seed))
        for key in ("image", "label"):
            assert type(b[key]) is torch.Tensor
            assert torch.equal(torch.as_tensor(a[key]), b[key]), (seed, key)
        assert get_track_meta()  # switched back on


def test_train_compose_restores_tracking_on_error_and_keeps_meta_off_main_thread():
    import threading

    from monai.data import get_track_meta
    from monai.transforms import Lambdad

    from pipeline.transforms import TrainCompose

    seen = {}

    def probe(x):
        seen[threading.current_thread().name] = get_track_meta()
        return x

    chain = _train_chain(TrainCompose)
    chain.transforms = (*chain.transforms[:-1], Lambdad(keys="image", func=probe), chain.transforms[-1])
    chain(_case(0))
    worker = threading.Thread(target=lambda: chain(_case(1)), name="loader")
    worker.start()
    worker.join()
    assert seen == {threading.main_thread().name: False, "loader": True}

    def boom(x):
        raise ValueError("bad sample")

    chain.transforms = (*chain.transforms[:-1], Lambdad(keys="image", func=boom))
    with pytest.raises(RuntimeError, match="applying transform"):
        chain(_case(0))
    assert get_track_meta()


@pytest.mark.parametrize("shape, connectivity", [((17, 23), 1), ((17, 23), 2), ((3, 40), None), ((9, 11, 7), 1),
                                                 ((9, 11, 7), 3)])
@pytest.mark.parametrize("density", [0.3, 0.6, 0.85])
def test_fill_binary_holes_matches_monai(shape, connectivity, density):
    from monai.transforms import FillHoles

    from pipeline.transforms import fill_binary_holes

    rng = np.random.default_rng(int(density * 100) + len(shape))
    for _ in range(5):
        mask = rng.random(shape) < density
        ref = FillHoles(connectivity=connectivity)(torch.from_numpy(mask[None]).float())[0].numpy() > 0
        np.testing.assert_array_equal(fill_binary_holes(mask, connectivity), ref)


def test_fill_binary_holesd_keeps_meta_and_matches_monai():
    """Its speed against MONAI's is measured by ``python -m pipeline.bench.postprocessing``, not here."""
    from monai.data import MetaTensor
    from monai.transforms import FillHolesd

    from pipeline.transforms import FillBinaryHolesd

    yy, xx = np.mgrid[:560, :768]
    mask = ((yy - 280) ** 2 / 200**2 + (xx - 384) ** 2 / 250**2 < 1) & (np.random.default_rng(0).random((560, 768))
                                                                       > 0.02)
    pred = MetaTensor(torch.from_numpy(mask[None]).float(), meta={"filename_or_obj": "IMD002.bmp"})
    ours, monai = FillBinaryHolesd("pred"), FillHolesd("pred")
    out = ours({"pred": pred})["pred"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "IMD002.bmp" and out.dtype == pred.dtype
    assert torch.equal(out, monai({"pred": pred.clone()})["pred"])
    assert out.sum() > pred.sum()  # the 2% pinholes inside the blob are filled
    with pytest.raises(ValueError, match="pred: FillBinaryHolesd expects a one-channel mask, got 2 channels"):
        ours({"pred": torch.zeros(2, 4, 4)})


@pytest.mark.parametrize("max_size, kept", [(3, [4, 8, 9]), (4, [8, 9]), (5, [8, 9]), (8, [9]), (9, [])])
def test_blobs_of_at_most_max_size_are_removed_whatever_scikit_image_is_installed(max_size, kept):
    """Three blobs of 4, 8 (two squares touching at a corner: one 8-connected blob) and 9 pixels: a blob of exactly
    ``max_size`` pixels goes (scikit-image 0.26's reading of MONAI's ``min_size``; earlier versions kept it), in the
    masks' type and meta; where no blob has exactly that size, MONAI's ``RemoveSmallObjectsd`` agrees on any version."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, RemoveSmallObjectsd

    from pipeline.transforms import RemoveSmallBlobsd, lesion_postprocessing

    mask = np.zeros((1, 12, 12), np.float32)
    mask[0, 0:2, 0:2] = 1  # 4
    mask[0, 5:7, 0:2] = mask[0, 7:9, 2:4] = 1  # 8, corner to corner
    mask[0, 9:12, 9:12] = 1  # 9
    pred = MetaTensor(torch.from_numpy(mask), meta={"filename_or_obj": "IMD002.bmp"})
    out = RemoveSmallBlobsd("pred", max_size)({"pred": pred})["pred"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "IMD002.bmp" and out.dtype == pred.dtype
    assert int(out.sum()) == sum(kept)
    # what --min_lesion_size runs in the engines and in the out-of-fold choices
    post = Compose(lesion_postprocessing(min_size=max_size))({"pred": pred.clone()})["pred"]
    assert torch.equal(post, out)
    if max_size not in (4, 8, 9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            monai = RemoveSmallObjectsd("pred", max_size, connectivity=2)({"pred": pred.clone()})["pred"]
        assert torch.equal(out, monai)
    with pytest.raises(ValueError, match="pred: RemoveSmallBlobsd expects a one-channel mask, got 2 channels"):
        RemoveSmallBlobsd("pred", 4)({"pred": torch.zeros(2, 4, 4)})


def test_inverted_tissue_gets_a_black_background_with_median_to_zero():
    """A slide filled with tissue (0.7, noisy) with dark nuclei (0.1) and a glare spot (1.0): inverted alone, the
    tissue is 0.3, mid-grey where fluorescence has nuclei; with ``median_to_zero`` the tissue median maps to 0 and the
    nuclei, above the 99th percentile, to 1. A dark-background image is left as it is either way."""
    from pipeline.transforms import InvertBrightBackgroundd

    rng = np.random.default_rng(0)
    img = torch.from_numpy((0.7 + rng.uniform(-0.02, 0.02, (3, 40, 40))).astype(np.float32))
    img[:, 5:15, 5:15] = 0.1  # nuclei: 100 of 1600 pixels, more than 1%
    img[:, 30:32, 30:32] = 1.0  # glare
    plain = InvertBrightBackgroundd(keys="image")({"image": img})["image"]
    rescaled = InvertBrightBackgroundd(keys="image", median_to_zero=True)({"image": img})["image"]
    tissue = (slice(None), slice(20, 28), slice(5, 15))
    assert float(plain[tissue].mean()) == pytest.approx(0.3, abs=0.01)
    assert float(rescaled[tissue].median()) < 0.1 and float(rescaled.min()) == 0.0
    assert torch.all(rescaled[:, 5:15, 5:15] == 1.0) and float(rescaled.max()) == 1.0
    dark = 1.0 - img
    torch.testing.assert_close(InvertBrightBackgroundd(keys="image", median_to_zero=True)({"image": dark})["image"],
                               dark)


@pytest.mark.parametrize("resize", [False, True])
def test_invert_to_source_is_invertd_without_its_warning(resize):
    import warnings

    from monai.data import MetaTensor
    from monai.transforms import Compose, InvertibleTransform, Invertd, MapTransform, Resized, ScaleIntensityd

    from pipeline.transforms import InvertToSourced

    steps = [ScaleIntensityd(keys="image")] + ([Resized(keys="image", spatial_size=(8, 8))] if resize else [])
    pre = Compose(steps)
    image = MetaTensor(torch.rand(1, 16, 12), meta={"filename_or_obj": "case.png"})
    d = pre({"image": image})
    d["pred"] = MetaTensor(torch.rand(1, *d["image"].shape[1:]))  # a network output: its own, empty metadata
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = InvertToSourced(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(dict(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monais = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(dict(d))
    assert not [w for w in caught if "invertible" in str(w.message)]
    assert ours["pred"].shape == (1, 16, 12)  # back on the source grid either way
    torch.testing.assert_close(ours["pred"].as_tensor(), monais["pred"].as_tensor())
    assert ours["pred"].meta["filename_or_obj"] == "case.png"  # the image's metadata, as Invertd gives it

    class WarnsOnInverse(MapTransform, InvertibleTransform):
        def __call__(self, data):
            return data

        def inverse(self, data):
            warnings.warn("another warning")
            return data

    with pytest.warns(UserWarning, match="another warning"):  # every other warning still reaches the user
        InvertToSourced(keys="pred", transform=Compose([WarnsOnInverse(keys="image")]), orig_keys="image")(dict(d))


def test_invert_to_source_keeps_once_a_run_warnings_once():
    """A warning shown once per location (Python's default) stays once however many images are inverted."""
    import warnings

    from monai.data import MetaTensor
    from monai.transforms import Compose, ScaleIntensityd

    from pipeline.transforms import InvertToSourced

    pre = Compose([ScaleIntensityd(keys="image")])
    invert = InvertToSourced(keys="pred", transform=pre, orig_keys="image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # once per location, as outside pytest
        invert_filter = ("ignore", "inverse has been called but no invertible transforms")
        warnings.filterwarnings(*invert_filter)  # what building the transform installs (pytest resets filters)
        for _ in range(4):
            d = pre({"image": MetaTensor(torch.rand(1, 8, 8))})
            d["pred"] = MetaTensor(torch.rand(1, 8, 8))
            invert(d)
            warnings.warn("shown once a run", FutureWarning)  # as skimage's, after each image's inversion
    assert [str(w.message) for w in caught] == ["shown once a run"]
