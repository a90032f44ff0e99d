"""DSB2018 nuclei: the stage1_train reader, the synthetic writer, mask unions and the bundle end to end."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.data import MetaTensor
from PIL import Image

from pipeline.data import DatasetError, dsb2018, find_cases, find_inputs
from pipeline.data.synthetic import WRITERS, is_synthetic, write_dsb2018
from pipeline.transforms import LoadMaskUniond

from conftest import ROOT, SHARED, bundle_loader, needs

REAL_DSB = SHARED / "dsb2018" / "stage1_train"
BUNDLE = ROOT / "bundles" / "dsb2018.json"


@pytest.fixture(scope="module")
def dsb_dir(tmp_path_factory):
    return write_dsb2018(tmp_path_factory.mktemp("dsb") / "stage1_train", n_cases=5, seed=1)


def union_of_files(paths) -> np.ndarray:
    out = np.zeros(np.asarray(Image.open(paths[0])).shape, dtype=bool)
    for p in paths:
        out |= np.asarray(Image.open(p)) > 0
    return out


def test_find_cases_layout(dsb_dir):
    cases = find_cases("dsb2018", dsb_dir)
    assert len(cases) == 5 and [c["case_id"] for c in cases] == sorted(c["case_id"] for c in cases)
    for c in cases:
        cid = c["case_id"]
        assert re.fullmatch(r"[0-9a-f]{64}", cid) and c["group"] == cid
        assert c["image"] == str(dsb_dir / cid / "images" / f"{cid}.png")
        assert isinstance(c["label"], list) and len(c["label"]) > 1 and c["label"] == sorted(c["label"])
        assert all(p.startswith(str(dsb_dir / cid / "masks")) and p.endswith(".png") for p in c["label"])
    # the parent of stage1_train is accepted too; the synthetic marker is recognised and not taken for a case
    assert dsb2018.find_cases(dsb_dir.parent) == cases
    assert is_synthetic(dsb_dir) and WRITERS["dsb2018"] is write_dsb2018
    assert [c["case_id"] for c in find_inputs(dsb_dir, "dsb2018")] == [c["case_id"] for c in cases]


def test_synthetic_set_looks_like_the_real_one(dsb_dir):
    cases = dsb2018.find_cases(dsb_dir)
    sizes, dark_background = set(), set()
    for c in cases:
        img = Image.open(c["image"])
        assert img.mode == "RGBA"
        sizes.add(img.size[::-1])
        truth = union_of_files(c["label"])
        masks = [np.asarray(Image.open(p)) for p in c["label"]]
        assert all(m.shape == truth.shape and set(np.unique(m)) == {0, 255} for m in masks)
        assert sum((m > 0).sum() for m in masks) == truth.sum()  # one file per nucleus, no overlaps
        grey = np.asarray(img.convert("L"), dtype=np.float32)
        dark_background.add(bool(grey[truth].mean() > grey[~truth].mean()))  # bright nuclei = fluorescence
    assert sizes == {(256, 256), (256, 320), (360, 360), (520, 696)}
    assert dark_background == {True, False}  # fluorescence and bright-field / H&E looks both present


def test_writer_is_deterministic(tmp_path):
    a = write_dsb2018(tmp_path / "a", n_cases=2, seed=7)
    b = write_dsb2018(tmp_path / "b", n_cases=2, seed=7)
    ca, cb = dsb2018.find_cases(a), dsb2018.find_cases(b)
    assert [c["case_id"] for c in ca] == [c["case_id"] for c in cb]
    for x, y in zip(ca, cb):
        assert Image.open(x["image"]).tobytes() == Image.open(y["image"]).tobytes()
        assert [p.rsplit("/", 1)[1] for p in x["label"]] == [p.rsplit("/", 1)[1] for p in y["label"]]


def test_bundle_loads_rgb_and_the_union_of_the_masks(dsb_dir):
    load = bundle_loader("dsb2018")
    for c in dsb2018.find_cases(dsb_dir)[:2]:
        d = load(dict(c))
        w, h = Image.open(c["image"]).size
        assert tuple(d["image"].shape) == (3, h, w) and tuple(d["label"].shape) == (1, h, w)
        assert 0.0 <= float(d["image"].min()) and float(d["image"].max()) <= 1.0
        assert d["label"].dtype == np.float32 or str(d["label"].dtype) == "torch.float32"
        np.testing.assert_array_equal(d["label"].numpy()[0] > 0, union_of_files(c["label"]))
        assert set(np.unique(d["label"].numpy())) == {0.0, 1.0}


@pytest.mark.parametrize("invert", [False, True])
def test_bright_background_images_are_inverted_when_asked(invert, tmp_path):
    """A bright-field-like image (dark nuclei on a bright background) reaches the network as bright on dark with
    ``invert_bright_background``; a fluorescence-like one is left as it is either way."""
    load = bundle_loader("dsb2018", invert_bright_background=invert)
    rng = np.random.default_rng(0)
    for name, background, nucleus in (("bright", 220, 60), ("dark", 10, 200)):
        case = tmp_path / name
        (case / "images").mkdir(parents=True)
        (case / "masks").mkdir()
        img = np.full((32, 32, 3), background, np.uint8) + rng.integers(0, 5, (32, 32, 3), dtype=np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:16, 8:16] = 255
        img[mask > 0] = nucleus
        Image.fromarray(img).save(case / "images" / f"{name}.png")
        Image.fromarray(mask).save(case / "masks" / "m0.png")
        d = load({"image": str(case / "images" / f"{name}.png"), "label": [str(case / "masks" / "m0.png")]})
        x = d["image"].numpy().mean(0)
        inside, outside = x[8:16, 8:16].mean(), x[20:, 20:].mean()
        assert (inside > outside) == (name == "dark" or invert)



def _write_kind_case(root, name, background, nucleus):
    case = root / name
    (case / "images").mkdir(parents=True)
    img = np.full((32, 32, 3), background, np.uint8) + np.random.default_rng(0).integers(0, 5, (32, 32, 3), np.uint8)
    img[8:16, 8:16] = nucleus
    Image.fromarray(img).save(case / "images" / f"{name}.png")
    return {"image": str(case / "images" / f"{name}.png"), "case_id": name}


def test_bright_background_weights_draw_the_asked_share(tmp_path):
    """One bright-background image among four dark ones is drawn with probability ``fraction``; ``None`` or a set of
    one kind gives uniform weights; a fraction outside (0, 1) and an unreadable image are errors naming them."""
    cases = [_write_kind_case(tmp_path, f"dark{i}", 10, 200) for i in range(4)]
    cases.append(_write_kind_case(tmp_path, "bright", 220, 60))
    weights = dsb2018.bright_background_weights(cases, 0.35)
    assert weights[-1] == pytest.approx(0.35) and sum(weights) == pytest.approx(1.0)
    sampler = torch.utils.data.WeightedRandomSampler(weights, 20000, generator=torch.Generator().manual_seed(0))
    assert abs(np.mean([i == 4 for i in sampler]) - 0.35) < 0.02  # uniform would draw it 0.2 of the time
    assert dsb2018.bright_background_weights(cases, None) == [0.2] * 5
    assert dsb2018.bright_background_weights(cases[:4], 0.35) == [0.25] * 4
    with pytest.raises(ValueError, match="bright_background_fraction"):
        dsb2018.bright_background_weights(cases, 1.0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        dsb2018.bright_background_weights([{"image": str(tmp_path / "broken.png")}], 0.35)


@pytest.mark.parametrize("fraction", [None, 0.5])
def test_bundle_samples_bright_background_images_only_when_asked(fraction, dsb_dir):
    """``--bright_background_fraction`` builds the weighted sampler over the training split; null (the default)
    leaves the loader shuffling as before."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE))
    parser.update({"bright_background_fraction": fraction, "dataset_dir": str(dsb_dir), "folds": 0})
    sampler = parser.get_parsed_content("train_sampler")
    if fraction is None:
        assert sampler is None
    else:
        n_train = len(parser.get_parsed_content("data#splits")["train"])
        assert isinstance(sampler, torch.utils.data.WeightedRandomSampler) and sampler.num_samples == n_train

