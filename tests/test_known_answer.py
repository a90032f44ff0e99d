"""Known answers: each bundle, trained for seconds on a small synthetic sample a correct pipeline learns, must reach
a stated score on the cases it did not train on; and the bundle's post-processing turns a hand-set probability map
into the one mask it should.

The scores are computed here from the files ``inference`` writes and the truth read straight from the dataset's
files (PIL / nibabel, not the bundle's readers), so a reader that flips the labels, a threshold moved, or a mask
written in the wrong place or orientation fails, even where the bundle's own metrics would agree with themselves.
The stated floors sit well below what a correct pipeline reaches (measured: see each case) and far above what a
broken one does (flipped labels score near 0; a threshold near 0 marks most of the image).
"""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.synthetic import WRITERS

from conftest import ROOT, run_in_process


def overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two binary masks, 1 where both are empty (the project's definition, written out again
    here so that a change to pipeline.metrics cannot move both sides)."""
    inter, union, total = np.logical_and(pred, truth).sum(), np.logical_or(pred, truth).sum(), pred.sum() + truth.sum()
    return (1.0, 1.0) if union == 0 else (inter / union, 2 * inter / total)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def truth_2d(layout: str, data: Path, case_id: str) -> np.ndarray:
    if layout == "ph2":
        return read_png(data / "PH2 Dataset images" / case_id / f"{case_id}_lesion" / f"{case_id}_lesion.bmp")
    masks = sorted((data / case_id / "masks").glob("*.png"))  # dsb2018: one PNG per nucleus, scored as their union
    return np.any([read_png(p) for p in masks], axis=0)


def lgg_volume(folder: Path, pattern: str, n_slices: int) -> np.ndarray:
    """Slices 1..n_slices stacked in order; ``pattern`` names slice k's file."""
    return np.stack([read_png(folder / pattern.format(k=k)) for k in range(1, n_slices + 1)])


def held_out_scores(bundle: str, data: Path, run: Path, out: Path) -> list[float]:
    """Per-case IoU (2D bundles) or per-volume Dice (lgg, nifti) of ``inference``'s masks on the run's validation
    and test cases."""
    splits = json.loads((run / "splits.json").read_text())
    held_out = splits["val"] + splits["test"]
    if bundle in ("ph2", "dsb2018"):
        return [overlap(read_png(out / "masks" / f"{c}.png"), truth_2d(bundle, data, c))[0] for c in held_out]
    if bundle == "lgg":  # case ids are slices <patient>_<k>; score whole patients
        patients = sorted({c.rsplit("_", 1)[0] for c in held_out})
        n = {p: len(list((data / p).glob("*_mask.tif"))) for p in patients}
        return [overlap(lgg_volume(out / "masks", p + "_{k}.png", n[p]),
                        lgg_volume(data / p, p + "_{k}_mask.tif", n[p]))[1] for p in patients]
    volumes = sorted({c.rsplit("_", 1)[0] for c in held_out})  # nifti: slices <volume>_<index>
    scores = []
    for v in volumes:
        pred = nib.load(out / "volumes" / f"{v}.nii.gz")
        truth = nib.load(data / "labelsTr" / f"{v}.nii.gz")
        np.testing.assert_allclose(pred.affine, truth.affine, atol=1e-4)  # written in the source's space
        scores.append(overlap(np.asarray(pred.dataobj) > 0, np.asarray(truth.dataobj) > 0.5)[1])
    return scores


# bundle, synthetic cases, overrides, floor on the mean held-out score. Measured on a correct pipeline (2 cores,
# 2026-12-03): ph2 0.91 IoU, lgg 0.83 volume Dice, dsb2018 0.57 IoU (three image kinds, small nuclei; the hardest),
# nifti 0.94 volume Dice. Broken ones score far lower: labels read flipped about 0, a threshold near 0 the foreground
# fraction (nuclei: under 0.25).
KNOWN = [
    ("ph2", 12, {"image_size": 64, "roi_size": [64, 64], "epochs": 30, "lr": 0.01}, 0.8),
    ("lgg", 6, {"image_size": 64, "roi_size": [64, 64], "epochs": 15, "lr": 0.01, "val_fraction": 0.2}, 0.6),
    ("dsb2018", 12, {"roi_size": [64, 64], "epochs": 100, "lr": 0.005, "val_interval": 25, "sw_batch_size": 32}, 0.4),
    ("nifti", 4, {"roi_size": [64, 64], "epochs": 20, "lr": 0.01}, 0.85),
]


