"""Cross-validation (``run cross_validation``): folds over all cases, out-of-fold probabilities, choices kept only
where they raise the out-of-fold mean, and the folder used as one ensemble model by evaluate and inference."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from conftest import error_chain, run_bundle, run_in_process
from pipeline import crossval
from pipeline.data import ph2
from pipeline.data.synthetic import write_ph2


def _disc(h=40, w=40, r=10, cy=20, cx=20):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _variant(folder, cases, groups=None):
    """An out-of-fold folder as evaluate writes it with --save_probabilities true (``groups``: case id -> (group,
    slice) for a sliced layout)."""
    (folder / "probabilities").mkdir(parents=True)
    (folder / "truth").mkdir()
    with open(folder / "probabilities" / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id", "group", "slice"])
        w.writeheader()
        for cid, prob, truth in cases:
            Image.fromarray(prob.astype(np.uint8)).save(folder / "probabilities" / f"{cid}.png")
            Image.fromarray(truth.astype(np.uint8) * 255).save(folder / "truth" / f"{cid}.png")
            group, k = (groups or {}).get(cid, (cid, ""))
            w.writerow({"case_id": cid, "group": group, "slice": k})
    return folder


def test_choices_are_kept_only_where_they_raise_the_out_of_fold_mean(tmp_path):
    truth = _disc()
    good, worse = [], []
    for k in range(6):
        prob = np.where(truth, 150, 20)  # 0.59 inside: a threshold of 0.6 or 0.7 loses the lesion
        prob[18:23, 18:23] = 20  # a hole the truth does not have
        if k % 2:
            prob[2:5, 2:5] = 150  # a 9-pixel blob away from the lesion
        good.append((f"c{k}", prob, truth))
        worse.append((f"c{k}", np.where(_disc(r=6), 150, 20), truth))
    variants = {("best.pt", False, False): [_variant(tmp_path / "b0", good)],
                ("best.pt", True, False): [_variant(tmp_path / "b1", worse)],
                ("last.pt", False, False): [_variant(tmp_path / "l0", worse)],
                ("last.pt", True, False): [_variant(tmp_path / "l1", worse)],
                ("best.pt", False, True): [_variant(tmp_path / "r", worse)],
                ("last.pt", False, True): None}  # never asked for: rot90 is tried on the chosen pair only
    asked = []
    doc = crossval.choose(lambda *key: asked.append(key) or variants[key], grouped=False)
    assert ("last.pt", False, True) not in asked and len(asked) == len(set(asked)) == 4
    chosen = doc["chosen"]
    assert chosen["checkpoint"] == "best.pt" and chosen["flip_tta"] is False and chosen["rot90_tta"] is False
    assert chosen["threshold"] in (0.3, 0.4, 0.5) and chosen["fill_holes"] is True
    # the blob goes by the minimum size (tried first); the largest component then adds nothing and is not kept
    assert chosen["min_lesion_size"] == 16 and chosen["keep_largest_component"] is False
    assert doc["oof_score"]["mean"] == pytest.approx(1.0) and doc["oof_score"]["n"] == 6
    as_cases = [{"case_id": cid, "truth": t} for cid, _, t in good]
    raw = np.mean(list(crossval._scores(as_cases, [p >= 128 for _, p, _ in good], grouped=False).values()))
    assert doc["oof_score"]["mean"] > raw  # the chosen post-processing is what raised it
    kept = {(t["setting"], t["value"]) for t in doc["trials"] if t["kept"]}
    assert kept == {("min_lesion_size", 16), ("fill_holes", True)} | (
        {("threshold", chosen["threshold"])} if chosen["threshold"] != 0.5 else set())
    assert all(t["change"] <= 0 for t in doc["trials"] if t["setting"] in ("checkpoint", "flip_tta", "rot90_tta"))


@pytest.mark.parametrize("missed_pixels, kept", [(1, False), (400, True)])
def test_a_rise_within_min_gain_is_a_tie_that_keeps_the_setting_in_place(tmp_path, missed_pixels, kept):
    """``last.pt`` finds a large lesion whole where ``best.pt`` misses some pixels of it in one case of six: one pixel
    raises the mean IoU by about 0.000015 (a tie, best.pt stays), 400 by about 0.006 (last.pt is kept)."""
    truth = _disc(160, 160, r=60, cy=80, cx=80)  # 11,300 px
    whole = [(f"c{k}", np.where(truth, 200, 10), truth) for k in range(6)]
    missing = np.where(truth, 200, 10)
    missing.reshape(-1)[np.flatnonzero(truth)[:missed_pixels]] = 10
    best = [("c0", missing, truth)] + whole[1:]
    variants = {("best.pt", False, False): [_variant(tmp_path / "b", best)],
                ("last.pt", False, False): [_variant(tmp_path / "l", whole)]}
    doc = crossval.choose(variants, grouped=False)
    trial = next(t for t in doc["trials"] if t["setting"] == "checkpoint")
    assert trial["change"] > 0 and (trial["change"] > crossval.MIN_GAIN) is kept
    assert trial["kept"] is kept and doc["chosen"]["checkpoint"] == ("last.pt" if kept else "best.pt")
    assert doc["min_gain"] == crossval.MIN_GAIN


def test_the_largest_3d_component_is_tried_per_patient_volume(tmp_path):
    """A tumour across two slices and a false blob alone on a third: per slice the blob is its slice's largest
    component, in 3D it is not, so only the volume's largest component removes it (and raises the volume Dice)."""
    # the blob (1,134 px) outgrows every minimum size tried but the largest, which would take the tumour (1,017 px)
    tumour = _disc(80, 80, r=18, cy=20, cx=20)
    blob, empty = _disc(80, 80, r=19, cy=60, cx=60), np.zeros((80, 80), bool)
    cases, groups = [], {}
    for p in ("p1", "p2"):
        for k, (truth, pred) in enumerate([(tumour, tumour), (tumour, tumour), (empty, blob)]):
            cases.append((f"{p}_{k}", np.where(pred, 200, 10), truth))
            groups[f"{p}_{k}"] = (p, str(k + 1))
    folders = [_variant(tmp_path / "v", cases, groups)]
    doc = crossval.choose(lambda *key: folders, grouped=True)
    trial = [t for t in doc["trials"] if t["setting"] == "volume_largest_component"]
    assert len(trial) == 1 and trial[0]["kept"] and doc["chosen"]["volume_largest_component"] is True
    assert doc["oof_score"]["unit"] == "patient" and doc["oof_score"]["mean"] == pytest.approx(1.0)
    assert doc["chosen"]["min_lesion_size"] == 0
    assert "volume_largest_component" not in crossval.choose(lambda *key: folders, grouped=False)["chosen"]