def test_load_mask_union_single_path_and_meta(tmp_path):
    m = np.zeros((5, 7), dtype=np.uint8)
    m[1:3, 2:6] = 1  # 0/1 masks count too
    Image.fromarray(m).save(tmp_path / "one.png")
    Image.fromarray(m * 255).convert("1").save(tmp_path / "bits.bmp")
    for value in (str(tmp_path / "one.png"), [str(tmp_path / "bits.bmp")]):
        out = LoadMaskUniond(keys="label")({"label": value, "other": 1})["label"]
        assert isinstance(out, MetaTensor) and tuple(out.shape) == (1, 5, 7) and str(out.dtype) == "torch.float32"
        np.testing.assert_array_equal(out.numpy()[0], m.astype(np.float32))
        first = value if isinstance(value, str) else value[0]
        assert out.meta["filename_or_obj"] == first
    assert LoadMaskUniond(keys="label", allow_missing_keys=True)({"image": 1}) == {"image": 1}
    with pytest.raises(ValueError, match="empty list"):
        LoadMaskUniond(keys="label")({"label": []})


def test_load_mask_union_errors_name_the_file(tmp_path):
    ok = tmp_path / "ok.png"
    Image.fromarray(np.full((8, 10), 255, dtype=np.uint8)).save(ok)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.arange(80, dtype=np.uint8).reshape(8, 10)).save(grey)
    with pytest.raises(ValueError, match=r"grey\.png: not a binary mask: 80 distinct values \(0, 1, 2"):
        LoadMaskUniond(keys="label")({"label": [str(ok), str(grey)]})
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 9), dtype=np.uint8)).save(small)
    with pytest.raises(ValueError, match=r"small\.png: mask size 9x8 differs from 10x8 of .*ok\.png"):
        LoadMaskUniond(keys="label")({"label": [str(ok), str(small)]})