@pytest.mark.parametrize("bundle, n_cases, overrides, floor", KNOWN, ids=[k[0] for k in KNOWN])
def test_training_learns_the_synthetic_sample(bundle, n_cases, overrides, floor, tmp_path, recwarn):
    data = WRITERS[bundle](tmp_path / "data", n_cases=n_cases, seed=3)
    run, out = tmp_path / "run", tmp_path / "inference"
    config = f"bundles/{bundle}.json"
    run_in_process("training", config, dataset_dir=data, output_dir=run, **{"batch_size": 4, "val_interval": 5,
                                                                            **overrides})
    run_in_process("inference", config, ckpt=run / "models" / "best.pt", input_dir=data, output_dir=out)
    scores = held_out_scores(bundle, data, run, out)
    print(bundle, "held-out", [round(s, 3) for s in scores])
    assert len(scores) >= 2 and np.mean(scores) >= floor, (bundle, scores)
    # a preprocessing with nothing to invert (all but ph2) once put one MONAI warning per image on screen
    assert not [w for w in recwarn if "no invertible transforms" in str(w.message)]


def hand_set_logits(size: int = 256) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """A one-channel logit map and the regions it is made of: a lesion disc whose rim is only just foreground
    (p = 0.7) with a hole in it, a faint halo around it (p = 0.3), and a small separate blob."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    regions = {"core": r <= 50, "rim": (r > 50) & (r <= 60), "hole": r <= 8, "halo": (r > 60) & (r <= 75),
               "blob": np.hypot(yy - 25, xx - 25) <= 10}
    p = np.full((size, size), 0.02)
    p[regions["core"]], p[regions["rim"]], p[regions["halo"]] = 0.98, 0.7, 0.3
    p[regions["hole"]], p[regions["blob"]] = 0.02, 0.98
    logits = torch.from_numpy(np.log(p / (1 - p))).float()[None]
    return logits, regions


@pytest.mark.parametrize("bundle, lesion_postprocessing", [("ph2", True), ("dsb2018", False)])
def test_postprocessing_turns_a_hand_set_map_into_the_known_mask(bundle, lesion_postprocessing, tmp_path):
    """The bundle's own evaluation and inference post-processing (inversion of its preprocessing, sigmoid, the 0.5
    threshold, and for PH2 the largest component with its holes filled), fed the preprocessed image and a hand-set
    logit map in place of a network."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    size = 256  # PH2's image_size: its resize keeps a 256 x 256 image as it is, so the answer is exact
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
        tmp_path / "image.png")
    Image.fromarray(np.zeros((size, size), np.uint8)).save(tmp_path / "label.png")
    logits, regions = hand_set_logits(size)
    expected = regions["core"] | regions["rim"]
    if not lesion_postprocessing:
        expected = (expected & ~regions["hole"]) | regions["blob"]

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / f"{bundle}.json")
    if bundle == "dsb2018":
        parser["load_label"] = [{"_target_": "LoadImaged", "keys": "label", "image_only": True},
                                {"_target_": "EnsureChannelFirstd", "keys": "label"}]  # one PNG, not a masks/ folder
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # the bundle pulls configs/ by relative path
        for stage in ("validate", "infer"):
            pre, post = (parser.get_parsed_content(f"{stage}#{k}") for k in ("preprocessing", "postprocessing"))
            item = pre({"image": str(tmp_path / "image.png"), "label": str(tmp_path / "label.png")})
            assert tuple(item["image"].shape[1:]) == (size, size)
            item["pred"] = MetaTensor(logits.clone(), meta=dict(item["image"].meta))
            mask = post(item)["pred"][0].numpy() > 0  # (W, H) as PIL's reader indexes with reverse_indexing off
            np.testing.assert_array_equal(mask, expected, err_msg=f"{bundle} {stage}")
    finally:
        os.chdir(cwd)


