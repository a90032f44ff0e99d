"""The DSB2018 plain-loop baseline: the bundle's split, full-resolution scoring, and the seed-averaged comparison."""

import csv

import numpy as np
import pytest
import torch

from pipeline.bench import dsb2018 as bench_dsb2018
from pipeline.data import find_cases, splits
from pipeline.data.synthetic import write_dsb2018


def test_plain_loop_scores_the_bundles_test_images(tmp_path):
    root = write_dsb2018(tmp_path / "stage1_train", n_cases=8)
    res = bench_dsb2018.train_seed(str(root), seed=0, epochs=2, width=8, val_interval=1)
    test_ids = [c["case_id"] for c in splits.assign(find_cases("dsb2018", root), **bench_dsb2018.SPLIT)["test"]]
    assert sorted(res["best"]) == sorted(res["last"]) == sorted(test_ids)
    assert [c["epoch"] for c in res["curve"]] == [1, 2] and res["val_iou"] == max(c["val_iou"] for c in res["curve"])
    assert all(0.0 <= v <= 1.0 for v in res["best"].values())


def test_whole_image_scoring_pads_and_crops_back():
    class Threshold(torch.nn.Module):  # logits > 0 where channel 0 > 0.5; fails on shapes not divisible by 16
        def forward(self, x):
            assert x.shape[2] % 16 == 0 and x.shape[3] % 16 == 0
            return x[:, :1] - 0.5

    x = torch.zeros(3, 37, 50)
    x[0, 5:20, 10:30] = 1.0
    y = torch.zeros(1, 37, 50)
    y[0, 5:20, 10:40] = 1.0  # 300 of the 450 true pixels predicted
    assert bench_dsb2018._ious(Threshold(), [(x, y), (x, (x[:1] > 0.5).float())]) == pytest.approx([300 / 450, 1.0])


def _study_run(folder, ious):
    (folder / "eval-test").mkdir(parents=True)
    with open(folder / "eval-test" / "per_case.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["case_id", "iou", "dice", "hd95"])
        w.writeheader()
        w.writerows({"case_id": c, "iou": v, "dice": 2 * v / (1 + v), "hd95": ""} for c, v in ious.items())


def test_compare_averages_seeds_per_image_and_pairs_images(tmp_path):
    results = [{"best": {"a": 0.5, "b": 0.7}}, {"best": {"a": 0.7, "b": 0.9}}]  # plain per image: a 0.6, b 0.8
    _study_run(tmp_path / "seed=0", {"a": 0.8, "b": 0.8})
    _study_run(tmp_path / "seed=1", {"a": 0.6, "b": 0.6})  # recipe per image: a 0.7, b 0.7
    out = bench_dsb2018.compare(results, tmp_path)
    assert out["plain"]["mean"] == pytest.approx(0.7) and out["plain"]["per_run_mean"] == pytest.approx([0.6, 0.8])
    recipe = out["recipe"]
    assert recipe["runs"] == 2 and recipe["mean"] == pytest.approx(0.7)
    assert recipe["minus_plain"] == pytest.approx(np.mean([0.1, -0.1])) and recipe["images_better"] == 1
    assert "recipe" not in bench_dsb2018.compare(results, None)