def test_grouped_scores_are_per_volume_dice():
    t = _disc()
    cases = [{"case_id": "a_1", "group": "a", "truth": t}, {"case_id": "a_2", "group": "a", "truth": np.zeros_like(t)}]
    masks = [t, t]  # the second slice predicts a lesion where there is none
    dice = crossval._scores(cases, masks, grouped=True)["a"]
    n = t.sum()
    assert dice == pytest.approx(2 * n / (2 * n + n))


@pytest.fixture(scope="module")
def cross_validated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    data = write_ph2(tmp / "PH2Dataset", n_cases=8, seed=3)
    cv = tmp / "cv"
    args = ["run", "cross_validation", "--config_file", "bundles/ph2.json", "--dataset_dir", data, "--folds", 2,
            "--epochs", 2, "--val_interval", 1, "--width", 4, "--image_size", 64, "--roi_size", "[64,64]",
            "--batch_size", 2, "--output_dir", cv]
    first = run_bundle(*args, timeout=900)
    return {"data": data, "cv": cv, "args": args, "log": first.stdout + first.stderr}


def test_cross_validation_tests_every_case_once_and_records_its_choices(cross_validated):
    cv = cross_validated["cv"]
    doc = json.loads((cv / "crossval.json").read_text())
    assert doc["folds"] == 2  # PH2 is not grouped: every setting but the volume's largest component is chosen
    assert set(doc["chosen"]) == set(crossval.START) - {"volume_largest_component"}
    tested = [json.loads((cv / f"fold_{k}" / "splits.json").read_text())["test"] for k in range(2)]
    cases = sorted(p.name for p in (cross_validated["data"] / "PH2 Dataset images").iterdir())
    assert sorted(tested[0] + tested[1]) == cases and not set(tested[0]) & set(tested[1])
    for k in range(2):  # each fold trained and validated away from its own test fold
        split = json.loads((cv / f"fold_{k}" / "splits.json").read_text())
        assert not set(split["train"] + split["val"]) & set(split["test"]) and split["val"]
    assert sorted(p.stem for p in (cv / "oof" / "masks").iterdir()) == cases
    assert sorted(p.stem for p in (cv / "oof" / "probabilities").iterdir()) == cases
    s = doc["oof_score"]
    assert s["n"] == len(cases) and s["ci"][0] <= s["mean"] <= s["ci"][1]
    assert s["mean"] == pytest.approx(np.mean(list(s["per_unit"].values())))