def test_errors_name_the_file(tmp_path, dsb_dir):
    with pytest.raises(DatasetError, match="does not exist: .*nope"):
        dsb2018.find_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no DSB2018 cases"):
        dsb2018.find_cases(tmp_path / "empty")

    def broken(name):
        return shutil.copytree(dsb_dir, tmp_path / name)

    cid = dsb2018.find_cases(dsb_dir)[1]["case_id"]
    d = broken("no_image")
    (d / cid / "images" / f"{cid}.png").unlink()
    with pytest.raises(DatasetError, match=f"{cid}: image missing: .*images/{cid}.png"):
        dsb2018.find_cases(d)

    d = broken("no_masks")
    for m in (d / cid / "masks").iterdir():
        m.unlink()
    with pytest.raises(DatasetError, match=f"{cid}: no masks in .*{cid}/masks"):
        dsb2018.find_cases(d)
    assert "label" not in dsb2018.find_cases(d, require_labels=False)[1]  # inference needs no masks
    (d / cid / "masks").rmdir()
    with pytest.raises(DatasetError, match=f"{cid}: masks folder missing"):
        dsb2018.find_cases(d)
    assert len(dsb2018.find_cases(d, require_labels=False)) == 5

    for where, name, what in [(".", "notes.csv", "file in a DSB2018 stage1_train"),
                              (cid, "extra", "folder in DSB2018 case"),
                              (f"{cid}/images", "other.png", f"file in {cid}/images/"),
                              (f"{cid}/masks", "mask.tif", f"file in {cid}/masks/")]:
        d = broken(f"stray_{name}")
        target = d / where / name
        target.mkdir() if name == "extra" else target.write_bytes(b"x")
        with pytest.raises(DatasetError, match=f"{re.escape(name)}: unexpected {what}"):
            dsb2018.find_cases(d, require_labels=False)
    d = broken("dotfiles")
    (d / ".DS_Store").write_bytes(b"x")
    (d / cid / "masks" / ".DS_Store").write_bytes(b"x")
    got, want = dsb2018.find_cases(d), dsb2018.find_cases(dsb_dir)  # OS metadata files are not data
    assert [(c["case_id"], len(c["label"])) for c in got] == [(c["case_id"], len(c["label"])) for c in want]


