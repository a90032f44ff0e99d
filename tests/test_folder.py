"""The generic images/ + masks/ folder layout, alone and as ``--layout folder`` of the PH2 bundle."""

import csv
import json

import numpy as np
import pytest
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import Compose
from PIL import Image

from pipeline.data import DatasetError, find_cases, find_inputs, folder
from pipeline.data.synthetic import dermoscopy_image
from pipeline.transforms import LoadMaskUniond

from conftest import ROOT

PH2_BUNDLE = ROOT / "bundles" / "ph2.json"


def write_folder_set(root, names_sizes, image_ext=".jpg", mask_suffix="_segmentation", seed=0):
    """A folder-layout dataset of dermoscopy-like images (``image_ext``) and 0/255 png masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, (h, w) in names_sizes:
        img, mask = dermoscopy_image(rng, h, w)
        Image.fromarray(img).save(root / "images" / f"{name}{image_ext}")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{name}{mask_suffix}.png")
    return root


def blank(path, size=(12, 10), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


@pytest.fixture(scope="module")
def isic_like(tmp_path_factory):
    names_sizes = [(f"ISIC_000000{i}", hw) for i, hw in enumerate([(90, 120), (120, 100), (100, 100), (80, 140),
                                                                   (110, 130)])]
    return write_folder_set(tmp_path_factory.mktemp("isic") / "isic", names_sizes)


def test_mask_suffixes_and_extensions(tmp_path):
    pairs = {"a.png": "a.png", "b.jpg": "b_mask.png", "c.jpeg": "c_masks.bmp", "d.bmp": "d_segmentation.png",
             "e.tif": "e_seg.tif", "f.tiff": "f_label.png", "ISIC_0000000.jpg": "ISIC_0000000_Segmentation.png",
             "g_seg.png": "g_seg_mask.png"}
    for image, mask in pairs.items():
        blank(tmp_path / "images" / image, mode="RGB")
        blank(tmp_path / "masks" / mask)
    (tmp_path / "images" / "LICENSE.txt").write_text("not an image")  # ISIC archives ship these
    (tmp_path / "masks" / ".DS_Store").write_bytes(b"")
    cases = find_cases("folder", tmp_path)
    assert [c["case_id"] for c in cases] == sorted(p.rsplit(".", 1)[0] for p in pairs)
    for c in cases:
        image = c["image"].rsplit("/", 1)[1]
        assert c["group"] == c["case_id"] and c["label"] == str(tmp_path / "masks" / pairs[image])
    assert find_inputs(tmp_path, "folder") == cases


def test_unlabelled_folder_and_flat_inference_inputs(tmp_path):
    blank(tmp_path / "set" / "images" / "x.png", mode="RGB")
    with pytest.raises(DatasetError, match="'masks/' folder missing"):
        folder.find_cases(tmp_path / "set")
    assert folder.find_cases(tmp_path / "set", require_labels=False) == [
        {"image": str(tmp_path / "set" / "images" / "x.png"), "case_id": "x", "group": "x"}]
    blank(tmp_path / "flat" / "y.jpg", mode="RGB")  # no images/ folder: find_inputs falls back to a flat folder
    assert [c["case_id"] for c in find_inputs(tmp_path / "flat", "folder")] == ["y"]


@pytest.mark.parametrize("images, masks, message", [
    (None, None, r"does not exist: .*case"),
    (None, [], r"not a folder-layout dataset: 'images/' folder missing"),
    ([], [], r"no images \(png/jpg/jpeg/bmp/tif/tiff\) in .*images"),
    (["a.png", "b.png"], ["a_mask.png"], r"image without a mask: .*images/b\.png"),
    (["a.png"], ["a.png", "z_mask.png"], r"z_mask\.png: mask without an image .*'z_mask' or 'z'"),
    (["a.png"], ["a.png", "a_seg.png"], r"two masks for image .*images/a\.png: .*masks/a\.png and .*masks/a_seg\.png"),
    (["a.png", "a.jpg"], ["a.png"], r"two images share the case id 'a': .*images/a\.jpg and .*images/a\.png"),
    (["a.png", "a_seg.png"], ["a_seg.png"], r"a_seg\.png: mask fits more than one image: .*a_seg\.png, .*a\.png"),
    (["a.png", "sub/b.png"], ["a.png"], r"images/sub: unexpected folder"),
])
def test_errors_name_the_files(tmp_path, images, masks, message):
    root = tmp_path / "case"
    if images is not None:
        (root / "images").mkdir(parents=True)
        for name in images:
            blank(root / "images" / name, mode="RGB")
    if masks is not None:
        (root / "masks").mkdir(parents=True)
        for name in masks:
            blank(root / "masks" / name)
    with pytest.raises(DatasetError, match=message):
        find_cases("folder", root)


def test_ph2_bundle_and_mask_union_load_folder_cases(isic_like):
    """The PH2 bundle's loaders take a folder-layout case as they are; LoadMaskUniond (the DSB2018 bundle's label
    loader) takes its single mask too."""
    parser = ConfigParser()
    parser.read_config(PH2_BUNDLE)
    load = Compose(parser.get_parsed_content("load_pair"))
    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / "dsb2018.json")
    dsb_load = Compose(parser.get_parsed_content("load_pair"))
    for c in folder.find_cases(isic_like)[:2]:
        d = load(dict(c))
        w, h = Image.open(c["image"]).size
        truth = np.asarray(Image.open(c["label"])) > 0
        assert tuple(d["image"].shape) == (3, h, w) and tuple(d["label"].shape) == (1, h, w)
        np.testing.assert_array_equal(d["label"].numpy()[0] > 0, truth)
        assert set(np.unique(d["label"].numpy())) <= {0.0, 1.0}
        union = LoadMaskUniond(keys="label")(dict(c))["label"]
        np.testing.assert_array_equal(union.numpy(), d["label"].numpy())
        # the DSB2018 bundle's loaders (mask union of one file) read the same case the same way
        d2 = dsb_load(dict(c))
        assert tuple(d2["image"].shape) == (3, h, w)
        np.testing.assert_array_equal(d2["label"].numpy(), d["label"].numpy())


def run(bundle, run_id, **overrides):
    wf = ConfigWorkflow(config_file=str(bundle), workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()


def test_ph2_bundle_trains_and_evaluates_a_folder_dataset(isic_like, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    common = {"layout": "folder", "dataset_dir": str(isic_like), "width": 4, "image_size": 96, "roi_size": [64, 64]}
    run(PH2_BUNDLE, "training", epochs=1, val_interval=1, batch_size=2, output_dir=str(tmp_path / "run"), **common)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["layout"] == "folder" and config["dataset"]["n_cases"] == 5
    assert not config["dataset"]["synthetic"]
    run(PH2_BUNDLE, "evaluate", ckpt=str(tmp_path / "run" / "models" / "best.pt"), split="all",
        output_dir=str(tmp_path / "eval"), **common)
    with open(tmp_path / "eval" / "per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == [f"ISIC_000000{i}" for i in range(5)]
    for r, c in zip(rows, folder.find_cases(isic_like)):
        assert int(r["area_true"]) == int((np.asarray(Image.open(c["label"])) > 0).sum())  # full-resolution truth