def test_saved_probabilities_reproduce_the_evaluation(cross_validated):
    """The 8-bit probabilities, thresholded and post-processed as the fold run was evaluated, give the IoU its
    evaluation wrote per case (so the choices are made on what the engine does)."""
    for k in range(2):
        folder = cross_validated["cv"] / f"fold_{k}" / "oof-best-tta0"
        hyper = json.loads((folder / "config.json").read_text())["hyperparameters"]
        cases = crossval.load_predictions([folder])
        ours = crossval.post_scores(cases, hyper, grouped=False)
        engine = {r["case_id"]: float(r["iou"]) for r in csv.DictReader(open(folder / "per_case.csv"))}
        assert ours.keys() == engine.keys()
        assert max(abs(ours[c] - engine[c]) for c in ours) < 0.02  # 8-bit quantisation of p near the threshold


def test_a_second_run_skips_the_finished_folds(cross_validated):
    record = cross_validated["cv"] / "crossval.json"
    chosen = json.loads(record.read_text())["chosen"]
    # as if the folder had been chosen by an earlier rule: the rerun makes the choices again and says what changed
    record.write_text(json.dumps({**json.loads(record.read_text()),
                                  "chosen": {**chosen, "fill_holes": not chosen["fill_holes"]}}))
    again = run_bundle(*cross_validated["args"], timeout=600)
    doc = json.loads(record.read_text())
    assert doc["fold_runs"] == {"0": "done", "1": "done"} and doc["chosen"] == chosen
    assert "training (new)" not in again.stdout + again.stderr
    assert f"fill_holes {not chosen['fill_holes']} -> {chosen['fill_holes']}" in again.stdout + again.stderr


def test_other_settings_for_an_existing_folder_are_an_error(cross_validated):
    args = [a if a != 4 else 8 for a in cross_validated["args"]]  # --width 8
    proc = run_bundle(*args, check=False, timeout=300)
    assert proc.returncode != 0 and "Give another --output_dir" in (proc.stdout + proc.stderr).splitlines()[-1]


def test_a_folder_continues_with_the_values_it_was_trained_with_however_they_are_stated(tmp_path):
    """Compared as values with fold 0's record: a bundle default changed since the folder was made is refused, and
    pinning the old value on the command line continues it; settings that change nothing learnt are not compared."""
    (tmp_path / "fold_0").mkdir()
    recorded = {"invert_bright_background": False, "epochs": 100, "fold": 0, "output_dir": "x", "cache": "memory"}
    (tmp_path / "fold_0" / "config.json").write_text(json.dumps({"hyperparameters": recorded}))
    doc = {"folds": 5, "overrides": {}}
    today = {"invert_bright_background": True, "epochs": 100, "fold": None, "output_dir": "y", "cache": "disk"}
    with pytest.raises(SystemExit, match=r"invert_bright_background=False \(this command: True\)\. Give another"):
        crossval.check_resumable(tmp_path, doc, 5, {}, today)
    crossval.check_resumable(tmp_path, doc, 5, {"invert_bright_background": False},
                             {**today, "invert_bright_background": False})
    with pytest.raises(SystemExit, match="folds=5; this command asks for folds=3"):
        crossval.check_resumable(tmp_path, doc, 3, {}, {**today, "invert_bright_background": False})
    (tmp_path / "fold_0" / "config.json").unlink()  # no fold has started: only the overrides can be compared
    crossval.check_resumable(tmp_path, doc, 5, {}, today)
    with pytest.raises(SystemExit, match=r"overrides \{\}; this command asks for \{'epochs': 3\}"):
        crossval.check_resumable(tmp_path, doc, 5, {"epochs": 3}, today)


