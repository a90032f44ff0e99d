"""LGG brain MRI: the kaggle_3m reader, its synthetic sample, tumour-weighted sampling, volume metrics and the bundle
end to end through the engine (in process, on a tiny synthetic set)."""

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image

from pipeline import metrics as M
from pipeline.data import DatasetError, find_cases, find_inputs, lgg, splits
from pipeline.data.synthetic import MARKER, is_synthetic, write_lgg

from conftest import ROOT, SHARED, bundle_loader, needs, run_bundle

REAL_LGG = SHARED / "lgg" / "kaggle_3m"
BUNDLE = ROOT / "bundles" / "lgg.json"


@pytest.fixture(scope="module")
def lgg_dir(tmp_path_factory):
    return write_lgg(tmp_path_factory.mktemp("lgg") / "kaggle_3m", n_cases=4, seed=1)


# --- reader ------------------------------------------------------------------------------------------------------


def test_find_cases_layout_and_numeric_order(lgg_dir):
    cases = lgg.find_cases(lgg_dir)
    patients = sorted(p.name for p in lgg_dir.iterdir() if p.is_dir())
    assert len(patients) == 4 and [c["group"] for c in cases] == sorted(c["group"] for c in cases)
    assert len(cases) == sum(len(list((lgg_dir / p).glob("*_mask.tif"))) for p in patients)
    for p in patients:
        mine = [c for c in cases if c["group"] == p]
        assert 12 <= len(mine) <= 20
        assert [c["slice"] for c in mine] == list(range(1, len(mine) + 1))  # 10 after 9, not after 1
        assert [c["case_id"] for c in mine[8:11]] == [f"{p}_9", f"{p}_10", f"{p}_11"]
        for c in mine:
            assert c["image"].endswith(f"{p}/{c['case_id']}.tif")
            assert c["label"].endswith(f"{p}/{c['case_id']}_mask.tif")
            assert isinstance(c["slice"], int)
    # the parent folder holding kaggle_3m/ and a single patient folder are accepted too
    assert find_cases("lgg", lgg_dir.parent) == cases
    assert lgg.find_cases(lgg_dir / patients[1]) == [c for c in cases if c["group"] == patients[1]]


def test_synthetic_sample(lgg_dir, tmp_path):
    assert is_synthetic(lgg_dir) and (lgg_dir / MARKER).is_file() and (lgg_dir / "data.csv").is_file()
    cases = lgg.find_cases(lgg_dir)
    flags = [lgg.has_tumour(c["label"]) for c in cases]
    assert 0.2 < np.mean(flags) < 0.5  # about a third of the slices show tumour
    for p in sorted({c["group"] for c in cases}):
        run = "".join("1" if f else "0" for c, f in zip(cases, flags) if c["group"] == p)
        assert run.strip("0") and "0" not in run.strip("0")  # one contiguous run per patient
    c = cases[flags.index(True) + 1]
    img, mask = np.asarray(Image.open(c["image"])), np.asarray(Image.open(c["label"]))
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert Image.open(c["label"]).mode == "L" and set(np.unique(mask)) == {0, 255}
    tumour, brain = mask > 0, (img[..., 1] > 40) & (mask == 0)
    assert img[tumour, 1].mean() > 1.3 * img[brain, 1].mean()  # bright in FLAIR
    assert img[..., 0].mean() != img[..., 1].mean() != img[..., 2].mean()  # three different contrasts
    again = write_lgg(tmp_path / "again", n_cases=1, seed=1)
    first = lgg.find_cases(again)[:3]
    for a, b in zip(first, cases):
        assert np.array_equal(np.asarray(Image.open(a["image"])), np.asarray(Image.open(b["image"])))


def _percentile_of_patient(folder, q=99.0):
    slices = [np.asarray(Image.open(c["image"])) for c in lgg.find_cases(folder)]
    return np.percentile(np.stack(slices).reshape(-1, 3), q, axis=0)


