"""Networks registry: shapes for any input size, gradients, TorchScript round trips, determinism and argument checks.

Small widths and images keep the whole file to a few seconds per network on a CPU.
"""

import io

import pytest
import torch
import torch.nn as nn

from pipeline.networks import NETWORKS, build_network
from pipeline.networks.padding import PadToMultiple
from pipeline.networks.pspnet import PSPNet
from pipeline.networks.segnet import SegNet
from pipeline.networks.unet2 import UNet2

NAMES = sorted(NETWORKS)
WIDTH = 4
# (B, C_in, H, W): divisible by every stride, then odd sizes divisible by none.
SHAPES = [(1, 3, 64, 64), (2, 3, 61, 77), (1, 1, 97, 131), (1, 3, 761, 577)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine thread hand-offs dominate (a 100x slow
    down measured on 2 shared cores); restore the setting for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(name, in_channels=3, out_channels=2, **kwargs):
    torch.manual_seed(0)
    return build_network(name, in_channels=in_channels, out_channels=out_channels, width=WIDTH, **kwargs)


def test_registry_names():
    assert set(NETWORKS) == {"unet", "resunet", "unet2", "classic_unet", "segresnet", "segnet", "pspnet"}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name, shape):
    net = _net(name, in_channels=shape[1]).eval()
    with torch.no_grad():
        out = net(torch.rand(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


@pytest.mark.parametrize("name", NAMES)
def test_backward(name):
    net = _net(name).train()
    out = net(torch.rand(2, 3, 37, 45))  # batch 2: batch norm needs more than one value per channel in training
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_eval_deterministic_and_torchscript(name):
    net = _net(name).eval()
    x = torch.rand(1, 3, 45, 53)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(net(x), expected, rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected)


def test_unet2_3d():
    net = UNet2(spatial_dims=3, in_channels=1, out_channels=2, width=2, depth=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 9, 10, 11)).shape == (1, 2, 9, 10, 11)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("nope", {}, "choose one of: classic_unet, pspnet, resunet, segnet, segresnet, unet, unet2"),
        ("unet", {"width": 0}, "width must be a positive integer"),
        ("pspnet", {"in_channels": 0}, "in_channels must be a positive integer"),
        ("segnet", {"out_channels": -1}, "out_channels must be a positive integer"),
        ("segnet", {"spatial_dims": 3}, "SegNet is 2D only"),
        ("pspnet", {"spatial_dims": 3}, "PSPNet is 2D only"),
        ("pspnet", {"bins": ()}, "bins must be a non-empty sequence of positive integers"),
        ("pspnet", {"bins": (1, 0, 3)}, "bins must be a non-empty sequence of positive integers"),
        ("pspnet", {"layers": (2, 2, 2)}, "layers must be 4 positive block counts"),
        ("pspnet", {"dropout": 1.0}, "dropout must be in"),
        ("unet2", {"spatial_dims": 1}, "UNet2 supports spatial_dims 2 or 3"),
        ("unet2", {"depth": 0}, "depth must be >= 1"),
        ("unet2", {"pad_mode": "reflect"}, "pad_mode must be one of"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_network(name, **kwargs)


@pytest.mark.parametrize("cls", [UNet2, SegNet, PSPNet])
def test_bad_width_direct(cls):
    with pytest.raises(ValueError, match="width must be >= 1"):
        cls(width=0)


def test_pad_to_multiple():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        PadToMultiple(nn.Identity(), k=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        PadToMultiple(nn.Identity(), k=8, mode="reflect")

    class SizeCheck(nn.Module):
        def forward(self, x):
            assert x.shape[-2] % 16 == 0 and x.shape[-1] % 16 == 0
            return x

    x = torch.rand(1, 2, 17, 33)
    for mode in ("replicate", "constant"):
        torch.testing.assert_close(PadToMultiple(SizeCheck(), 16, mode)(x), x)  # padding is cropped away exactly


def _delta_segnet():
    """SegNet whose convolutions pass channel 0 through unchanged (centre tap 1, everything else 0)."""
    net = SegNet(in_channels=1, out_channels=1, width=2).eval()  # fresh BN statistics: ~identity in eval
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.weight[0, 0, 1, 1] = 1.0
                if m.bias is not None:
                    m.bias.zero_()
    return net


@pytest.mark.parametrize("size", [(64, 64), (61, 77)])
def test_segnet_uses_pooling_indices(size):
    net = _delta_segnet()
    assert sum(isinstance(m, nn.MaxUnpool2d) for m in net.modules()) == 5
    # A single bright pixel survives every max-pooling; if the decoder puts it back where the pooling indices say,
    # the output peak is at the input pixel, even when it moves inside one 2x2 window (which nearest or bilinear
    # upsampling could not tell apart). The last case is the bottom-right pixel of an odd-sized image.
    h, w = size
    for r, c in [(20, 20), (20, 21), (21, 20), (21, 21), (h - 1, w - 1)]:
        x = torch.zeros(1, 1, h, w)
        x[0, 0, r, c] = 1.0
        with torch.no_grad():
            out = net(x)[0, 0].abs()
        assert out.max() > 0.5
        assert divmod(int(out.argmax()), w) == (r, c)


def test_pspnet_aux_head():
    x = torch.rand(2, 3, 41, 51)
    net = PSPNet(in_channels=3, out_channels=2, width=WIDTH, aux_head=True).train()
    out = net(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (2, 2, 41, 51)
    (out[0].mean() + 0.4 * out[1].mean()).backward()
    assert net.aux[-1].weight.grad.abs().sum() > 0  # the auxiliary classifier is trained
    with torch.no_grad():
        assert isinstance(net.eval()(x), torch.Tensor)
    # Without the auxiliary head, training mode returns a plain tensor too; batch size 1 trains (no BN on 1x1 bin).
    plain = PSPNet(in_channels=3, out_channels=2, width=WIDTH).train()
    assert isinstance(plain(x[:1]), torch.Tensor)