def test_the_folder_evaluates_as_an_ensemble_with_its_chosen_settings(cross_validated, tmp_path):
    cv = cross_validated["cv"]
    chosen = json.loads((cv / "crossval.json").read_text())["chosen"]
    run_in_process("evaluate", ckpt=cv, dataset_dir=cross_validated["data"], split="all", output_dir=tmp_path / "e")
    hyper = json.loads((tmp_path / "e" / "config.json").read_text())["hyperparameters"]
    assert {k: hyper[k] for k in chosen if k != "checkpoint"} == {
        k: v for k, v in chosen.items() if k != "checkpoint"}
    assert hyper["width"] == 4 and hyper["image_size"] == 64  # restored from the folds' record
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["n_cases"] == 8
    # what a user (and an outside scorer) gets: inference's masks, scored with numpy alone, give evaluate's scores
    run_in_process("inference", ckpt=cv, input_dir=cross_validated["data"], output_dir=tmp_path / "i")
    scored = {r["case_id"]: float(r["iou"]) for r in csv.DictReader(open(tmp_path / "e" / "per_case.csv"))}
    for case in ph2.find_cases(cross_validated["data"]):
        pred = np.asarray(Image.open(tmp_path / "i" / "masks" / f"{case['case_id']}.png")) > 127
        truth = np.asarray(Image.open(case["label"]).convert("L")) > 127
        union = (pred | truth).sum()
        iou = (pred & truth).sum() / union if union else 1.0
        assert iou == pytest.approx(scored[case["case_id"]], abs=1e-6), case["case_id"]
    assert 0 < np.mean(list(scored.values())) < 1


def test_the_accuracy_report_scores_the_plain_loop_on_the_same_folds(cross_validated):
    from pipeline.bench import accuracy

    cv = cross_validated["cv"]
    res = accuracy.report(cv, epochs=1, size=32)
    with pytest.MonkeyPatch.context() as mp:  # a second report reuses the fold results: it trains nothing
        mp.setattr(accuracy, "plain_fold", lambda *a, **k: pytest.fail("the plain loop was trained again"))
        assert accuracy.report(cv, epochs=1, size=32)["plain"] == res["plain"]
    assert res["bundle"]["n"] == res["plain"]["n"] == res["difference"]["n"] == 8
    both = accuracy.report([cv, cv], epochs=1, size=32)  # two runs per arm: averaged per case, listed per run
    assert both["runs"] == 2 and len(both["per_run"]) == 2 and both["bundle"]["mean"] == pytest.approx(
        res["bundle"]["mean"]) and "2 runs per arm" in accuracy.markdown(both, "x")
    # the table's wall time of several runs is their sum, and says so; each run's own is listed with its scores
    assert both["bundle_train_s"] == pytest.approx(2 * res["bundle_train_s"], abs=0.2)
    assert "(sum of 2 runs)" in accuracy.markdown(both, "x") and "(sum of" not in accuracy.markdown(res, "x")
    assert f"({res['bundle_train_s'] / 60:.0f} / {res['plain_train_s'] / 60:.0f} min)" in accuracy.markdown(both, "x")
    tested = {cid for k in range(2) for cid in json.loads((cv / "plain" / f"fold_{k}.json").read_text())["test"]}
    assert tested == set(json.loads((cv / "crossval.json").read_text())["oof_score"]["per_unit"])
    text = accuracy.markdown(res, "python -m pipeline.bench.accuracy --cv X")
    assert f"{res['bundle']['mean']:.3f}" in text and f"{res['plain']['mean']:.3f}" in text
    # one file for the three bundles: a section is replaced in place, the others kept, in PH2, LGG, DSB2018 order
    other = text.replace("## ph2:", "## dsb2018:").replace(f"{res['plain']['mean']:.3f}", "0.123")
    doc = accuracy.merged(accuracy.merged("", other), text)
    assert doc.startswith(accuracy.TITLE) and doc.index("## ph2:") < doc.index("## dsb2018:")
    assert accuracy.merged(doc, text) == doc and "0.123" in doc
    link = cv.parent / "linked_cv"  # a symlinked runs/ keeps its own path in the regenerate commands
    link.symlink_to(cv, target_is_directory=True)
    assert accuracy.cv_command(accuracy.report(link, epochs=1, size=32)).endswith(f"--output_dir {os.path.relpath(link)}")
    # the folds' own thread count (it sets the float summation order) leads each regenerate command
    threads = json.loads((cv / "fold_0" / "config.json").read_text())["provenance"]["host"]["torch_threads"]
    assert threads >= 1 and all(c.startswith(f"OMP_NUM_THREADS={threads} python -m monai.bundle run cross_validation")
                                for c in accuracy.cv_commands(both))
    # the closing line names the machine the folds recorded, not the one writing the report
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(accuracy, "recorded_host", lambda d: {"platform": "Linux-folds", "cpus": 2, "torch_threads": 7})
        last = accuracy.markdown(accuracy.report(cv, epochs=1, size=32), "x").rstrip().splitlines()[-1]
    assert last.startswith("Machines: Linux-folds, 2 CPUs, 7 torch threads; ")  # and the plain loop's, this process


