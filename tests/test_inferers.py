import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from pipeline.inferers import FlipTTA


def test_flip_tta_averages_flipped_passes():
    x = torch.randn(2, 3, 20, 28)
    net = torch.nn.Conv2d(3, 1, 3, padding=1)  # not flip-equivariant: TTA changes the output
    with torch.no_grad():
        out = FlipTTA(SimpleInferer())(x, net)
        expected = (net(x) + net(x.flip(3)).flip(3) + net(x.flip(2)).flip(2) + net(x.flip(2, 3)).flip(2, 3)) / 4
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, 1, 20, 28)


def test_flip_tta_disabled_and_equivariant_net():
    x = torch.randn(1, 3, 40, 50)
    net = torch.nn.Conv2d(3, 1, 1)  # 1x1 conv commutes with flips
    base = SlidingWindowInferer(roi_size=(32, 32), overlap=0.25)
    with torch.no_grad():
        torch.testing.assert_close(FlipTTA(base)(x, net), base(x, net), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(FlipTTA(base, enabled=False)(x, net), base(x, net))


@pytest.mark.parametrize("enabled, n", [(True, 8), (False, 4)])
def test_rot90_tta_averages_the_symmetries_of_the_square(enabled, n):
    x = torch.randn(1, 2, 12, 18)  # not square: each turned pass is turned back to the input's shape
    net = torch.nn.Conv2d(2, 1, 3, padding=1)
    tta = FlipTTA(SimpleInferer(), enabled=enabled, rot90=True)
    assert len(tta.passes()) == n and len(set(tta.passes())) == n
    with torch.no_grad():
        out = tta(x, net)
        if enabled:  # the dihedral group: the four turns of x and of its mirror image
            views = [(x.rot90(k, (2, 3)), lambda y, k=k: y.rot90(-k, (2, 3))) for k in range(4)]
            views += [(x.flip(3).rot90(k, (2, 3)), lambda y, k=k: y.rot90(-k, (2, 3)).flip(3)) for k in range(4)]
        else:
            views = [(x.rot90(k, (2, 3)), lambda y, k=k: y.rot90(-k, (2, 3))) for k in range(4)]
        expected = sum(back(net(v)) for v, back in views) / len(views)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out.shape == (1, 1, 12, 18)
    assert not torch.allclose(out, FlipTTA(SimpleInferer(), enabled=enabled)(x, net), atol=1e-4)


def _ramp(x):
    """A 'network' that ignores its input: a left-to-right logit ramp, so each flipped pass disagrees."""
    w = x.shape[-1]
    return torch.linspace(-3, 3, w).expand(x.shape[0], 1, x.shape[2], w).clone()


def test_uncertainty_is_the_variance_over_the_passes_and_leaves_the_logits():
    from monai.inferers import SimpleInferer

    x = torch.zeros(1, 3, 4, 6)
    plain = FlipTTA(SimpleInferer(), flips=((1,),))(x, _ramp)
    out = FlipTTA(SimpleInferer(), flips=((1,),), uncertainty=True)(x, _ramp)
    assert out.shape == (1, 2, 4, 6)
    torch.testing.assert_close(out[:, :1], plain, rtol=0, atol=0)
    p1, p2 = torch.sigmoid(_ramp(x)), torch.sigmoid(torch.flip(_ramp(x), [3]))
    torch.testing.assert_close(out[:, 1:], ((p1 - p2) / 2) ** 2)
    assert out[:, 1:].max() > 0.1  # the ends of the ramp disagree strongly


def test_uncertainty_pools_ensemble_members_and_passes():
    """Two members (the ramp, and the ramp shifted by 1) under two passes: the total variance equals the variance
    over the four predictions, by the law of total variance."""
    from monai.inferers import SimpleInferer

    from pipeline.networks.ensemble import FoldEnsemble

    class Shifted(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def forward(self, x):
            return _ramp(x) + self.shift

    x = torch.zeros(1, 3, 4, 6)
    plain_net = FoldEnsemble([Shifted(0.0), Shifted(1.0)])
    net = FoldEnsemble([Shifted(0.0), Shifted(1.0)], with_variance=True)
    out = FlipTTA(SimpleInferer(), flips=((1,),), uncertainty=True)(x, net)
    torch.testing.assert_close(out[:, :1], FlipTTA(SimpleInferer(), flips=((1,),))(x, plain_net), rtol=0, atol=0)
    four = torch.stack([torch.sigmoid(f(_ramp(x) + s)) for s in (0.0, 1.0)
                        for f in (lambda t: t, lambda t: torch.flip(t, [3]))])
    torch.testing.assert_close(out[:, 1:], four.var(0, unbiased=False), atol=1e-6, rtol=1e-5)
