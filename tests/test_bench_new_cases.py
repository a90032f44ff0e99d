"""The new-cases bench: outer folds that deal every case (patient) out once as new, folders of links in the dataset's
layout that list exactly their cases, and one outer fold run end to end, both arms scored on the same new cases."""
import json
import os

import pytest
import torch

from pipeline.bench import new_cases
from pipeline.data import find_cases
from pipeline.data.synthetic import write_dsb2018, write_lgg, write_ph2

WRITERS = {"ph2": (write_ph2, 10), "dsb2018": (write_dsb2018, 10), "lgg": (write_lgg, 6)}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_every_case_is_new_in_exactly_one_outer_fold_and_whole_patients_move_together(layout, tmp_path):
    write, n = WRITERS[layout]
    root = write(tmp_path / "data", n_cases=n)
    everything = {c["case_id"]: str(c.get("group", c["case_id"])) for c in find_cases(layout, root)}
    new_in = {}
    for k in range(3):
        parts = new_cases.outer_split(layout, str(root), 3, k, 0, {}, tmp_path / f"outer_{k}")
        seen, new = ({c["case_id"] for c in parts[s]} for s in ("seen", "new"))
        assert seen | new == set(everything) and not seen & new
        assert not {everything[c] for c in seen} & {everything[c] for c in new}  # no patient on both sides
        for c in new:
            new_in.setdefault(c, []).append(k)
        for side in ("seen", "new"):  # the linked folder reads as the dataset, with only its cases, nothing copied
            folder = tmp_path / f"outer_{k}" / side
            assert {c["case_id"] for c in find_cases(layout, folder)} == {c["case_id"] for c in parts[side]}
            assert all(os.path.islink(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)
    assert sorted(new_in) == sorted(everything) and all(len(v) == 1 for v in new_in.values())


def test_a_case_outside_a_folder_named_for_it_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="one folder per case"):
        new_cases.case_folder({"image": str(tmp_path / "img.png"), "case_id": "a"}, tmp_path)


@pytest.fixture(scope="module")
def one_outer_fold(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("new_cases")
    data = write_ph2(tmp / "PH2Dataset", n_cases=12, seed=3)
    args = ["--config_file", "bundles/ph2.json", "--dataset_dir", str(data), "--output_dir", str(tmp / "out"),
            "--outer_folds", "3", "--folds", "2", "--only", "0", "--plain_size", "32", "--out", str(tmp / "report.md"),
            "--epochs", "2", "--val_interval", "1", "--width", "4", "--image_size", "64", "--roi_size", "[64,64]",
            "--batch_size", "2"]
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(__file__)))  # bundles/ is read from the repository root, as by users
    try:
        new_cases.main(args)
    finally:
        os.chdir(cwd)
    return {"tmp": tmp, "args": args, "res": json.loads((tmp / "out" / "new_cases.json").read_text())}


def test_both_arms_score_the_new_cases_of_the_outer_fold_and_only_those(one_outer_fold):
    tmp, res = one_outer_fold["tmp"], one_outer_fold["res"]
    new = {c["case_id"] for c in find_cases("ph2", tmp / "out" / "outer_0" / "new")}
    cv = json.loads((tmp / "out" / "outer_0" / "cv" / "crossval.json").read_text())
    assert set(cv["oof_score"]["per_unit"]) == {c["case_id"] for c in find_cases("ph2", tmp / "out" / "outer_0" / "seen")}
    assert not set(cv["oof_score"]["per_unit"]) & new  # the cross-validation never saw a new case
    assert res["finished"] == [0] and res["bundle"]["n"] == res["plain"]["n"] == res["difference"]["n"] == len(new)
    assert res["per_fold"][0]["n_seen"] == 12 - len(new) and res["per_fold"][0]["oof"] == cv["oof_score"]["mean"]
    assert res["plain_params"]["val_interval"] == res["plain_params"]["epochs"] == 2  # the last epoch, no val side
    report = (tmp / "report.md").read_text()
    assert report.startswith(new_cases.TITLE) and "Outer folds finished: 0 of 3 (still to run: 1, 2" in report
    assert f"    OMP_NUM_THREADS={torch.get_num_threads()} python -m pipeline.bench.new_cases --config_file" in report
    assert f"| bundle: cross-validation ensemble, choices out-of-fold | {len(new)} |" in report
    # the third arm: the same fold models without post-processing, scored on the same new cases
    raw = json.loads((tmp / "out" / "outer_0" / "eval-new-unprocessed" / "config.json").read_text())["hyperparameters"]
    assert raw["keep_largest_component"] is False and raw["fill_holes"] is False and raw["threshold"] == 0.5
    assert raw["flip_tta"] == cv["chosen"]["flip_tta"] and raw["rot90_tta"] == cv["chosen"]["rot90_tta"]
    assert res["unprocessed"]["n"] == res["postprocessing"]["n"] == len(new)
    assert f"| the same ensemble without the post-processing chosen out-of-fold | {len(new)} |" in report
    # rescoring the saved 8-bit probabilities moves only pixels within 1/510 of the threshold
    assert res["rescored_max_abs_diff"] < 0.005