def test_a_list_of_checkpoints_infers_as_the_folder_does(cross_validated, tmp_path):
    cv = cross_validated["cv"]
    chosen = json.loads((cv / "crossval.json").read_text())["chosen"]
    ckpts = ",".join(str(cv / f"fold_{k}" / "models" / chosen["checkpoint"]) for k in range(2))
    run_in_process("inference", ckpt=cv, input_dir=cross_validated["data"], output_dir=tmp_path / "folder")
    settings = {k: v for k, v in chosen.items() if k != "checkpoint"}
    run_in_process("inference", ckpt=ckpts, input_dir=cross_validated["data"], output_dir=tmp_path / "list",
                   override_recorded=True, **settings)
    masks = sorted((tmp_path / "folder" / "masks").glob("*.png"))
    assert len(masks) == 8
    for m in masks:
        a, b = np.asarray(Image.open(m)), np.asarray(Image.open(tmp_path / "list" / "masks" / m.name))
        np.testing.assert_array_equal(a, b)
    # every case was seen in training by one of the two members: nothing is left to score honestly
    with pytest.raises(Exception) as err:
        run_in_process("evaluate", ckpt=ckpts, dataset_dir=cross_validated["data"], split="all",
                       output_dir=tmp_path / "e")
    assert "seen in training by a member" in error_chain(err.value)


def test_list_members_trained_otherwise_are_an_error(tmp_path):
    paths = []
    for name, width in (("a", 8), ("b", 16)):
        run = tmp_path / name
        (run / "models").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"purpose": "training",
                                                     "hyperparameters": {"network": "unet", "width": width}}))
        (run / "models" / "best.pt").write_bytes(b"")
        paths.append(str(run / "models" / "best.pt"))
    assert crossval.members(paths) == [Path(p) for p in paths] == crossval.members(",".join(paths))
    with pytest.raises(SystemExit, match="width: 8 vs 16"):
        crossval.record(paths)
    with pytest.raises(SystemExit, match="no such file"):
        crossval.members(paths[0] + "," + str(tmp_path / "missing.pt"))
    assert crossval.members(paths[0]) is None


@pytest.mark.parametrize("layout", ["lgg", "dsb2018"])
def test_the_plain_loop_scores_a_fold_in_the_bundles_units(layout, tmp_path):
    """LGG folds are scored per patient (volume Dice), DSB2018 per image, on exactly the fold's test cases."""
    from pipeline.bench import accuracy
    from pipeline.data import find_cases, splits
    from pipeline.data.synthetic import write_dsb2018, write_lgg

    root = write_lgg(tmp_path / "kaggle_3m", n_cases=4) if layout == "lgg" else write_dsb2018(tmp_path / "d", 6)
    cases = find_cases(layout, root)
    side = splits.assign(cases, folds=2, fold=0, val_fraction=0.25, seed=0)
    fold = tmp_path / "fold_0"
    splits.save(side, fold / "splits.json")
    (fold / "config.json").write_text(json.dumps({"dataset": {"dir": str(root)}, "hyperparameters": {
        "layout": layout, "layout_args": {}, "network": "unet", "width": 4}}))
    res = accuracy.plain_fold(fold, epochs=1, size=64, batch_size=2, val_interval=1)
    expected = {str(c["group"]) for c in side["test"]} if layout == "lgg" else {c["case_id"] for c in side["test"]}
    assert set(res["test"]) == expected and all(0.0 <= v <= 1.0 for v in res["test"].values())


