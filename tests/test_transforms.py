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
