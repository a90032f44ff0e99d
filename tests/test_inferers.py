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
