import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.data import DatasetError, find_cases, find_inputs, ph2
from pipeline.data.synthetic import write_ph2

from conftest import REAL_PH2, bundle_loader, needs


@pytest.fixture(scope="module")
def ph2_dir(tmp_path_factory):
    return write_ph2(tmp_path_factory.mktemp("ph2") / "PH2Dataset", n_cases=5, seed=3)


def test_find_cases_layout(ph2_dir):
    cases = ph2.find_cases(ph2_dir)
    assert [c["case_id"] for c in cases] == [f"IMD90{i}" for i in range(1, 6)]
    for c in cases:
        assert c["group"] == c["case_id"]
        assert c["image"].endswith(f"{c['case_id']}_Dermoscopic_Image/{c['case_id']}.bmp")
        assert c["label"].endswith(f"{c['case_id']}_lesion/{c['case_id']}_lesion.bmp")
        assert "_roi" not in c["label"]
        assert c["diagnosis"] in (0, 1, 2)
    # the images folder itself is accepted as root too
    assert ph2.find_cases(ph2_dir / ph2.IMAGES_DIR) == cases


def test_rgb_and_one_bit_masks_load_as_the_same_binary_mask(ph2_dir):
    cases = ph2.find_cases(ph2_dir)
    assert Image.open(cases[0]["label"]).mode == "RGB"  # the IMD002-like quirk
    assert Image.open(cases[1]["label"]).mode == "1"
    load = bundle_loader("ph2")
    for c in cases[:2]:
        d = load(dict(c))
        img, lab = d["image"], d["label"]
        truth = np.asarray(Image.open(c["label"]).convert("L")) > 127
        w, h = Image.open(c["image"]).size
        assert tuple(img.shape) == (3, h, w) and tuple(lab.shape) == (1, h, w)  # (C, H, W): no transposes
        assert set(np.unique(lab.numpy())) <= {0.0, 1.0}
        np.testing.assert_array_equal(lab.numpy()[0] > 0, truth)
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_errors_name_the_file(tmp_path, ph2_dir):
    with pytest.raises(DatasetError, match="does not exist"):
        ph2.find_cases(tmp_path / "nope")
    empty = tmp_path / "empty"
    (empty / ph2.IMAGES_DIR).mkdir(parents=True)
    with pytest.raises(DatasetError, match="no PH2 cases"):
        ph2.find_cases(empty)
    with pytest.raises(DatasetError, match="not a PH2 dataset folder"):
        ph2.find_cases(tmp_path)

    broken = shutil.copytree(ph2_dir, tmp_path / "broken")
    mask = broken / ph2.IMAGES_DIR / "IMD903" / "IMD903_lesion" / "IMD903_lesion.bmp"
    mask.unlink()
    with pytest.raises(DatasetError, match="IMD903.*lesion mask missing.*IMD903_lesion.bmp"):
        ph2.find_cases(broken)
    assert len(ph2.find_cases(broken, require_labels=False)) == 5  # inference needs no masks
    (broken / ph2.IMAGES_DIR / "notes").mkdir()
    with pytest.raises(DatasetError, match="notes.*unexpected folder"):
        ph2.find_cases(broken, require_labels=False)


def test_bad_csv_is_reported(tmp_path, ph2_dir):
    d = shutil.copytree(ph2_dir, tmp_path / "csv")
    (d / ph2.CSV_NAME).write_text("Name,Clinical Diagnosis\nIMD001,x\n")
    with pytest.raises(DatasetError, match="PH2_dataset.csv, line 2"):
        ph2.find_cases(d)


def test_find_inputs_flat_folder_and_layout(tmp_path, ph2_dir):
    assert [c["case_id"] for c in find_inputs(ph2_dir, "ph2")] == [c["case_id"] for c in ph2.find_cases(ph2_dir)]
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (40, 30)).save(flat / "b.png")
    Image.new("RGB", (40, 30)).save(flat / "a.jpg")
    (flat / "notes.txt").write_text("not an image")
    assert [c["case_id"] for c in find_inputs(flat, "ph2")] == ["a", "b"]
    Image.new("RGB", (40, 30)).save(flat / "a.tif")
    with pytest.raises(DatasetError, match="share the case id 'a'"):
        find_inputs(flat, "ph2")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        find_inputs(no_images, "ph2")
    with pytest.raises(ValueError, match="unknown layout 'xyz'; choose one of: .*ph2"):
        find_cases("xyz", ph2_dir)


@needs(REAL_PH2)
def test_real_ph2():
    cases = find_cases("ph2", REAL_PH2)
    assert len(cases) == 90
    by_id = {c["case_id"]: c for c in cases}
    assert sum(c["diagnosis"] == 2 for c in cases) == 18
    load = bundle_loader("ph2")
    d = load(dict(by_id["IMD002"]))  # the 24-bit RGB mask
    assert d["label"].shape[0] == 1 and set(np.unique(d["label"].numpy())) == {0.0, 1.0}
    sizes = {Image.open(c["image"]).size for c in cases}
    assert len(sizes) > 1 and all(761 <= w <= 769 and 553 <= h <= 577 for w, h in sizes)
