"""The LGG plain-loop baseline: same folds and scoring as the study, and the paired comparison it reports."""

import csv

import numpy as np
import pytest

from pipeline.bench import lgg as bench_lgg
from pipeline.data import find_cases, splits
from pipeline.data.lgg import patient_percentiles
from pipeline.data.synthetic import write_lgg


def test_plain_loop_fold_scores_the_study_folds_test_patients(tmp_path):
    root = write_lgg(tmp_path / "kaggle_3m", n_cases=6)
    res = bench_lgg.train_fold(str(root), fold=1, folds=2, epochs=2, width=8, val_interval=1)
    expected = splits.assign(find_cases("lgg", root), folds=2, fold=1, val_fraction=0.15, seed=0)
    test_groups = sorted({c["group"] for c in expected["test"]})
    assert res["test_patients"] == test_groups
    assert [c["epoch"] for c in res["curve"]] == [1, 2]
    assert res["best_epoch"] in (1, 2)
    assert res["val_volume_dice"] == max(c["val_volume_dice"] for c in res["curve"])
    for which in ("best", "last"):
        assert sorted(res[which]["volume_dice"]) == test_groups
        assert all(0.0 <= v <= 1.0 for v in res[which]["volume_dice"].values())
        n_slices = res[which]["tumour_slices"]["n"] + res[which]["empty_slices"]["n"]
        assert n_slices == len(expected["test"])


def test_plain_loop_intensity_scales_as_the_bundle(tmp_path):
    root = write_lgg(tmp_path / "kaggle_3m", n_cases=2)
    cases = find_cases("lgg", root)
    raw, _ = bench_lgg._load(cases, "fixed")
    scaled, _ = bench_lgg._load(cases, "patient")
    for c, r, x in zip(cases, raw, scaled):
        scale = np.array(patient_percentiles(str(root / c["group"])))
        np.testing.assert_allclose(x.numpy() * scale[:, None, None], r.numpy() * 255, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="intensity_norm must be one of fixed, patient"):
        bench_lgg._load(cases, "slice")


def _fold(volume_dice: dict, predicted_empty: int = 1, n_empty: int = 2) -> dict:
    empty = {"n": n_empty, "predicted_empty": predicted_empty}
    return {"best": {"volume_dice": volume_dice, "empty_slices": empty},
            "last": {"volume_dice": volume_dice, "empty_slices": empty}}


def _study_run(folder, rows):
    (folder / "eval-test").mkdir(parents=True)
    with open(folder / "eval-test" / "per_group.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["group", "dice_volume", "iou_volume"])
        w.writeheader()
        w.writerows({"group": g, "dice_volume": d, "iou_volume": d / (2 - d)} for g, d in rows.items())


def test_compare_pairs_the_recipe_with_the_plain_loop_by_patient(tmp_path):
    results = [_fold({"A": 0.2, "B": 0.6}), _fold({"C": 0.4, "D": 1.0}, predicted_empty=2)]
    _study_run(tmp_path / "network=unet,fold=0", {"A": 0.5, "B": 0.5})
    _study_run(tmp_path / "network=unet,fold=1", {"C": 0.7, "D": 1.0})
    _study_run(tmp_path / "network=pspnet,fold=0", {"A": 0.1, "B": 0.4})  # fold 1 not evaluated: 2 patients
    out = bench_lgg.compare(results, tmp_path)
    plain = out["plain"]
    assert plain["n_patients"] == 4 and plain["mean"] == pytest.approx(0.55) and plain["median"] == pytest.approx(0.5)
    assert plain["empty_slices_predicted_empty"] == pytest.approx(3 / 4)
    unet = out["recipe"]["network=unet"]
    assert unet["n_patients"] == 4 and unet["mean"] == pytest.approx(0.675)
    assert unet["minus_plain"] == pytest.approx(np.mean([0.3, -0.1, 0.3, 0.0]))
    assert unet["patients_better"] == 2
    lo, hi = unet["minus_plain_ci"]
    assert -0.1 <= lo <= unet["minus_plain"] <= hi <= 0.3
    pspnet = out["recipe"]["network=pspnet"]
    assert pspnet["n_patients"] == 2 and pspnet["minus_plain"] == pytest.approx(-0.15)
    assert bench_lgg.compare(results, None)["recipe"] == {}
    other = tmp_path / "other"  # any grid key: runs pooled over folds under their other values
    _study_run(other / "intensity_norm=patient,fold=0", {"A": 0.3, "B": 0.6})
    _study_run(other / "intensity_norm=patient,fold=1", {"C": 0.4, "D": 1.0})
    assert bench_lgg.compare(results, other)["recipe"]["intensity_norm=patient"]["minus_plain"] == pytest.approx(0.025)


def test_lgg_as_nifti_stacks_each_patients_flair_slices_and_masks_in_order(tmp_path):
    """pipeline.bench.lgg_as_nifti: one MSD volume per patient, FLAIR (channel 1) slice k at index k - 1 of axis 2
    (slice numbers sorted as numbers), labels 0/1; the NIfTI reader then finds every slice of every patient."""
    import nibabel as nib
    from PIL import Image

    from pipeline.bench import lgg_as_nifti
    from pipeline.data import DatasetError, nifti

    root = write_lgg(tmp_path / "kaggle_3m", n_cases=2)
    out = tmp_path / "msd"
    patients = lgg_as_nifti.convert(root, out)
    lgg_cases = find_cases("lgg", root)
    assert patients == sorted({c["group"] for c in lgg_cases})
    for patient in patients:
        slices = [c for c in lgg_cases if c["group"] == patient]
        image = np.asarray(nib.load(out / "imagesTr" / f"{patient}.nii.gz").dataobj)
        label = np.asarray(nib.load(out / "labelsTr" / f"{patient}.nii.gz").dataobj)
        assert image.shape == label.shape == (256, 256, len(slices))
        assert [c["slice"] for c in slices] == list(range(1, len(slices) + 1))
        for k, c in enumerate(slices):
            np.testing.assert_array_equal(image[..., k], np.asarray(Image.open(c["image"]))[..., 1])
            np.testing.assert_array_equal(label[..., k], np.asarray(Image.open(c["label"])) > 127)
        assert set(np.unique(label)) == {0, 1}
    assert len(nifti.find_cases(out)) == len(lgg_cases)
    with pytest.raises(DatasetError, match="msd: not empty"):
        lgg_as_nifti.convert(root, out)