def test_bundle_declares_every_id_the_engine_uses():
    bundle = json.loads(BUNDLE.read_text())
    engine_text = (ROOT / "configs" / "engine.json").read_text()
    used = set(re.findall(r"@(\w+)", engine_text)) - set(json.loads(engine_text))
    assert not used - set(bundle), f"ids the engine references but bundles/dsb2018.json lacks: {used - set(bundle)}"
    ph2 = json.loads((ROOT / "bundles" / "ph2.json").read_text())
    includes = {k: v for k, v in ph2.items() if isinstance(v, str) and v.startswith("%configs/engine.json#")}
    assert {k: bundle.get(k) for k in includes} == includes


def run(run_id, **overrides):
    wf = ConfigWorkflow(config_file=str(BUNDLE), workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()


def test_bundle_trains_evaluates_and_infers_on_synthetic_fallback(tmp_path, monkeypatch):
    """The default dataset folder is absent, so the bundle writes its synthetic stage1_train sample and uses it."""
    monkeypatch.chdir(ROOT)
    default, synth = str(tmp_path / "data" / "stage1_train"), tmp_path / "synthetic" / "stage1_train"
    common = {"width": 4, "dataset_dir": default, "default_dataset_dir": default, "synthetic_dir": str(synth),
              "synthetic_cases": 4, "sw_batch_size": 8}
    run("training", epochs=1, val_interval=1, batch_size=2, output_dir=str(tmp_path / "run"), **common)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["synthetic"] and config["dataset"]["dir"] == str(synth)
    assert config["hyperparameters"]["image_size"] == 0 and config["hyperparameters"]["fill_holes"] is False
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["completed"] and 0.0 <= metrics["history"][0]["val_iou"] <= 1.0
    ckpt = str(tmp_path / "run" / "models" / "best.pt")

    run("evaluate", ckpt=ckpt, split="all", output_dir=str(tmp_path / "eval"), **common)
    with open(tmp_path / "eval" / "per_case.csv") as f:
        rows = list(csv.DictReader(f))
    cases = dsb2018.find_cases(synth)
    assert [r["case_id"] for r in rows] == [c["case_id"] for c in cases]
    for r, c in zip(rows, cases):
        assert int(r["area_true"]) == int(union_of_files(c["label"]).sum())

    run("inference", ckpt=ckpt, input_dir=str(synth), output_dir=str(tmp_path / "out"), **common)
    for c in cases:
        mask = Image.open(tmp_path / "out" / "masks" / f"{c['case_id']}.png")
        assert mask.size == Image.open(c["image"]).size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    # an outside scorer of inference's masks gets evaluate's per-image IoU
    for r, c in zip(rows, cases):
        pred = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{c['case_id']}.png")) > 127
        truth = union_of_files(c["label"]) > 0
        union = (pred | truth).sum()
        assert int(pred.sum()) == int(r["area_pred"]), c["case_id"]
        assert ((pred & truth).sum() / union if union else 1.0) == pytest.approx(float(r["iou"]), abs=1e-6)


@needs(REAL_DSB)
def test_real_dsb2018():
    cases = find_cases("dsb2018", REAL_DSB)
    assert len(cases) == 82
    assert dsb2018.find_cases(REAL_DSB.parent) == cases
    load = bundle_loader("dsb2018")
    by_size = {}
    for c in cases:
        by_size.setdefault(Image.open(c["image"]).size, c)
    assert len(by_size) == 9
    for c in by_size.values():  # one case of each size
        assert Image.open(c["image"]).mode == "RGBA"
        d = load(dict(c))
        assert d["image"].shape[0] == 3 and tuple(d["label"].shape) == (1, *d["image"].shape[1:])
        assert set(np.unique(d["label"].numpy())) <= {0.0, 1.0} and float(d["label"].sum()) > 0
