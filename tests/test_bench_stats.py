"""The statistics module the studies and benchmarks share, the plain loop's pieces, and measurement kept apart from
the library (nothing that trains imports ``pipeline.bench``)."""

import ast
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.bench import plain_loop, stats

from conftest import ROOT


def test_bootstrap_ci():
    lo, hi = stats.bootstrap_ci([0.5] * 7)
    assert lo == hi == 0.5
    v = np.random.default_rng(1).normal(0.8, 0.1, 200)
    lo, hi = stats.bootstrap_ci(v)
    assert lo < v.mean() < hi and 0.01 < hi - lo < 0.05  # about 2 * 1.96 * 0.1 / sqrt(200) = 0.028
    assert all(np.isnan(stats.bootstrap_ci([])))


def test_paired_difference_uses_the_units_both_score():
    a = {"x": 0.9, "y": 0.5, "z": 0.7, "only_a": 0.0}
    b = {"x": 0.6, "y": 0.6, "z": 0.7, "only_b": 1.0}
    d = stats.paired_difference(a, b)
    assert d["units"] == ["x", "y", "z"] and d["n"] == 3 and d["better"] == 1
    assert d["mean"] == pytest.approx(np.mean([0.3, -0.1, 0.0]))
    assert d["ci"] == pytest.approx(stats.bootstrap_ci([0.3, -0.1, 0.0]))
    empty = stats.paired_difference({"x": 1.0}, {"y": 1.0})
    assert empty["n"] == 0 and np.isnan(empty["mean"]) and empty["better"] == 0


def test_unit_scores_per_patient_when_grouped_else_per_image(tmp_path):
    with open(tmp_path / "per_case.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["case_id", "iou", "dice", "hd95"])
        w.writeheader()
        w.writerows([{"case_id": "a", "iou": 0.5, "dice": 2 / 3, "hd95": 4.0},
                     {"case_id": "b", "iou": 1.0, "dice": 1.0, "hd95": "nan"}])
    unit, scores = stats.unit_scores(tmp_path)
    assert unit == "image" and scores["iou"] == {"a": 0.5, "b": 1.0} and scores["hd95"] == {"a": 4.0}
    with open(tmp_path / "per_group.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["group", "dice_volume", "iou_volume"])
        w.writeheader()
        w.writerow({"group": "P1", "dice_volume": 0.8, "iou_volume": 0.8 / 1.2})
    unit, scores = stats.unit_scores(tmp_path)
    assert unit == "patient" and scores["dice"] == {"P1": 0.8}


def test_plain_loop_keeps_the_best_validation_weights():
    data = [(torch.rand(3, 32, 32), (torch.rand(1, 32, 32) > 0.5).float()) for _ in range(5)]
    loop = plain_loop.PlainLoop("unet", plain_loop.stacked(data, lambda x, y, g: (x, y)), len(data), batch_size=2,
                                width=4)
    assert loop.epoch()["images"] == 5  # the partial last batch trains too unless drop_last
    scores = iter([0.2, 0.7, 0.5])
    fitted = loop.fit(5, lambda net: next(scores), val_interval=2, key="val_x")
    assert [c["epoch"] for c in fitted["curve"]] == [2, 4, 5] and fitted["best_epoch"] == 4 and fitted["val_x"] == 0.7
    weights = {k: v.clone() for k, v in loop.best_state.items()}
    out = loop.last_and_best(lambda net: sum(float(p.sum()) for p in net.state_dict().values()))
    assert out["best"] == pytest.approx(sum(float(v.sum()) for v in weights.values())) != out["last"]


def test_random_crop_pads_where_smaller():
    g = torch.Generator().manual_seed(0)
    img, lab = torch.ones(3, 10, 30), torch.ones(1, 10, 30)
    for centred, rows in ((False, slice(0, 10)), (True, slice(3, 13))):
        x, y = plain_loop.random_crop(img, lab, 16, g, centred=centred)
        assert x.shape == (3, 16, 16) and y.shape == (1, 16, 16)
        assert x[:, rows].min() == 1 and x.sum() == 3 * 10 * 16


def test_the_library_does_not_import_the_measurements():
    """No library module imports pipeline.bench, relative imports included; the one exception is the
    cross-validation driver, whose report carries a bootstrap CI (pipeline.bench.stats, imported where it is used).
    What training, evaluate and inference import (configs/engine.json's imports) never loads it."""
    allowed = {"pipeline/crossval.py"}
    imports = {}
    for path in (ROOT / "pipeline").rglob("*.py"):
        rel = path.relative_to(ROOT / "pipeline")
        if "bench" in rel.parts:
            continue
        package = ["pipeline", *rel.parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
                module = ".".join(p for p in (base, node.module or "") if p)
                names = [module, *(f"{module}.{a.name}" for a in node.names)]
            else:
                continue
            bad = [n for n in names if n.startswith("pipeline.bench")]
            if bad:
                imports[str(path.relative_to(ROOT))] = bad
    assert set(imports) <= allowed, imports
    assert "pipeline/crossval.py" in imports  # the check sees relative imports (crossval's is one)
    # metadata files are descriptions (their changelogs name bench commands), not configs anything resolves
    configs = [c for c in [*ROOT.glob("bundles/*.json"), *ROOT.glob("configs/*.json")] if c.name != "metadata.json"]
    assert ROOT / "configs" / "engine.json" in configs
    for config in configs:
        assert "pipeline.bench" not in config.read_text(), config
    engine = json.loads((ROOT / "configs" / "engine.json").read_text())
    code = "\n".join(e[1:] for e in engine["imports"]) + "\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('pipeline.bench')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
