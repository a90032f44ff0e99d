import pytest
import torch

from pipeline.losses import LOSSES, WithAuxiliary, build_loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_take_logits(name):
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.grad.abs().sum() > 0
    good = build_loss(name)(target * 20 - 10, target)
    assert good < loss  # confident and right beats random


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'iou'; choose one of: bce, dice"):
        build_loss("iou")


def test_with_auxiliary():
    base = torch.nn.BCEWithLogitsLoss()
    p, a, t = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    wrapped = WithAuxiliary(base, aux_weight=0.4)
    torch.testing.assert_close(wrapped(p, t), base(p, t))
    torch.testing.assert_close(wrapped((p, a), t), base(p, t) + 0.4 * base(a, t))
