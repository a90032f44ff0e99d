"""Calibration of the foreground probability: expected calibration error (ECE) pooled over pixels, against cases
whose answer is known, and MONAI's per-image metric where the two must agree (one image)."""

import numpy as np
import pytest
import torch
from monai.metrics import CalibrationErrorMetric

from pipeline.handlers.calibration import pooled_bins, reliability_figure, summarize


def test_a_calibrated_map_has_ece_near_zero():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(1, 200_000, generator=g)
    truth = torch.rand(1, 200_000, generator=g) < p  # foreground with exactly the stated probability
    s = summarize(pooled_bins(p, truth, 20))
    assert s["ece"] < 0.01 and s["pixels"] == 200_000


def test_an_overconfident_map_has_its_gap_as_ece():
    p = torch.full((1, 1000), 0.75)
    s = summarize(pooled_bins(p, torch.ones(1, 1000), 10))  # every pixel is foreground, predicted at 0.75
    assert s["ece"] == pytest.approx(0.25, abs=1e-5) and s["mce"] == pytest.approx(0.25, abs=1e-5)  # float32 means
    filled = [b for b in s["bins"] if b["pixels"]]
    assert len(filled) == 1 and filled[0]["low"] == pytest.approx(0.7) and filled[0]["foreground_fraction"] == 1.0


def test_pixels_pool_across_images():
    """Two images: a small badly calibrated one and a large perfect one; pooling weighs them by pixels, not by image."""
    small = pooled_bins(torch.full((1, 100), 0.9), torch.zeros(1, 100), 10)  # gap 0.9 over 100 pixels
    large = pooled_bins(torch.full((1, 900), 0.05), torch.zeros(1, 900), 10)  # gap 0.05 over 900 pixels
    assert summarize(small + large)["ece"] == pytest.approx((0.9 * 100 + 0.05 * 900) / 1000, abs=1e-5)


def test_one_image_agrees_with_monai():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(1, 1, 64, 64, generator=g) ** 2
    truth = (torch.rand(1, 1, 64, 64, generator=g) < 0.3).float()
    metric = CalibrationErrorMetric(num_bins=20)
    metric(p, truth)
    assert summarize(pooled_bins(p.reshape(1, -1), truth.reshape(1, -1), 20))["ece"] == pytest.approx(
        float(metric.aggregate()), abs=1e-6)


def test_the_reliability_figure_draws(tmp_path):
    s = summarize(pooled_bins(torch.linspace(0, 1, 1000)[None], torch.linspace(0, 1, 1000)[None] > 0.5, 20))
    fig = reliability_figure(s, "test")
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000 and np.isfinite(s["ece"])
