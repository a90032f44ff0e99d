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
