import math

import numpy as np
import pytest
import torch

from pipeline import metrics as M


def square(h=10, w=10, y0=0, y1=0, x0=0, x1=0):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_hand_computed_overlap():
    truth = square(y0=0, y1=4, x0=0, x1=4)  # 16 px
    pred = square(y0=2, y1=6, x0=0, x1=4)  # 16 px, 8 overlap
    r = M.case_record(pred, truth)
    assert r["iou"] == pytest.approx(8 / 24)
    assert r["dice"] == pytest.approx(2 * 8 / 32)
    assert r["area_true"] == 16 and r["area_pred"] == 16
    assert r["hd95"] == pytest.approx(2.0)  # the boundary shifted by two rows


def test_perfect_and_disjoint():
    t = square(y0=1, y1=5, x0=1, x1=5)
    assert M.case_record(t, t)["iou"] == 1.0 and M.case_record(t, t)["hd95"] == 0.0
    r = M.case_record(square(y0=6, y1=8, x0=6, x1=8), t)
    assert r["iou"] == 0.0 and r["dice"] == 0.0


def test_empty_cases():
    empty, some = square(), square(y0=0, y1=2, x0=0, x1=2)
    both = M.case_record(empty, empty)
    assert both["iou"] == 1.0 and both["dice"] == 1.0 and math.isnan(both["hd95"])
    fp = M.case_record(some, empty)
    assert fp["iou"] == 0.0 and fp["dice"] == 0.0 and math.isnan(fp["hd95"])
    fn = M.case_record(empty, some)
    assert fn["iou"] == 0.0 and fn["dice"] == 0.0


def test_thresholded_not_soft():
    truth = square(y0=0, y1=4, x0=0, x1=4).astype(np.float32)
    soft = truth * 0.3  # a soft prediction counts as a mask wherever it is > 0
    assert M.case_record(soft, truth)["iou"] == 1.0


def test_shape_checks():
    with pytest.raises(ValueError, match="differs from truth shape"):
        M.case_record(square(8, 8), square(10, 10))
    with pytest.raises(ValueError, match="2D or 3D mask"):
        M.case_record(np.zeros((2, 2, 3, 3)), np.zeros((2, 2, 3, 3)))


def test_handler_metrics_agree_with_case_records():
    rng = np.random.default_rng(0)
    preds = [rng.random((12, 12)) > 0.5 for _ in range(5)] + [square(12, 12)]
    truths = [rng.random((12, 12)) > 0.5 for _ in range(5)] + [square(12, 12)]
    iou, dice = M.iou_metric(), M.dice_metric()
    for p, t in zip(preds, truths):
        pt, tt = torch.as_tensor(p[None, None]).float(), torch.as_tensor(t[None, None]).float()
        iou(pt, tt)
        dice(pt, tt)
    recs = [M.case_record(p, t) for p, t in zip(preds, truths)]
    assert float(iou.aggregate()) == pytest.approx(np.mean([r["iou"] for r in recs]))
    assert float(dice.aggregate()) == pytest.approx(np.mean([r["dice"] for r in recs]))


def test_summarize():
    s = M.summarize([1.0, 0.5, float("nan"), 0.0])
    assert s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["n"] == 3 and s["n_total"] == 4
    assert M.summarize([])["n"] == 0 and math.isnan(M.summarize([])["mean"])