def test_zoom_keeps_label_and_prediction_on_the_image(tmp_path):
    """``--zoom 2`` (DSB2018 bundle): training sees image and label at twice the size and still on each other; the
    prediction made at that size comes back to the source grid, where it is scored."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    size = 256
    yy, xx = np.mgrid[:size, :size]
    disc = np.hypot(yy - 100, xx - 140) <= 70  # off-centre, so a flip or transpose of one side shows
    Image.fromarray(np.repeat((disc * 255).astype(np.uint8)[..., None], 3, axis=2)).save(tmp_path / "image.png")
    Image.fromarray((disc * 255).astype(np.uint8)).save(tmp_path / "label.png")
    logits, regions = hand_set_logits(size)
    expected = ((regions["core"] | regions["rim"]) & ~regions["hole"]) | regions["blob"]

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / "dsb2018.json")
    parser["zoom"], parser["roi_size"] = 2, [512, 512]  # the whole zoomed image in one crop
    parser["load_label"] = [{"_target_": "LoadImaged", "keys": "label", "image_only": True,  # indexed as the image
                             "reader": "$monai.data.PILReader(reverse_indexing=False)"},
                            {"_target_": "EnsureChannelFirstd", "keys": "label"}]
    case = {"image": str(tmp_path / "image.png"), "label": str(tmp_path / "label.png")}
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)
        train = parser.get_parsed_content("train#preprocessing")(case)
        assert tuple(train["image"].shape[1:]) == tuple(train["label"].shape[1:]) == (2 * size, 2 * size)
        assert set(np.unique(train["label"].numpy())) == {0.0, 1.0}
        assert overlap(train["image"][0].numpy() > 0.5, train["label"][0].numpy() > 0)[0] > 0.99
        assert abs(float(train["label"].sum()) - 4 * disc.sum()) < 0.02 * 4 * disc.sum()

        pre, post = (parser.get_parsed_content(f"validate#{k}") for k in ("preprocessing", "postprocessing"))
        item = pre(case)
        assert tuple(item["image"].shape[1:]) == (2 * size, 2 * size) and tuple(item["label"].shape[1:]) == (size, size)
        zoomed = torch.nn.functional.interpolate(logits[None], scale_factor=2, mode="nearest")[0]
        item["pred"] = MetaTensor(zoomed, meta=dict(item["image"].meta))
        mask = post(item)["pred"][0].numpy() > 0
        assert mask.shape == (size, size)
        assert overlap(mask, expected)[0] > 0.98  # bilinear halving moves only boundary pixels
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("bundle", ["ph2", "dsb2018"])
def test_affine_augmentation_moves_image_and_label_together(tmp_path, monkeypatch, bundle):
    """``--affine_prob 1``: every training sample is rotated and scaled, the label with its image."""
    from monai.bundle import ConfigParser

    size = 256
    yy, xx = np.mgrid[:size, :size]
    disc = np.hypot(yy - 90, xx - 150) <= 50  # off-centre, so a rotation moves it
    Image.fromarray(np.repeat((disc * 255).astype(np.uint8)[..., None], 3, axis=2)).save(tmp_path / "image.png")
    Image.fromarray((disc * 255).astype(np.uint8)).save(tmp_path / "label.png")
    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / f"{bundle}.json")
    parser["affine_prob"] = 1.0
    case = {"image": str(tmp_path / "image.png"), "label": str(tmp_path / "label.png")}
    monkeypatch.chdir(ROOT)  # the bundle pulls configs/ by relative path
    train = parser.get_parsed_content("train#preprocessing")
    train.set_random_state(seed=0)
    moved = []
    for _ in range(8):
        item = train(case)
        image, label = item["image"][0].numpy() > 0.5, item["label"][0].numpy() > 0
        assert set(np.unique(item["label"].numpy())) <= {0.0, 1.0}  # nearest: the label stays binary
        assert overlap(image, label)[0] > 0.97  # bilinear image, nearest label: boundary pixels only
        # the closest of the disc's flips and quarter turns (what the other augmentations can make of it)
        moved.append(max(overlap(label, np.rot90(d, k))[0] for d in (disc, disc[::-1]) for k in range(4)))
    assert sum(m < 0.9 for m in moved) >= 5, moved  # rotated off the quarter turns, or scaled
