"""Study runner: grid expansion, skip / resume of runs, the report from fake run folders, and a tiny real grid."""

import csv
import json
import logging

import numpy as np
import pytest
import torch

from pipeline.bench import study as S
from pipeline.crossval import cli_args

from conftest import ROOT


def write_study(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def make_study(tmp_path, grid=None, fixed=None):
    return S.Study(name="t", bundle="bundles/ph2.json", grid=grid or {"network": ["unet", "segnet"], "lr": [1e-3, 1e-4]},
                   fixed=fixed if fixed is not None else {"epochs": 3}, output_dir=str(tmp_path / "study"))


def test_grid_expands_in_order_with_fixed_overrides(tmp_path):
    runs = S.expand(make_study(tmp_path))
    assert [r.name for r in runs] == ["network=unet,lr=0.001", "network=unet,lr=0.0001",
                                      "network=segnet,lr=0.001", "network=segnet,lr=0.0001"]
    assert runs[3].overrides == {"epochs": 3, "network": "segnet", "lr": 1e-4}
    assert runs[0].folder == tmp_path / "study" / "network=unet,lr=0.001"


def test_cli_values_parse_back_to_the_same_python_values():
    args = cli_args({"lr": 1e-4, "roi_size": [128, 128], "loss": "bce", "loss_kwargs": {"batch": True}})
    assert args == ["--lr", "0.0001", "--roi_size", "[128, 128]", "--loss", "bce", "--loss_kwargs", "{'batch': True}"]


@pytest.mark.parametrize("text, message", [
    ("bundle: bundles/ph2.json\ngrid: {lr: [0.1]}\n", "missing required key 'name'"),
    ("name: x\nbundle: bundles/nope.json\ngrid: {lr: [0.1]}\n", "bundle 'bundles/nope.json' not found"),
    ("name: x\nbundle: bundles/ph2.json\ngrid: {lr: 0.1}\n", "grid.lr must be a non-empty list"),
    ("name: x\nbundle: bundles/ph2.json\ngrid: {lr: [0.1]}\nfixed: {lr: 0.2}\n", "given both in fixed and in grid"),
    ("name: x\nbundle: bundles/ph2.json\ngrid: {lr: [0.1]}\nsplits: test\n", "unknown keys"),
    ("name: x\nbundle: bundles/ph2.json\ngrid: {lr: [0.1]}\nsplit: all\n", "split must be"),
    ("name: x\nbundle: bundles/ph2.json\ngrid: {lr: [0.1]}\nfixed: {epoch: 3}\n", r"\['epoch'\] are not settings of"),
])
def test_bad_study_files_name_the_problem(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(ROOT)
    path = write_study(tmp_path, text)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        S.load_study(path)
    assert str(path) in str(err.value)


def test_the_shipped_studies_load(monkeypatch):
    monkeypatch.chdir(ROOT)
    files = sorted((ROOT / "configs" / "studies").glob("*.yaml"))
    assert files
    for f in files:
        assert S.expand(S.load_study(f))


def fake_run(run, split="test", val_iou=0.8, scores=(0.7, 0.8, 0.9), completed=True, hyperparameters=None,
             grouped=False):
    """A run folder as training and evaluation leave it."""
    folder = run.folder
    (folder / "models").mkdir(parents=True, exist_ok=True)
    json.dump({"hyperparameters": hyperparameters or run.overrides, "split_sizes": {"train": 5, "val": 2, "test": 3}},
              open(folder / "config.json", "w"))
    # grouped runs (LGG) pick best.pt on the validation volume Dice; the others left no key_metric, as runs recorded
    # before key metrics were named did, and were picked on IoU
    key = "val_volume_dice" if grouped else "val_iou"
    history = [{"epoch": 1, "epoch_s": 2.0}, {"epoch": 2, "epoch_s": 3.0, "val_iou": 0.5, key: val_iou - 0.1},
               {"epoch": 3, "epoch_s": 2.5, "val_iou": 0.5, key: val_iou}]
    best = {"epoch": 3, "val_iou": 0.5, key: val_iou, **({"key_metric": key} if grouped else {})}
    json.dump({"history": history, "best": best, "completed": completed,
               "train_seconds": 120.0, "peak_rss_gb": 1.5}, open(folder / "metrics.json", "w"))
    torch.save({"w": torch.zeros(10, 3), "bn.running_mean": torch.zeros(100)}, folder / "models" / "best.pt")
    if not completed:
        torch.save({}, folder / "models" / "last.pt")
        return
    ev = folder / S.EVAL_DIR.format(split=split)
    ev.mkdir()
    with open(ev / "per_case.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "iou", "dice", "hd95", "area_true", "area_pred"])
        for i, s in enumerate(scores):
            w.writerow([f"c{i}", s - 0.1, s, 3.0, 10, 10])
    if grouped:
        with open(ev / "per_group.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["group", "n_slices", "dice_volume", "iou_volume", "area_true", "area_pred"])
            for i, s in enumerate(scores):
                w.writerow([f"p{i}", 20, s, s - 0.2, 100, 100])
    json.dump({"summary": {"hd95": {"mean": 3.0, "median": 3.0}}, "seconds_per_case": 0.5, "synthetic": False},
              open(ev / "metrics.json", "w"))


def test_execute_skips_finished_runs_resumes_partial_ones_and_restarts_new_ones(tmp_path, monkeypatch):
    study = make_study(tmp_path)
    done, partial, new, fresh = S.expand(study)
    fake_run(done)
    fake_run(partial, completed=False)
    (new.folder / "tensorboard").mkdir(parents=True)  # killed before its first checkpoint
    calls = []

    def bundle(study, *args, log):
        calls.append([str(a) for a in args])
        return 0

    monkeypatch.setattr(S, "_bundle", bundle)
    assert S.execute(study, done) == "done" and calls == []
    S.execute(study, partial)
    assert calls[0][:2] == ["run", "training"] and calls[0][-2:] == ["--resume", "true"]
    assert calls[1][:2] == ["run", "evaluate"] and "--split" in calls[1]
    assert str(partial.folder / "models" / "best.pt") in calls[1]
    calls.clear()
    S.execute(study, new)
    assert not (new.folder / "tensorboard").exists()  # leftovers of a run with no checkpoint are not mixed in
    assert "--resume" not in calls[0] and calls[0][calls[0].index("--network") + 1] == "segnet"


def test_a_folder_trained_with_other_settings_is_not_reused(tmp_path, monkeypatch):
    study = make_study(tmp_path)
    run = S.expand(study)[0]
    fake_run(run, completed=False, hyperparameters={**run.overrides, "epochs": 50})
    monkeypatch.setattr(S, "_bundle", lambda *a, **k: pytest.fail("must not run"))
    with pytest.raises(ValueError, match="epochs=50"):
        S.execute(study, run)


def test_a_failed_run_is_reported_and_the_study_goes_on(tmp_path, monkeypatch):
    study = make_study(tmp_path)
    runs = S.expand(study)
    monkeypatch.setattr(S, "_bundle", lambda *a, **k: 3)
    assert S.execute(study, runs[0]) == "failed"
    assert "exit 3" in (runs[0].folder / "FAILED").read_text()
    rows, _ = S.collect(study)
    assert rows[0]["status"] == "failed" and rows[1]["status"] == "new"


def test_report_from_fake_run_folders(tmp_path):
    study = make_study(tmp_path)
    a, b, c, d = S.expand(study)
    fake_run(a, val_iou=0.90, scores=(0.80, 0.85, 0.90))  # best on validation: the reference
    fake_run(b, val_iou=0.70, scores=(0.60, 0.95, 0.62))
    fake_run(c, val_iou=0.80, scores=(0.90, 0.95, 1.00))
    fake_run(d, completed=False)
    rows = S.report(study)
    by = {r["run"]: r for r in rows}
    ra, rb, rc = by[a.name], by[b.name], by[c.name]
    assert ra["reference"] and ra["d_dice"] == 0
    assert rc["d_dice"] == pytest.approx(0.10) and rc["d_dice_ci_low"] == pytest.approx(0.10)
    assert rb["dice_mean"] == pytest.approx(np.mean([0.60, 0.95, 0.62])) and rb["dice_median"] == pytest.approx(0.62)
    assert rb["d_dice_ci_low"] < 0 < rb["d_dice_ci_high"]  # within noise of the reference
    assert ra["params"] == 30  # weights, not batch-norm statistics
    assert ra["epoch_s"] == 2.0 and ra["iou_mean"] == pytest.approx(0.75) and ra["unit"] == "image"
    assert by[d.name]["status"] == "partial" and "dice_mean" not in by[d.name]

    table = list(csv.DictReader(open(study.root / "results.csv")))
    assert [t["run"] for t in table] == [a.name, b.name, c.name, d.name]
    assert float(table[2]["dice_mean"]) == pytest.approx(0.95)
    md = (study.root / "results.md").read_text()
    assert "★ reference" in md and "Not complete (1)" in md and "SYNTHETIC" not in md
    table_rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert table_rows[0].startswith("| segnet | 0.001 |") and "★ reference" in table_rows[1]  # by test Dice
    assert (study.root / "val_curves.png").stat().st_size > 1000
    assert (study.root / "test_scores.png").stat().st_size > 1000
    events = list((study.root / "hparams").rglob("events.out.tfevents*"))
    assert len(events) >= 3


def test_grouped_data_are_scored_per_patient(tmp_path):
    study = make_study(tmp_path, grid={"network": ["unet"]})
    run = S.expand(study)[0]
    fake_run(run, scores=(0.2, 0.4, 0.9), grouped=True)
    row = S.report(study)[0]
    assert row["unit"] == "patient" and row["n_test"] == 3
    assert row["dice_mean"] == pytest.approx(0.5) and row["iou_mean"] == pytest.approx(0.3)
    assert "per patient" in (study.root / "results.md").read_text()


def test_tiny_real_grid_end_to_end(tmp_path, caplog, monkeypatch):
    """Two real runs (Dice loss with a sigmoid head, two-class CE with a softmax head), 1 epoch each on synthetic
    PH2; a second call skips both."""
    data = tmp_path / "PH2Dataset"
    path = write_study(tmp_path, f"""
name: tiny
bundle: bundles/ph2.json
output_dir: {tmp_path / 'study'}
fixed: {{epochs: 1, val_interval: 1, batch_size: 4, width: 8, image_size: 64, roi_size: [64, 64],
        dataset_dir: {data}, default_dataset_dir: {data}, synthetic_dir: {tmp_path / 'syn' / 'PH2Dataset'},
        synthetic_cases: 10}}
grid:
  loss: [dice, ce]
""")
    monkeypatch.chdir(ROOT)
    assert S.main([str(path)]) == 0  # in process; each run is its own ``python -m monai.bundle`` as always
    root = tmp_path / "study"
    rows = list(csv.DictReader(open(root / "results.csv")))
    assert [r["status"] for r in rows] == ["done", "done"] and [r["loss"] for r in rows] == ["dice", "ce"]
    assert all(0 <= float(r["dice_mean"]) <= 1 and float(r["train_s"]) > 0 for r in rows)
    assert int(rows[1]["params"]) > int(rows[0]["params"])  # the two-channel head
    assert "SYNTHETIC" in (root / "results.md").read_text()
    ce_config = json.loads((root / "loss=ce" / "config.json").read_text())
    assert ce_config["hyperparameters"]["out_channels"] == 2
    best = root / "loss=dice" / "models" / "best.pt"
    stamp = best.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.bench.study"):
        assert S.main([str(path)]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "loss=dice" in said and "training" not in said.replace("train.log", "")
    assert best.stat().st_mtime_ns == stamp


def test_cross_validation_folds_are_pooled(tmp_path):
    study = make_study(tmp_path, grid={"network": ["unet", "segnet"], "fold": [0, 1]})
    study.pool = "fold"
    runs = {r.name: r for r in S.expand(study)}
    fake_run(runs["network=unet,fold=0"], val_iou=0.9, scores=(0.8, 0.9), grouped=True)
    fake_run(runs["network=unet,fold=1"], val_iou=0.8, scores=(0.6, 0.7), grouped=True)
    fake_run(runs["network=segnet,fold=0"], val_iou=0.7, scores=(0.5, 0.5), grouped=True)
    for r in list(runs.values())[:3]:  # folds test different patients
        f = r.folder / "eval-test" / "per_group.csv"
        f.write_text(f.read_text().replace("p0", f"p0-{r.name[-1]}").replace("p1", f"p1-{r.name[-1]}"))
    S.report(study)
    pooled = list(csv.DictReader(open(study.root / "results_pooled.csv")))
    assert [p["run"] for p in pooled] == ["network=unet"]  # segnet's fold 1 is missing: not pooled
    assert int(pooled[0]["n_test"]) == 4 and float(pooled[0]["dice_mean"]) == pytest.approx(0.75)
    assert pooled[0]["val_metric"] == "val_volume_dice" and float(pooled[0]["val_score"]) == pytest.approx(0.85)
    md = (study.root / "results.md").read_text()
    assert "## Pooled over `fold`" in md and "| val volume Dice |" in md and "(best validation volume Dice)" in md