def test_the_python_api_predicts_with_the_folder_as_inference_does(cross_validated, tmp_path):
    from pipeline import Segmenter
    from pipeline.networks.ensemble import FoldEnsemble

    cv = cross_validated["cv"]
    chosen = json.loads((cv / "crossval.json").read_text())["chosen"]
    seg = Segmenter.from_run(cv, device="cpu")
    assert isinstance(seg.network, FoldEnsemble) and len(seg.network.members) == 2
    assert {k: seg.settings[k] for k in chosen if k != "checkpoint"} == {k: v for k, v in chosen.items()
                                                                         if k != "checkpoint"}
    run_in_process("inference", ckpt=cv, input_dir=cross_validated["data"], output_dir=tmp_path / "cli")
    images = sorted(cross_validated["data"].rglob("*_Dermoscopic_Image/*.bmp"))[:3]
    for image, mask in zip(images, seg.predict(images)):
        np.testing.assert_array_equal(mask, np.asarray(Image.open(tmp_path / "cli" / "masks" / f"{image.stem}.png")) > 0)


def test_the_folder_writes_its_folds_disagreement_without_changing_the_masks(cross_validated, tmp_path):
    """Known answer: in a copy of the folder each fold model is set to a constant probability (final convolution's
    weights zeroed, bias logit(0.95) and logit(0.25)), so the written standard deviation over the two members is
    (0.95 - 0.25) / 2 = 0.35 at every pixel, whatever the briefly trained models had learnt (two such models can agree
    everywhere to 8 bits); flips, where chosen, change nothing on a constant map. 8-bit maps: 1/510 tolerance."""
    import shutil

    cv = tmp_path / "cv"
    shutil.copytree(cross_validated["cv"], cv)
    chosen = crossval.read(cv)["chosen"]["checkpoint"]
    for k, p in enumerate((0.95, 0.25)):
        path = cv / f"fold_{k}" / "models" / chosen
        ckpt = torch.load(path, weights_only=True)
        state = ckpt.get("network", ckpt)
        state["net.model.2.conv.weight"].zero_()
        state["net.model.2.conv.bias"].fill_(float(np.log(p / (1 - p))))
        torch.save(ckpt, path)
    data = cross_validated["data"]
    run_in_process("inference", ckpt=cv, input_dir=data, output_dir=tmp_path / "m")
    run_in_process("inference", ckpt=cv, input_dir=data, output_dir=tmp_path / "p", save_probabilities=True)
    masks = sorted((tmp_path / "m" / "masks").glob("*.png"))
    assert len(masks) == 8
    for m in masks:
        np.testing.assert_array_equal(np.asarray(Image.open(m)), np.asarray(Image.open(tmp_path / "p" / "masks" / m.name)))
        sd = np.asarray(Image.open(tmp_path / "p" / "uncertainty" / m.name)).astype(float) / 510
        prob = np.asarray(Image.open(tmp_path / "p" / "probabilities" / m.name)).astype(float) / 255
        assert sd.shape == np.asarray(Image.open(m)).shape
        np.testing.assert_allclose(sd, 0.35, atol=1 / 510)
        np.testing.assert_allclose(prob, 0.60, atol=1 / 255)  # the members' mean


def _fake_cv(folder: Path, per_unit: dict, metric="iou") -> Path:
    folder.mkdir(parents=True)
    (folder / "crossval.json").write_text(json.dumps(
        {"oof_score": {"metric": metric, "unit": "image", "per_unit": per_unit,
                       "mean": float(np.mean(list(per_unit.values())))}}))
    return folder


