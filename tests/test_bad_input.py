"""Bad input stops a run with an error naming the file (or, when asked, is skipped and reported)."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from pipeline.data import DatasetError, check_cases, ph2
from pipeline.data.synthetic import write_ph2
from pipeline.runs import check_hyperparameters
from pipeline.transforms import CheckPaird

from conftest import ROOT, error_chain, run_bundle, run_in_process


def meta(a, name):
    return MetaTensor(torch.as_tensor(a, dtype=torch.float32), meta={"filename_or_obj": name})


def test_check_paird():
    img = meta(np.zeros((3, 8, 10)), "img.bmp")
    ok = {"image": img, "label": meta(np.zeros((1, 8, 10)), "ok.bmp")}
    assert CheckPaird()(ok) == ok
    with pytest.raises(ValueError, match=r"small.bmp: mask size \(8, 9\) differs from the size \(8, 10\) of its "
                                         r"image img.bmp"):
        CheckPaird()({"image": img, "label": meta(np.zeros((1, 8, 9)), "small.bmp")})
    soft = np.zeros((1, 8, 10))
    soft[0, :2], soft[0, 2:4] = 128, 255
    with pytest.raises(ValueError, match="soft.png: mask is not binary: 3 distinct values"):
        CheckPaird()({"image": img, "label": meta(soft, "soft.png")})
    with pytest.raises(ValueError, match="exactly two keys"):
        CheckPaird(keys=["image"])


@pytest.fixture()
def broken_ph2(tmp_path):
    """A PH2 set whose IMD903 mask has the wrong size and whose IMD904 image is unreadable."""
    root = write_ph2(tmp_path / "PH2Dataset", n_cases=8, seed=4)
    (root / "SYNTHETIC.txt").unlink()  # behave like a user's folder
    mask = root / ph2.IMAGES_DIR / "IMD903" / "IMD903_lesion" / "IMD903_lesion.bmp"
    Image.open(mask).crop((0, 0, 100, 80)).save(mask)
    (root / ph2.IMAGES_DIR / "IMD904" / "IMD904_Dermoscopic_Image" / "IMD904.bmp").write_bytes(b"not a bitmap")
    return root


def test_bad_case_stops_the_run_naming_the_file(broken_ph2, tmp_path):
    shutil.rmtree(broken_ph2 / ph2.IMAGES_DIR / "IMD904")
    proc = run_bundle("run", "training", "--config_file", "bundles/ph2.json", "--dataset_dir", broken_ph2,
                      "--epochs", 1, "--output_dir", tmp_path / "run", check=False)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "IMD903: ValueError: " in log and "IMD903_lesion.bmp: mask size (80, 100) differs" in log
    assert "--skip_bad_cases true" in log
    # the reason is the last thing on screen, not MONAI's "Failed to evaluate ConfigExpression"
    last = [line for line in proc.stderr.splitlines() if line.strip()][-2:]
    assert last[0].startswith("error: IMD903: ") and "IMD903_lesion.bmp" in last[0] and "PIPELINE_TRACEBACK" in last[1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "models").exists()


def test_unreadable_image_is_named(broken_ph2, tmp_path):
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / "ph2.json")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        load = Compose(parser.get_parsed_content("load_pair"))
    finally:
        os.chdir(cwd)
    case = {c["case_id"]: c for c in ph2.find_cases(broken_ph2)}["IMD904"]
    with pytest.raises(Exception) as info:
        load(dict(case))
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("IMD904.bmp" in m for m in chain)
    # met anywhere else (a loader thread, the engine), the last line on screen says it in one line too
    from pipeline.errors import message

    assert message(info.value).startswith(f"error: {case['image']} is not a readable image (PIL.UnidentifiedImageError")
    assert "\n" not in message(info.value)
    # the run's check says it in one line, not with MONAI's tracebacks of every reader it tried
    with pytest.raises(DatasetError) as info:
        check_cases([case], load)
    text = str(info.value)
    assert text.startswith(f"IMD904: {case['image']} is not a readable image (PIL.UnidentifiedImageError: ")
    assert "\n" not in text and "Traceback" not in text


def test_a_case_failing_in_the_loading_thread_ends_the_loop_with_its_error():
    """MONAI's ThreadDataLoader prints such an error in its thread and ends the epoch early as if the data had run
    out (Ignite then restarts it and repeats the first cases); the engines' loader raises it after the cases before
    it."""
    from monai.data import Dataset

    from pipeline.data.loader import ThreadDataLoader

    class Unreadable(Dataset):
        def __getitem__(self, i):
            if i == 2:
                raise OSError("case 2: unreadable")
            return torch.tensor(i)

    seen = []
    with pytest.raises(OSError, match="case 2: unreadable"):
        for batch in ThreadDataLoader(Unreadable(list(range(4))), batch_size=1):
            seen.append(int(batch))
    assert seen == [0, 1]
    assert [b.tolist() for b in ThreadDataLoader(Dataset(list(range(3))), batch_size=2, repeats=2)] == [
        [0, 1], [0, 1], [2], [2]]
    engine = (ROOT / "configs" / "engine.json").read_text()
    assert '"_target_": "ThreadDataLoader"' not in engine and engine.count("pipeline.data.loader.ThreadDataLoader") == 3


def test_skip_bad_cases_lists_and_counts_them(broken_ph2, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run_in_process("training", dataset_dir=broken_ph2, skip_bad_cases="true", epochs=1, batch_size=2,
                       output_dir=tmp_path / "run")
    log = caplog.text
    assert "skipping bad case IMD903" in log and "skipping bad case IMD904" in log
    skipped = json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["skipped"]
    assert [s["case_id"] for s in skipped] == ["IMD903", "IMD904"]
    assert "differs" in skipped[0]["error"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [s["case_id"] for s in metrics["dataset"]["skipped"]] == ["IMD903", "IMD904"]
    assert metrics["dataset"]["n_cases"] == 6
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert "IMD903" not in splits["train"] + splits["val"] + splits["test"]


def test_all_bad_is_an_error():
    def fail(case):
        raise ValueError(f"{case['case_id']} broken")

    with pytest.raises(DatasetError, match="all 2 cases are bad; first: a: ValueError: a broken"):
        check_cases([{"case_id": "a"}, {"case_id": "b"}], fail, skip=True)
    with pytest.raises(DatasetError, match="a: ValueError: a broken .and 1 more bad cases.; fix the data"):
        check_cases([{"case_id": "a"}, {"case_id": "b"}], fail, skip=False)
    assert check_cases([{"case_id": "a"}], lambda c: c) == ([{"case_id": "a"}], [])


def test_layout_that_does_not_match_the_bundle(tmp_path):
    (tmp_path / "stage1_train" / "abc" / "images").mkdir(parents=True)
    with pytest.raises(Exception) as err:
        run_in_process("training", dataset_dir=tmp_path / "stage1_train", output_dir=tmp_path / "run")
    assert "is not a PH2 dataset folder" in error_chain(err.value)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def ph2_hyperparameters():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / "ph2.json")
    return dict(parser.get_parsed_content("settings"))


@pytest.mark.parametrize("override, message", [
    ({"epochs": -3}, "--epochs must be a positive integer, got -3"),
    ({"network": "vnet"}, "--network 'vnet' is unknown; choose one of: classic_unet, pspnet"),
    ({"loss": "iou"}, "--loss 'iou' is unknown; choose one of: bce, .*dicece"),
    ({"roi_size": [2048, 2048]}, "--roi_size \\[2048, 2048\\] is much larger than the working resolution"),
    ({"lr": 0}, "--lr must be a positive number"),
    ({"key_metric": "val_loss"}, "--key_metric must be one of val_iou, val_dice, val_volume_dice, got 'val_loss'"),
    ({"key_metric": "val_volume_dice"}, "--key_metric val_volume_dice needs --group_metrics true"),
    ({"cache": "ram"}, "--cache must be memory, disk or none, got 'ram'"),
    ({"min_lesion_size": -5}, "--min_lesion_size must be a whole number of pixels >= 0 \\(0: off\\), got -5"),
    ({"zoom": 0}, "--zoom must be a scale factor from 0.25 to 4 \\(1: source resolution\\), got 0"),
    ({"zoom": 2}, "--zoom 2 and --image_size 256 both set the working resolution: use one of them"),
    ({"affine_prob": 1.5}, "--affine_prob must be a probability from 0 to 1 \\(0: off\\), got 1.5"),
])
def test_bad_overrides_are_named(override, message, ph2_hyperparameters):
    check_hyperparameters(dict(ph2_hyperparameters))  # the bundle's own values pass
    with pytest.raises(ValueError, match=message):
        check_hyperparameters({**ph2_hyperparameters, **override})


def test_bad_overrides_fail_before_anything_is_written(tmp_path):
    """From the command line: a non-zero exit naming the option, and no run folder (the other checks above)."""
    proc = run_bundle("run", "training", "--config_file", "bundles/ph2.json", "--epochs", "-3",
                      "--dataset_dir", tmp_path / "none", "--output_dir", tmp_path / "run", check=False)
    assert proc.returncode != 0 and "--epochs must be a positive integer, got -3" in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(Exception) as err:  # a check that needs the bundle's values (image_size), in process
        run_in_process("training", roi_size=[2048, 2048], dataset_dir=tmp_path / "none", output_dir=tmp_path / "run")
    assert "--roi_size [2048, 2048] is much larger than the working resolution" in error_chain(err.value)
    assert not (tmp_path / "run").exists()