def test_a_rerun_reuses_every_finished_step(one_outer_fold, monkeypatch):
    monkeypatch.setattr(new_cases, "plain_on", lambda *a, **k: pytest.fail("the plain loop was trained again"))
    monkeypatch.setattr(new_cases, "_run", lambda cmd, what: pytest.fail(f"{what} was run again"))
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(__file__)))
    try:
        new_cases.main(one_outer_fold["args"])
    finally:
        os.chdir(cwd)
    res = json.loads((one_outer_fold["tmp"] / "out" / "new_cases.json").read_text())
    assert res["bundle"] == one_outer_fold["res"]["bundle"] and res["plain"] == one_outer_fold["res"]["plain"]


def _fold(k, chosen, bundle, unprocessed, without):
    return {"fold": k, "unit": "image", "metric": "iou", "bundle": bundle, "plain": {u: 0.5 for u in bundle},
            "n_seen": 8, "oof": 0.8, "chosen": chosen, "bundle_train_s": 60, "plain_train_s": 30,
            "plain_params": {}, "network": "unet", "threads": 2, "machines": [None], "unprocessed": unprocessed,
            "rescored": bundle, "without": without}


def test_each_post_processing_step_is_judged_on_the_outer_folds_that_chose_it():
    base = {"checkpoint": "best.pt", "flip_tta": True, "rot90_tta": False, "threshold": 0.5, "min_lesion_size": 0,
            "fill_holes": False}
    folds = [_fold(0, {**base, "keep_largest_component": True}, {"a": 0.9, "b": 0.8},
                   {"a": 0.7, "b": 0.85}, {"keep_largest_component": {"a": 0.7, "b": 0.85}}),
             _fold(1, {**base, "keep_largest_component": False, "fill_holes": True}, {"c": 0.6, "d": 0.6},
                   {"c": 0.6, "d": 0.5}, {"fill_holes": {"c": 0.6, "d": 0.5}})]
    res = new_cases.report(folds, 2)
    lcc, holes = res["steps"]["keep_largest_component"], res["steps"]["fill_holes"]
    assert lcc["folds"] == [0] and lcc["n"] == 2 and lcc["better"] == 1 and lcc["worse"] == 1
    assert lcc["mean"] == pytest.approx((0.2 - 0.05) / 2)
    assert holes["folds"] == [1] and holes["n"] == 2 and holes["better"] == 1 and holes["worse"] == 0
    pp = res["postprocessing"]
    assert pp["n"] == 4 and pp["better"] == 2 and pp["worse"] == 1
    assert pp["mean"] == pytest.approx((0.2 - 0.05 + 0 + 0.1) / 4)
    text = new_cases.markdown("ph2", res, ["cmd"])
    assert "| keep_largest_component | True (0) | 2 | +0.0750 |" in text and "| fill_holes | True (1) | 2 |" in text


def test_an_arm_that_scored_other_cases_is_an_error(one_outer_fold, monkeypatch):
    real = new_cases.unprocessed

    def one_short(*args, **kwargs):
        out = real(*args, **kwargs)
        out["unprocessed"] = dict(list(out["unprocessed"].items())[1:])
        return out

    monkeypatch.setattr(new_cases, "unprocessed", one_short)
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(__file__)))
    try:
        with pytest.raises(SystemExit, match="without post-processing .* remove .*eval-new-unprocessed"):
            new_cases.main(one_outer_fold["args"])
    finally:
        os.chdir(cwd)