def test_comparing_two_variants_averages_each_arms_seeds_per_case_before_the_paired_bootstrap(tmp_path):
    from pipeline.bench import accuracy

    cases = [f"c{i}" for i in range(30)]
    base = [_fake_cv(tmp_path / f"base{s}", {c: 0.70 + 0.01 * s for c in cases}) for s in (0, 1)]
    # seed 0 of the variant gains 0.02 on every case, seed 1 loses 0.01: averaged, +0.005 on every case
    var = [_fake_cv(tmp_path / "var0", {c: 0.72 for c in cases}), _fake_cv(tmp_path / "var1", {c: 0.70 for c in cases})]
    res = accuracy.compare(var, base)
    assert res["per_run"] == pytest.approx([0.02, -0.01]) and res["runs"] == 2
    assert res["difference"]["mean"] == pytest.approx(0.005) and res["difference"]["better"] == 30
    assert res["difference"]["ci"][0] == pytest.approx(0.005) and "excludes 0" in accuracy.comparison_line(res)
    one = accuracy.compare(var[:1], base[1:])  # one run per arm never ranks, whatever its CI
    assert one["difference"]["mean"] == pytest.approx(0.01) and "ranks nothing" in accuracy.comparison_line(one)
    noisy = _fake_cv(tmp_path / "noisy", {c: 0.70 + (0.05 if i % 2 else -0.05) for i, c in enumerate(cases)})
    assert "no difference shown" in accuracy.comparison_line(accuracy.compare([noisy], base[:1]))


def test_comparing_refuses_unfinished_or_mismatched_cross_validations(tmp_path):
    from pipeline.bench import accuracy

    a = _fake_cv(tmp_path / "a", {"c0": 0.5, "c1": 0.6})
    with pytest.raises(SystemExit, match="one per seed"):
        accuracy.compare([a, a], [a])
    with pytest.raises(SystemExit, match="other.*not the same data and folds"):
        accuracy.compare([a], [_fake_cv(tmp_path / "other", {"c0": 0.5, "c9": 0.6})])
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "crossval.json").write_text("{}")
    with pytest.raises(SystemExit, match="unfinished: not a finished cross-validation"):
        accuracy.compare([a], [tmp_path / "unfinished"])


def test_pooling_seeds_averages_their_out_of_fold_probabilities_before_choosing(tmp_path):
    """Two cross-validations whose fold models each see the lesion and one large false positive, a different one in
    each: alone, no setting removes it (IoU 317/717 = 0.44); averaged, the false positives fall to 100/255 < 0.5 and
    every case scores 1."""
    from pipeline.bench import accuracy

    truth = _disc(h=60, w=60, cy=15, cx=15)
    fp_a, fp_b = np.zeros_like(truth), np.zeros_like(truth)
    fp_a[:20, 35:55] = True  # 400 px apart from the disc: more than its 317, so the largest component is wrong
    fp_b[35:55, :20] = True
    assert truth.sum() == 317 and not (truth & (fp_a | fp_b)).any()
    cvs = []
    for name, fp in (("a", fp_a), ("b", fp_b)):
        cv = tmp_path / name
        prob = np.where(truth, 255, np.where(fp, 200, 0))
        for k, ids in enumerate((["c0", "c1"], ["c2", "c3"])):
            _variant(cv / f"fold_{k}" / "oof-best-tta0", [(i, prob, truth) for i in ids])
        alone = 317 / (317 + fp.sum())
        (cv / "crossval.json").write_text(json.dumps({"folds": 2, "key_metric": "val_iou", "oof_score": {
            "metric": "iou", "unit": "image", "mean": alone, "per_unit": {f"c{i}": alone for i in range(4)}}}))
        cvs.append(cv)
    res = accuracy.pooled(cvs)
    assert res["pooled"]["mean"] == pytest.approx(1.0) and res["pooled"]["n"] == 4
    assert res["difference"]["better"] == 4 and res["difference"]["mean"] == pytest.approx(1 - res["runs_mean"])
    assert res["chosen"]["threshold"] == 0.5 and "pooled minus alone +0." in accuracy.pooled_line(res)
    with pytest.raises(SystemExit, match="at least two"):
        accuracy.pooled(cvs[:1])
    other = tmp_path / "c"
    shutil.copytree(cvs[1], other)
    (other / "fold_1" / "oof-best-tta0" / "probabilities" / "index.csv").write_text("case_id,group,slice\nc9,c9,\n")
    with pytest.raises(SystemExit, match="other cases.*not the same folds"):
        accuracy.pooled([cvs[0], other])
