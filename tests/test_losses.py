import numpy as np
import pytest
import torch

from pipeline.losses import LOSSES, OUT_CHANNELS, WithAuxiliary, build_loss, unet_border_weights


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_take_logits(name):
    channels = OUT_CHANNELS.get(name, 1)
    logits = torch.randn(2, channels, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.grad.abs().sum() > 0
    confident = target * 8 - 4
    if channels == 2:
        confident = torch.cat([-confident, confident], 1)
    good = build_loss(name)(confident, target)
    assert good < loss  # confident and right beats random


def test_smooth_bce_targets():
    """Label smoothing moves the optimum from +-inf to the logit of 1 - s: a perfect hard prediction is penalised."""
    target = torch.tensor([[[[1.0, 0.0]]]])
    loss = build_loss("bce_smooth", smooth_factor=0.1)
    at_optimum = torch.logit(torch.tensor([[[[0.9, 0.1]]]]))
    too_sure = torch.tensor([[[[20.0, -20.0]]]])
    assert loss(at_optimum, target) < loss(too_sure, target)
    torch.testing.assert_close(build_loss("bce_smooth", smooth_factor=0.0)(too_sure, target),
                               torch.nn.BCEWithLogitsLoss()(too_sure, target))
    with pytest.raises(ValueError, match="smooth_factor"):
        build_loss("bce_smooth", smooth_factor=0.6)


def test_tversky_weights_false_negatives_more():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    missed = torch.full_like(target, -10.0)  # false negatives only
    extra = torch.full_like(target, 10.0)  # false positives only, as many pixels
    loss = build_loss("tversky")
    assert loss(missed, target) > loss(extra, target)


def test_ce_needs_two_channels_and_matches_bce_on_a_zero_background_logit():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    with pytest.raises(ValueError, match="--out_channels 2"):
        build_loss("ce")(logits, target)
    two = torch.cat([torch.zeros_like(logits), logits], 1)  # softmax over (0, z) is sigmoid(z)
    torch.testing.assert_close(build_loss("ce")(two, target), torch.nn.BCEWithLogitsLoss()(logits, target))


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'iou'; choose one of: bce, bce_smooth, ce, dice"):
        build_loss("iou")


def test_with_auxiliary():
    base = torch.nn.BCEWithLogitsLoss()
    p, a, t = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    wrapped = WithAuxiliary(base, aux_weight=0.4)
    torch.testing.assert_close(wrapped(p, t), base(p, t))
    torch.testing.assert_close(wrapped((p, a), t), base(p, t) + 0.4 * base(a, t))


def test_unet_border_weights_known_answer():
    """Two squares with a two-pixel gap: the gap pixels are 1 and 2 pixels from the squares, so their weight is
    1 + 10 exp(-(1 + 2)^2 / 50) (U-Net eq. 2, w_c = 1); object pixels weigh 1; one object alone gets no border."""
    m = np.zeros((9, 12), bool)
    m[2:7, 1:5] = m[2:7, 7:11] = True
    w = unet_border_weights(m, w0=10, sigma=5)
    np.testing.assert_allclose(w[2:7, 5:7], 1 + 10 * np.exp(-9 / 50), rtol=1e-6)
    assert (w[m] == 1).all() and w.dtype == np.float32
    assert w[4, 0] < w[4, 5]  # beside one square, farther from the other
    one = np.zeros((9, 12), bool)
    one[2:7, 1:5] = True
    assert (unet_border_weights(one) == 1).all() and (unet_border_weights(~one & False) == 1).all()
    cube = np.zeros((6, 6, 9), bool)
    cube[1:5, 1:5, 1:3] = cube[1:5, 1:5, 5:8] = True  # 3D: a 2-voxel gap between two boxes
    np.testing.assert_allclose(unet_border_weights(cube)[2, 2, 3:5], 1 + 10 * np.exp(-9 / 50), rtol=1e-6)


def test_boundary_weighted_loss_is_dicece_without_weights_and_charges_the_gap_more():
    from monai.losses import DiceCELoss

    target = torch.zeros(2, 1, 9, 12)
    target[:, :, 2:7, 1:5] = target[:, :, 2:7, 7:11] = 1
    logits = torch.randn(2, 1, 9, 12)
    torch.testing.assert_close(build_loss("dicece_boundary", w0=0.0)(logits, target),
                               DiceCELoss(sigmoid=True)(logits, target))
    right = target * 8 - 4
    gap, side = right.clone(), right.clone()
    gap[:, :, 2:7, 5:7] = 4  # the objects merged across the gap: 10 wrong pixels per image
    side[:, :, 0, 1:11] = 4  # as many wrong pixels along the edge of the image, far from any gap
    loss = build_loss("dicece_boundary")
    assert loss(gap, target) > loss(side, target)
    unweighted = build_loss("dicece_boundary", w0=0.0)
    torch.testing.assert_close(unweighted(gap, target), unweighted(side, target))
    with pytest.raises(ValueError, match="sigma"):
        build_loss("dicece_boundary", sigma=0)
    with pytest.raises(ValueError, match="one shape"):
        loss(torch.zeros(2, 1, 8, 8), target)
