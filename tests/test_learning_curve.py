"""The learning-curve report: known answers on hand-made cross-validation folders (no training)."""
import json
import math

import pytest

from pipeline.bench import learning_curve as lc
from pipeline.bundles import file_values


def fake_cv(path, fraction, train_cases, per_unit, epochs=100, val=(0.5, 0.7, 0.8, 0.8), invert=True):
    path.mkdir(parents=True)
    scores = list(per_unit.values())
    doc = {"folds": 2, "overrides": {"dataset_dir": "d", "train_fraction": fraction}, "chosen": {},
           "oof_score": {"metric": "iou", "unit": "image", "n": len(scores), "mean": sum(scores) / len(scores),
                         "median": sorted(scores)[len(scores) // 2], "ci": [0.0, 1.0], "per_unit": per_unit}}
    (path / "crossval.json").write_text(json.dumps(doc))
    for k in range(2):
        fold = path / f"fold_{k}"
        fold.mkdir()
        hp = {"train_fraction": fraction, "epochs": epochs, "key_metric": "val_iou", "dataset_dir": "d",
              "invert_bright_background": invert, "roi_size": [256, 256]}
        (fold / "config.json").write_text(json.dumps({"hyperparameters": hp}))
        groups = [f"p{i}" for i in range(train_cases)]  # one patient of 3 slices per training unit
        (fold / "splits.json").write_text(json.dumps({"train": [f"{g}_{s}" for g in groups for s in range(3)],
                                                      "groups": {"train": groups}}))
        history = [{"epoch": e, "val_iou": v + 0.01 * k} for e, v in zip((25, 50, 75, 100), val)]
        (fold / "metrics.json").write_text(json.dumps({"train_seconds": 60.0, "history": history}))
    return path


def test_line_per_doubling_and_cases_for_target(tmp_path):
    units = [f"c{i}" for i in range(10)]
    quarter = lc.read_point(fake_cv(tmp_path / "a", 0.25, 10, {u: 0.6 for u in units}))
    half = lc.read_point(fake_cv(tmp_path / "b", 0.5, 20, {u: 0.7 for u in units}))
    full = lc.read_point(fake_cv(tmp_path / "c", 1.0, 40, {u: 0.8 if i < 9 else 0.7 for i, u in enumerate(units)}))
    res = lc.report([full, quarter, half], target=0.89)
    assert [p["fraction"] for p in res["points"]] == [0.25, 0.5, 1.0]
    assert res["steps"][0]["mean"] == pytest.approx(0.1) and res["steps"][0]["better"] == 10
    assert res["steps"][1]["better"] == 9 and res["steps"][1]["n"] == 10
    # means 0.6, 0.7, 0.79 at 10, 20, 40 cases: slope 0.095 per doubling
    assert res["slope_per_doubling"] == pytest.approx(0.095)
    assert res["cases_for_target"] == pytest.approx(2 ** ((0.89 - res["intercept"]) / 0.095))
    assert 40 * 2 < res["cases_for_target"] < 40 * 4
    # epoch curve: the folds' mean at each validated epoch; the last quarter gained nothing
    assert res["epoch_curve"][0] == (25, pytest.approx(0.505))
    assert res["epoch_marks"][1.0][1] - res["epoch_marks"][0.75][1] == pytest.approx(0.0)
    text = lc.markdown("ph2", res, ["cmd"], None)
    assert "more epochs are not the lever" in text and "| 0.25 | 10.0 (10..10) | 100 | 0.600 |" in text


def test_flat_curve_names_no_data_lever(tmp_path):
    units = {f"c{i}": 0.7 for i in range(4)}
    pts = [lc.read_point(fake_cv(tmp_path / str(f), f, n, units)) for f, n in ((0.5, 10), (1.0, 20))]
    res = lc.report(pts, target=0.9)
    assert res["cases_for_target"] == math.inf
    assert "not shown to reach" in lc.markdown("dsb2018", res, ["cmd"], None)


def test_points_scale_epochs_to_equal_steps_and_unfinished_points_are_refused(tmp_path):
    cmd = lc.cv_command("bundles/dsb2018.json", "data", 0.25, 100, 5, tmp_path / "x")
    assert cmd[cmd.index("--epochs") + 1] == "400" and cmd[cmd.index("--val_interval") + 1] == "20"
    assert cmd[cmd.index("--train_fraction") + 1] == "0.25"
    assert "--train_fraction" not in lc.cv_command("bundles/dsb2018.json", "data", 1.0, 100, 5, tmp_path / "y")
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "crossval.json").write_text(json.dumps({"folds": 2}))
    with pytest.raises(SystemExit, match="not finished"):
        lc.read_point(tmp_path / "z")


def test_bundle_overrides_reach_every_point_and_a_point_made_otherwise_is_refused(tmp_path):
    over = lc.bench_overrides(["--invert_bright_background", "false", "--roi_size", "[384,384]"])
    assert over == {"invert_bright_background": False, "roi_size": [384, 384]}
    cmd = lc.cv_command("bundles/dsb2018.json", "data", 0.5, 100, 5, tmp_path / "x", overrides=over)
    assert cmd[cmd.index("--invert_bright_background") + 1] == "False" and cmd[-2:] == ["--output_dir",
                                                                                     str(tmp_path / "x")]
    with pytest.raises(SystemExit, match="are set by the bench"):
        lc.bench_overrides(["--epochs", "300"])
    with pytest.raises(SystemExit, match="--id value pairs"):
        lc.bench_overrides(["--invert_bright_background"])
    units = {f"c{i}": 0.7 for i in range(4)}
    pts = [lc.read_point(fake_cv(tmp_path / str(f), f, n, units)) for f, n in ((0.5, 10), (1.0, 20))]
    stated = file_values("bundles/dsb2018.json")  # its default inverts bright backgrounds, as the points did
    lc.check_same_settings(pts, stated)  # only the settings the bench sets per point differ
    with pytest.raises(SystemExit, match=r"invert_bright_background=True \(the bench asks for False\)"):
        lc.check_same_settings(pts, {**stated, **over})
    with pytest.raises(SystemExit, match=r"roi_size=\[256, 256\] \(the bench asks for \[384, 384\]\)"):
        lc.check_same_settings(pts, {**stated, "roi_size": [384, 384]})
    main_cli = ["--config_file", "bundles/dsb2018.json", "--dataset_dir", "d", "--full", str(tmp_path / "1.0"),
                "--root", str(tmp_path), "--fractions", "0.5"]
    (tmp_path / "dsb2018-train0.5").symlink_to(tmp_path / "0.5")  # both points exist: nothing is trained
    with pytest.raises(SystemExit, match=r"train0\.5 was made with invert_bright_background=True"):
        lc.main(main_cli + ["--invert_bright_background", "false"])
    lc.main(main_cli + ["--invert_bright_background", "true"])  # restating a default is the same recipe


def test_a_point_made_before_a_default_changed_matches_when_the_old_value_is_pinned(tmp_path):
    units = {f"c{i}": 0.7 for i in range(4)}
    old = [lc.read_point(fake_cv(tmp_path / str(f), f, n, units, invert=False)) for f, n in ((0.5, 10), (1.0, 20))]
    stated = file_values("bundles/dsb2018.json")
    with pytest.raises(SystemExit, match="invert_bright_background=False"):
        lc.check_same_settings(old, stated)
    lc.check_same_settings(old, {**stated, "invert_bright_background": False})
    # a folder made with `--invert_bright_background true` records fire's string "true": the same value as True
    typed = [lc.read_point(fake_cv(tmp_path / f"typed{f}", f, n, units, invert="true")) for f, n in ((0.5, 10), (1.0, 20))]
    lc.check_same_settings(typed, {**stated, "invert_bright_background": True})
    with pytest.raises(SystemExit, match="invert_bright_background='true' \\(the bench asks for False\\)"):
        lc.check_same_settings(typed, {**stated, "invert_bright_background": False})