@pytest.mark.parametrize("norm", ["patient", "fixed"])
def test_bundle_loading_keeps_channels_and_orientation(lgg_dir, norm):
    case = next(c for c in lgg.find_cases(lgg_dir) if lgg.has_tumour(c["label"]))
    d = bundle_loader("lgg", intensity_norm=norm)(dict(case))
    src = np.asarray(Image.open(case["image"])).astype(np.float64)
    assert tuple(d["image"].shape) == (3, 256, 256) and tuple(d["label"].shape) == (1, 256, 256)
    assert "image_path" not in d  # the path kept for the patient's scale does not travel on
    # patient (default): each channel over its patient's 99th percentile (Buda et al. normalise per volume); fixed: / 255
    scale = _percentile_of_patient(lgg_dir / case["group"]) if norm == "patient" else np.full(3, 255.0)
    assert norm == "fixed" or not np.allclose(scale, scale[0])  # the three sequences get their own scale
    for c in range(3):  # channel 1 is FLAIR
        np.testing.assert_allclose(d["image"].numpy()[c] * scale[c], src[..., c], atol=1e-3)
    np.testing.assert_array_equal(d["label"].numpy()[0] > 0, np.asarray(Image.open(case["label"])) > 127)


def test_scale_by_patient_is_per_patient_not_per_slice(tmp_path, lgg_dir):
    cases = lgg.find_cases(lgg_dir)
    a, b = sorted({c["group"] for c in cases})[:2]
    darker = shutil.copytree(lgg_dir / b, tmp_path / b)
    for f in darker.glob(f"{b}_*.tif"):
        if not f.name.endswith("_mask.tif"):  # the same patient scanned at half the brightness
            Image.fromarray((np.asarray(Image.open(f)) // 2).astype(np.uint8)).save(f)
    load = bundle_loader("lgg")
    first = [c for c in cases if c["group"] == b][3]
    moved = {**first, "image": str(darker / Path(first["image"]).name), "label": str(darker / Path(first["label"]).name)}
    np.testing.assert_allclose(load(dict(first))["image"].numpy(), load(moved)["image"].numpy(), atol=0.02)
    # one scale for all slices of a patient, whatever each slice holds; another patient has another scale
    scales = {c["group"]: lgg.patient_percentiles(str(Path(c["image"]).parent)) for c in cases}
    assert scales[a] != scales[b]
    np.testing.assert_allclose(scales[a], _percentile_of_patient(lgg_dir / a))
    t = lgg.ScaleByPatientd(keys="image")
    for c in [c for c in cases if c["group"] == a][:3]:
        img = torch.as_tensor(np.asarray(Image.open(c["image"]), dtype=np.float32)).permute(2, 0, 1)
        out = t({"image": img, "image_path": c["image"]})["image"]
        np.testing.assert_allclose(out.numpy() * np.array(scales[a])[:, None, None], img.numpy(), rtol=1e-5)


def test_scale_by_patient_errors(tmp_path, lgg_dir):
    case = lgg.find_cases(lgg_dir)[0]
    img = torch.ones(3, 4, 4)
    with pytest.raises(KeyError, match="image_path"):
        lgg.ScaleByPatientd(keys="image")({"image": img})
    with pytest.raises(ValueError, match="percentile"):
        lgg.ScaleByPatientd(keys="image", percentile=0)
    with pytest.raises(ValueError, match="channels"):
        lgg.ScaleByPatientd(keys="image")({"image": torch.ones(1, 4, 4), "image_path": case["image"]})
    with pytest.raises(ValueError, match="--intensity_norm must be one of fixed, patient, got 'volume'"):
        lgg.intensity_scaling("volume")
    flat = tmp_path / "flat"  # inference on a plain folder of slices: the folder is the patient
    flat.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(flat / "a.png")  # blank: divided by 1, not by 0
    out = lgg.ScaleByPatientd(keys="image")({"image": img, "image_path": str(flat / "a.png")})["image"]
    assert torch.equal(out, img)
    (flat / "b.png").write_bytes(b"not an image")
    lgg.patient_percentiles.cache_clear()  # read once per folder and process: forget the folder before b.png
    with pytest.raises(DatasetError, match=r"b\.png: cannot read the slice"):
        lgg.patient_percentiles(str(flat))


def test_errors_name_the_file(tmp_path, lgg_dir):
    with pytest.raises(DatasetError, match="does not exist"):
        lgg.find_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no patient folders"):
        lgg.find_cases(tmp_path / "empty")

    d = shutil.copytree(lgg_dir, tmp_path / "kaggle_3m")
    patient = sorted(p for p in d.iterdir() if p.is_dir())[1]
    name = patient.name
    (d / ".DS_Store").write_text("")  # operating-system metadata: ignored
    (d / "README.md").write_text("notes")
    assert len(lgg.find_cases(d)) == len(lgg.find_cases(lgg_dir))

    (patient / f"{name}_3_mask.tif").unlink()
    with pytest.raises(DatasetError, match=f"{name}_3.tif: image without its mask"):
        lgg.find_cases(d)
    assert len(lgg.find_cases(d, require_labels=False)) == len(lgg.find_cases(lgg_dir))  # inference needs none
    assert "label" not in [c for c in lgg.find_cases(d, require_labels=False) if c["case_id"] == f"{name}_3"][0]
    (patient / f"{name}_5.tif").unlink()
    with pytest.raises(DatasetError, match=f"{name}_5_mask.tif: mask without its image"):
        lgg.find_cases(d, require_labels=False)
    shutil.copy(patient / f"{name}_6_mask.tif", patient / f"{name}_5_mask.tif")
    shutil.copy(patient / f"{name}_6.tif", patient / f"{name}_5.tif")

    shutil.copy(patient / f"{name}_7.tif", patient / f"{name}_07.tif")
    with pytest.raises(DatasetError, match=f"{name}_7.tif: slice 7 of {name} appears twice"):
        lgg.find_cases(d, require_labels=False)
    (patient / f"{name}_07.tif").unlink()

    (patient / f"{name}_8.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=f"{name}_8.png: unexpected file in patient folder"):
        lgg.find_cases(d, require_labels=False)
    (patient / f"{name}_8.png").unlink()
    (d / "notes.pdf").write_bytes(b"")
    with pytest.raises(DatasetError, match="notes.pdf: unexpected file in a kaggle_3m layout"):
        lgg.find_cases(d, require_labels=False)
    (d / "notes.pdf").unlink()
    (d / "extra").mkdir()
    with pytest.raises(DatasetError, match="extra: unexpected folder"):
        lgg.find_cases(d, require_labels=False)
    (d / "extra").rmdir()
    (d / "TCGA_XX_0000_20000101").mkdir()
    with pytest.raises(DatasetError, match="TCGA_XX_0000_20000101: patient folder holds no slices"):
        lgg.find_cases(d, require_labels=False)


def test_find_inputs_reads_the_layout_without_masks(tmp_path, lgg_dir):
    d = shutil.copytree(lgg_dir, tmp_path / "kaggle_3m")
    for m in d.glob("*/*_mask.tif"):
        m.unlink()
    cases = find_inputs(d, "lgg")
    assert [c["case_id"] for c in cases] == [c["case_id"] for c in lgg.find_cases(lgg_dir)]
    assert all("label" not in c and isinstance(c["slice"], int) for c in cases)


def test_splits_keep_every_patient_on_one_side(lgg_dir):
    cases = lgg.find_cases(lgg_dir)
    out = splits.assign(cases, val_fraction=0.15, test_fraction=0.2, seed=0)
    sides = {}
    for side, members in out.items():
        for c in members:
            sides.setdefault(c["group"], set()).add(side)
    assert all(len(s) == 1 for s in sides.values()) and len(sides) == 4
    assert sum(len(v) for v in out.values()) == len(cases)
    assert all(out[s] for s in splits.SPLITS)


# --- sampling ----------------------------------------------------------------------------------------------------


def test_tumour_weights_draw_about_half_tumour(lgg_dir):
    cases = lgg.find_cases(lgg_dir)
    flags = np.array([lgg.has_tumour(c["label"]) for c in cases])
    weights = lgg.tumour_weights(cases)
    assert sum(w for w, f in zip(weights, flags) if f) == pytest.approx(0.5)
    sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=20000, replacement=True,
                                                     generator=torch.Generator().manual_seed(0))
    assert abs(flags[list(sampler)].mean() - 0.5) < 0.02
    assert flags.mean() < 0.45  # without weighting, far fewer tumour draws
    w30 = lgg.tumour_weights(cases, tumour_fraction=0.3)
    assert sum(w for w, f in zip(w30, flags) if f) == pytest.approx(0.3)
    empty_only = [c for c, f in zip(cases, flags) if not f][:5]
    assert lgg.tumour_weights(empty_only) == [0.2] * 5
    with pytest.raises(ValueError, match="tumour_fraction"):
        lgg.tumour_weights(cases, tumour_fraction=1.0)


# --- volume metrics ----------------------------------------------------------------------------------------------


def sq(y0, y1, x0, x1, n=10):
    m = np.zeros((n, n), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_volume_dice_is_over_the_whole_volume_not_a_mean_of_slices():
    empty = sq(0, 0, 0, 0)
    # slice 1: perfect 16 px; slice 2: empty truth, one false-positive pixel
    truth, pred = [sq(0, 4, 0, 4), empty], [sq(0, 4, 0, 4), sq(9, 10, 9, 10)]
    r = M.volume_record(pred, truth)
    assert r["dice_volume"] == pytest.approx(2 * 16 / 33) and r["iou_volume"] == pytest.approx(16 / 17)
    assert r["n_slices"] == 2 and r["area_true"] == 16 and r["area_pred"] == 17
    per_slice = np.mean([M.case_record(p, t)["dice"] for p, t in zip(pred, truth)])
    assert per_slice == pytest.approx(0.5) and abs(per_slice - r["dice_volume"]) > 0.4
    # half-overlapping slices: 8 of 16 and 8 of 16 over two slices
    truth, pred = [sq(0, 4, 0, 4), sq(0, 4, 0, 4)], [sq(2, 6, 0, 4), sq(0, 4, 2, 6)]
    assert M.volume_record(pred, truth)["dice_volume"] == pytest.approx(2 * 16 / 64)
    # (H, W, S) arrays and lists of slices agree
    assert M.volume_record(np.stack(pred, -1), np.stack(truth, -1)) == M.volume_record(pred, truth)


def test_volume_empty_cases():
    empty = np.zeros((8, 8, 3), dtype=bool)
    some = empty.copy()
    some[2, 2, 1] = True
    assert M.volume_record(empty, empty)["dice_volume"] == 1.0 and M.volume_record(empty, empty)["iou_volume"] == 1.0
    assert M.volume_record(some, empty)["dice_volume"] == 0.0
    assert M.volume_record(empty, some)["dice_volume"] == 0.0
    with pytest.raises(ValueError, match="differs"):
        M.volume_record(np.zeros((8, 8, 2)), empty)


def test_group_and_slice_summaries():
    groups = [{"dice_volume": 1.0, "iou_volume": 1.0}, {"dice_volume": 0.5, "iou_volume": 1 / 3},
              {"dice_volume": 0.0, "iou_volume": 0.0}]
    g = M.summarize_groups(groups)
    assert g["n"] == 3 and g["dice_volume"]["mean"] == pytest.approx(0.5) and g["dice_volume"]["median"] == 0.5
    records = [{"iou": 0.5, "dice": 2 / 3, "area_true": 10, "area_pred": 10},
               {"iou": 1.0, "dice": 1.0, "area_true": 4, "area_pred": 4},
               {"iou": 1.0, "dice": 1.0, "area_true": 0, "area_pred": 0},
               {"iou": 0.0, "dice": 0.0, "area_true": 0, "area_pred": 3},
               {"iou": 1.0, "dice": 1.0, "area_true": 0, "area_pred": 0}]
    s = M.slice_summaries(records)
    assert s["tumour_slices"]["n"] == 2 and s["tumour_slices"]["iou"]["mean"] == pytest.approx(0.75)
    assert s["empty_slices"] == {"n": 3, "predicted_empty": 2, "rate": pytest.approx(2 / 3)}


def _validate(handler, cases):
    """Run ``handler`` on an engine whose iterations yield ``cases`` (decollated, two per batch)."""
    from ignite.engine import Engine

    engine = Engine(lambda e, batch: [{"pred": c["pred"][None], "label": c["label"][None]} for c in batch])
    handler.attach(engine)
    engine.run([cases[i:i + 2] for i in range(0, len(cases), 2)], max_epochs=1)
    return engine.state.metrics


def test_validation_volume_dice_is_the_evaluation_metric():
    from pipeline.handlers import VolumeDice

    rng = np.random.default_rng(0)
    truth = {"A": rng.random((3, 10, 10)) > 0.7, "B": np.zeros((2, 10, 10), bool), "C": np.zeros((2, 10, 10), bool)}
    pred = {"A": rng.random((3, 10, 10)) > 0.6, "B": np.zeros((2, 10, 10), bool), "C": np.zeros((2, 10, 10), bool)}
    pred["C"][1, 0, 0] = True  # one false-positive pixel on a tumour-free patient: its volume Dice is 0
    cases = [{"case_id": f"{g}_{k + 1}", "group": g, "slice": k + 1, "pred": torch.as_tensor(pred[g][k]),
              "label": torch.as_tensor(truth[g][k])} for g in truth for k in range(len(truth[g]))]
    expected = [M.volume_record(list(pred[g]), list(truth[g]))["dice_volume"] for g in sorted(truth)]
    assert expected[1:] == [1.0, 0.0]
    got = _validate(VolumeDice(groups=[c["group"] for c in cases]), cases)["val_volume_dice"]
    assert got == pytest.approx(np.mean(expected))
    # the mean of per-slice Dice is another number: the metric is not a slice mean in disguise
    slice_mean = np.mean([M.case_record(c["pred"], c["label"])["dice"] for c in cases])
    assert abs(slice_mean - got) > 0.05
    assert M.dice_from_counts(0, 0, 0) == 1.0 and M.dice_from_counts(3, 4, 6) == pytest.approx(0.6)
    # a validation case of a group the run was not told about is an error, not a silently smaller mean
    with pytest.raises(KeyError, match="C_1: group 'C' is not among the 2 validation groups"):
        _validate(VolumeDice(groups=["A", "B"]), cases)


@pytest.mark.parametrize("min_size, kept", [(0, 3 + 13), (4, 13), (20, 0)])
def test_min_lesion_size_removes_small_predicted_blobs(min_size, kept, monkeypatch):
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    monkeypatch.chdir(ROOT)
    parser = ConfigParser()
    parser.read_config(BUNDLE)
    parser["min_lesion_size"] = min_size
    post = Compose(parser.get_parsed_content("lesion_postprocessing"))
    pred = torch.zeros(1, 16, 16)
    pred[0, 0, :3] = 1  # a 3-pixel blob
    pred[0, 8:11, 8:12] = 1  # a 12-pixel lesion
    pred[0, 11, 12] = 1  # touches the lesion diagonally only: one 13-pixel object (8-connectivity)
    assert int(post({"pred": pred})["pred"].sum()) == kept


@pytest.mark.parametrize("largest", [False, True])
def test_the_largest_3d_component_is_kept_per_patient(largest, tmp_path):
    """A tumour on slices 1-2 and a false blob alone on slice 3 (disjoint in 3D, smaller than the tumour): with
    ``volume_largest_component`` evaluation scores, and inference writes, the volume without the blob."""
    from types import SimpleNamespace

    from pipeline.handlers import CaseMetricsWriter, MaskWriter

    tumour, blob = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    tumour[2:7, 2:7], blob[10:14, 10:14] = True, True
    batch, output = [], []
    for k, (truth, pred) in enumerate([(tumour, tumour), (tumour, tumour), (np.zeros_like(tumour), blob)], start=1):
        path = tmp_path / f"P_{k}.png"
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
        batch.append({"case_id": f"P_{k}", "group": "P", "slice": k, "image": str(path)})
        output.append({"pred": torch.from_numpy(pred[None]).float(), "label": torch.from_numpy(truth[None]).float(),
                       "image": type("I", (), {"meta": {"filename_or_obj": str(path)}})()})
    engine = SimpleNamespace(state=SimpleNamespace(batch=batch, output=output))
    writers = [CaseMetricsWriter(str(tmp_path / "eval"), group_metrics=True, volume_largest_component=largest),
               MaskWriter(str(tmp_path / "infer"), overlays=False, volumes=True, volume_largest_component=largest)]
    for w in writers:
        w._started(engine)
        w._iteration(engine)
        w._completed(engine)
    dice = float(next(csv.DictReader(open(tmp_path / "eval" / "per_group.csv")))["dice_volume"])
    assert dice == pytest.approx(1.0 if largest else 2 * 50 / (50 + 66))
    slice3 = np.asarray(Image.open(tmp_path / "infer" / "masks" / "P_3.png")) > 0
    blob_left = 0 if largest else 16
    assert slice3.sum() == blob_left
    assert np.asarray(nib.load(tmp_path / "infer" / "volumes" / "P.nii.gz").dataobj).sum() == 50 + blob_left


# --- the bundle end to end ---------------------------------------------------------------------------------------


def run(run_id, **overrides):
    wf = ConfigWorkflow(config_file=str(BUNDLE), workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    wf.initialize()
    wf.run()
    sampler = wf.parser.get_parsed_content("train#dataloader").sampler if run_id == "training" else None
    wf.finalize()
    return sampler


def test_lgg_bundle_trains_evaluates_and_infers(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the bundle includes configs/engine.json relative to the repository root
    synth = tmp_path / "synthetic" / "kaggle_3m"
    common = {"width": 4, "sw_batch_size": 1, "cache_workers": 1}
    sampler = run("training", epochs=1, val_interval=1, batch_size=4, dataset_dir=str(tmp_path / "kaggle_3m"),
                  default_dataset_dir=str(tmp_path / "kaggle_3m"), synthetic_dir=str(synth), synthetic_cases=3,
                  output_dir=str(tmp_path / "run"), **common)
    # the default dataset folder is absent: the synthetic fallback wrote a 3-patient sample
    assert is_synthetic(synth) and len({c["group"] for c in lgg.find_cases(synth)}) == 3
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] and 0.0 <= metrics["history"][0]["val_iou"] <= 1.0
    # best.pt is picked on the patient-volume Dice of the validation patients, the figure evaluation reports
    assert metrics["best"]["key_metric"] == "val_volume_dice" and 0.0 <= metrics["best"]["val_volume_dice"] <= 1.0
    split = json.loads((run_dir / "splits.json").read_text())
    assert all(split[s] for s in splits.SPLITS)
    patients = {s: {cid.rsplit("_", 1)[0] for cid in split[s]} for s in splits.SPLITS}
    assert sum(len(p) for p in patients.values()) == 3  # one patient per side: never split across sides
    ckpt = str(run_dir / "models" / "best.pt")

    cases = lgg.find_cases(synth)
    n_slices = {g: sum(c["group"] == g for c in cases) for g in {c["group"] for c in cases}}
    out = tmp_path / "eval"
    run("evaluate", dataset_dir=str(synth), split="all", ckpt=ckpt, output_dir=str(out), **common)
    rows = list(csv.DictReader(open(out / "per_group.csv")))
    assert [r["group"] for r in rows] == sorted(n_slices)
    assert set(rows[0]) == {"group", "n_slices", "dice_volume", "iou_volume", "area_true", "area_pred"}
    per_case = list(csv.DictReader(open(out / "per_case.csv")))
    assert len(per_case) == len(cases)
    assert set(per_case[0]) == {"case_id", "iou", "dice", "hd95", "area_true", "area_pred"}
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["synthetic"] is True and doc["n_cases"] == len(cases)
    assert doc["groups"]["n"] == 3 and {"mean", "median", "std", "n"} <= set(doc["groups"]["dice_volume"])
    n_tumour = sum(int(r["area_true"]) > 0 for r in per_case)
    assert doc["tumour_slices"]["n"] == n_tumour and "iou" in doc["tumour_slices"] and "dice" in doc["tumour_slices"]
    assert doc["empty_slices"]["n"] == len(cases) - n_tumour
    for r in rows:
        g = r["group"]
        assert int(r["n_slices"]) == n_slices[g]
        mine = [p for p in per_case if p["case_id"].rsplit("_", 1)[0] == g]
        assert int(r["area_true"]) == sum(int(p["area_true"]) for p in mine)
        assert int(r["area_pred"]) == sum(int(p["area_pred"]) for p in mine)
        vol = nib.load(out / "volumes" / f"{g}.nii.gz")
        assert vol.shape == (256, 256, n_slices[g]) and vol.get_data_dtype() == np.uint8
        data = np.asarray(vol.dataobj)
        assert int(data.sum()) == int(r["area_pred"])
        assert [int(data[..., k].sum()) for k in range(n_slices[g])] == [
            int(p["area_pred"]) for p in sorted(mine, key=lambda p: int(p["case_id"].rsplit("_", 1)[1]))]

    out = tmp_path / "eval-val"
    run("evaluate", dataset_dir=str(synth), split="val", ckpt=ckpt, output_dir=str(out), **common)
    val = json.loads((out / "metrics.json").read_text())["groups"]["dice_volume"]
    assert val["n"] == 1 and val["mean"] == pytest.approx(metrics["best"]["val_volume_dice"], abs=1e-6)

    out = tmp_path / "infer"  # a new process, as users run it: nothing this test imported is loaded there
    run_bundle("run", "inference", "--config_file", "bundles/lgg.json", "--input_dir", synth, "--ckpt", ckpt,
               "--output_dir", out, *[str(a) for k, v in common.items() for a in (f"--{k}", v)])
    assert {p.stem for p in (out / "masks").glob("*.png")} == {c["case_id"] for c in cases}
    assert {p.name for p in (out / "volumes").iterdir()} == {f"{g}.nii.gz" for g in n_slices}
    for g, n in n_slices.items():
        vol = np.asarray(nib.load(out / "volumes" / f"{g}.nii.gz").dataobj)
        assert vol.shape == (256, 256, n) and set(np.unique(vol)) <= {0, 1}
        last = np.asarray(Image.open(out / "masks" / f"{g}_{n}.png")) > 0
        np.testing.assert_array_equal(vol[..., n - 1] > 0, last)  # slice n (not slice 9) sits last
        # inference restores the run's per-patient scale as evaluate does: an outside scorer of its masks sees
        # evaluate's figures
        scored = np.asarray(nib.load(tmp_path / "eval" / "volumes" / f"{g}.nii.gz").dataobj)
        np.testing.assert_array_equal(vol > 0, scored > 0, err_msg=g)


# --- real data ---------------------------------------------------------------------------------------------------


@needs(REAL_LGG)
def test_real_lgg():
    cases = find_cases("lgg", REAL_LGG)
    groups = sorted({c["group"] for c in cases})
    assert len(groups) == 16 and len(cases) == 493
    first = [c for c in cases if c["group"] == groups[0]]
    assert groups[0] == "TCGA_CS_4941_19960909"
    assert [c["slice"] for c in first] == list(range(1, len(first) + 1))
    assert first[9]["case_id"] == "TCGA_CS_4941_19960909_10"
    d = bundle_loader("lgg")(dict(first[11]))
    assert tuple(d["image"].shape) == (3, 256, 256) and set(np.unique(d["label"].numpy())) <= {0.0, 1.0}
