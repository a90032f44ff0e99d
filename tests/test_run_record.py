"""Defaults live once (configs/defaults.json), every run records what it resolved, and evaluation restores how its
model was trained from that record."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pipeline import bundles
from pipeline.data.synthetic import write_ph2
from pipeline.runs import host, machine_line

from conftest import ROOT, run_in_process

BUNDLES = ["ph2", "lgg", "dsb2018", "nifti"]


def test_bundle_tails_are_current():
    assert [p.name for p in bundles.bundle_files()] == sorted(f"{b}.json" for b in BUNDLES)
    stale = [p.name for p in bundles.bundle_files() if bundles.stale(p)]
    assert not stale, f"{stale}: run python -m pipeline.bundles"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundles_state_only_where_they_depart(bundle):
    defaults = json.loads((ROOT / bundles.DEFAULTS).read_text())
    own = bundles.own_part(json.loads((ROOT / "bundles" / f"{bundle}.json").read_text()))
    repeated = [k for k, v in own.items() if k in defaults and v == defaults[k]]
    assert not repeated, f"bundles/{bundle}.json repeats defaults: {repeated}"
    assert own["bundle_name"] == bundle and own["bundle_file"] == f"bundles/{bundle}.json"


@pytest.fixture()
def repo_copy(tmp_path):
    for d in ("bundles", "configs"):
        shutil.copytree(ROOT / d, tmp_path / d, symlinks=True)
    return tmp_path


def _settings(root, bundle, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(root / "bundles" / f"{bundle}.json")
    for k, v in overrides.items():
        parser[k] = v
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        parser.parse()
        return parser.get_parsed_content("settings")
    finally:
        os.chdir(cwd)


def test_one_edit_adds_a_setting_to_every_bundle_and_record(repo_copy):
    defaults = json.loads((repo_copy / bundles.DEFAULTS).read_text())
    defaults["new_knob"] = 7
    (repo_copy / bundles.DEFAULTS).write_text(json.dumps(defaults, indent=4))
    # until the tails are written, every run stops and says how to bring them up to date
    with pytest.raises(SystemExit, match="python -m pipeline.bundles"):
        bundles.check_current("bundles/lgg.json", root=repo_copy)
    proc = subprocess.run([sys.executable, "-m", "pipeline.bundles", "--root", str(repo_copy)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.count("wrote bundles/") == 4
    for b in BUNDLES:
        assert bundles.check_current(f"bundles/{b}.json", root=repo_copy)
        assert _settings(repo_copy, b)["new_knob"] == 7
        assert _settings(repo_copy, b, new_knob=9)["new_knob"] == 9
    # a changed default value needs no step at all: the tails forward it
    defaults["epochs"] = 3
    (repo_copy / bundles.DEFAULTS).write_text(json.dumps(defaults, indent=4))
    assert not bundles.stale(repo_copy / "bundles" / "dsb2018.json", repo_copy)
    assert _settings(repo_copy, "dsb2018")["epochs"] == 3
    assert _settings(repo_copy, "ph2")["epochs"] == 150  # PH2 states its own


def test_records_name_settings_the_old_hand_kept_list_missed():
    lgg = _settings(ROOT, "lgg")
    for key in ("intensity_norm", "intensity_percentile", "tumour_fraction", "flair_only_prob", "sw_batch_size",
                "threshold"):
        assert key in lgg
    assert "hair_prob" in _settings(ROOT, "ph2") and "slice_axis" in _settings(ROOT, "nifti")
    assert "train_sampler" not in lgg  # a component: recorded as written, in provenance


def test_components_read_model_settings_as_restored():
    """Evaluate and inference restore a model's settings into ``resolved`` (pipeline.runs.resolve); a transform or
    engine part that read ``@<setting>`` itself would take the bundle's default instead (NIfTI's reader once fed a
    ``--context_slices 0`` model three channels). Settings may refer to each other: they are restored together."""
    import re

    from pipeline.bundles import COMPONENT_KEYS, own_part
    from pipeline.runs import MODEL_SETTINGS

    parts = {f"configs/engine.json#{k}": v for k, v in json.loads((ROOT / "configs/engine.json").read_text()).items()
             if k != "settings"}
    for bundle in ("ph2", "lgg", "dsb2018", "nifti"):
        own = own_part(json.loads((ROOT / "bundles" / f"{bundle}.json").read_text()))
        parts.update({f"bundles/{bundle}.json#{k}": v for k, v in own.items()
                      if k in COMPONENT_KEYS or isinstance(v, (dict, list))})
    direct = [f"{where} reads @{key}" for where, value in parts.items() for key in MODEL_SETTINGS
              if re.search(rf"@{key}(?![\w#])", json.dumps(value))]
    assert direct == [], "use @resolved['<setting>']: " + "; ".join(direct)
    assert any("context_slices" in json.dumps(v) for k, v in parts.items() if k.endswith("nifti.json#load_image"))


@pytest.fixture(scope="module")
def trained_otherwise(tmp_path_factory):
    """A PH2 model trained with a non-default network and non-default preprocessing and post-processing."""
    tmp = tmp_path_factory.mktemp("record")
    data = write_ph2(tmp / "PH2Dataset", n_cases=20, seed=3)
    run = tmp / "run"
    run_in_process("training", dataset_dir=data, output_dir=run, network="unet2", width=8, image_size=96,
                   roi_size=[96, 96], threshold=0.4, fill_holes=False, min_lesion_size=5, epochs=12, val_interval=2,
                   batch_size=4, lr=0.005)
    return {"tmp": tmp, "data": data, "run": run}


def test_run_records_settings_overrides_and_provenance(trained_otherwise):
    doc = json.loads((trained_otherwise["run"] / "config.json").read_text())
    hp = doc["hyperparameters"]
    assert hp["network"] == "unet2" and hp["image_size"] == 96 and hp["threshold"] == 0.4 and hp["epochs"] == 12
    assert hp["hair_prob"] == 0.0 and hp["keep_largest_component"] is True  # the bundle's own values
    assert doc["overrides"]["network"] == "unet2" and "hair_prob" not in doc["overrides"]
    prov = doc["provenance"]
    assert prov["package"]["monai"] and prov["package"]["torch"] and prov["bundle_file"] == "bundles/ph2.json"
    assert len(prov["git_commit"] or "") in (0, 40)
    assert prov["host"]["torch_threads"] == torch.get_num_threads() and prov["host"]["cpus"] == os.cpu_count()
    assert [t["_target_"] for t in prov["components"]["load_image"]][0] == "LoadImaged"


@pytest.mark.parametrize("threads,says", [(1, "1 torch thread;"), (2, "2 torch threads;")])
def test_machine_line_counts_threads(threads, says):
    line = machine_line([{"platform": "Linux-x", "cpus": 2, "torch_threads": threads}])
    assert line.startswith("Machine: Linux-x, 2 CPUs, ") and says in line


def test_machine_line_names_each_recorded_machine_once():
    a, b = ({"platform": p, "cpus": c, "torch_threads": t} for p, c, t in (("Linux-a", 2, 2), ("Linux-b", 16, 1)))
    assert machine_line([a, None, a]) == machine_line([a])
    assert machine_line([a, b, a]).startswith("Machines: Linux-a, 2 CPUs, 2 torch threads; Linux-b, 16 CPUs, 1 torch "
                                              "thread; the wall times")
    assert machine_line([None]) == machine_line([host()])  # runs made before the record held it: this process's


def test_evaluate_with_only_the_checkpoint_reproduces_the_validation_score(trained_otherwise):
    run = trained_otherwise["run"]
    best = json.loads((run / "metrics.json").read_text())["best"]
    assert best["val_iou"] > 0.5, "the model must have learned something for the comparison to mean anything"
    out = trained_otherwise["tmp"] / "eval-val"
    run_in_process("evaluate", ckpt=run / "models" / "best.pt", split="val", output_dir=out)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["summary"]["iou"]["mean"] == pytest.approx(best["val_iou"], abs=1e-6)
    assert doc["summary"]["dice"]["mean"] == pytest.approx(best["val_dice"], abs=1e-6)
    record = json.loads((out / "config.json").read_text())
    assert record["restored_from"] == str(run / "config.json")
    assert record["hyperparameters"]["network"] == "unet2" and record["hyperparameters"]["image_size"] == 96


def test_an_override_that_contradicts_the_record_is_an_error(trained_otherwise, tmp_path):
    ckpt = trained_otherwise["run"] / "models" / "best.pt"
    with pytest.raises(SystemExit) as err:
        run_in_process("evaluate", ckpt=ckpt, split="val", image_size=128, threshold=0.6, output_dir=tmp_path / "e")
    msg = str(err.value)
    assert "--image_size 128 contradicts the run's image_size 96" in msg
    assert "--threshold 0.6 contradicts the run's threshold 0.4" in msg and "--override_recorded true" in msg
    assert not (tmp_path / "e").exists()
    # asked for explicitly, the override is used (and the score changes with it)
    run_in_process("evaluate", ckpt=ckpt, split="val", threshold=0.99, override_recorded=True,
                   output_dir=tmp_path / "e2")
    doc = json.loads((tmp_path / "e2" / "config.json").read_text())
    assert doc["hyperparameters"]["threshold"] == 0.99 and doc["hyperparameters"]["image_size"] == 96


def test_inference_restores_the_model_settings(trained_otherwise, tmp_path):
    import numpy as np
    from PIL import Image

    run = trained_otherwise["run"]
    val = json.loads((run / "splits.json").read_text())["val"][0]
    src = next(trained_otherwise["data"].rglob(f"{val}.bmp"))
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / src.name)
    run_in_process("inference", ckpt=run / "models" / "best.pt", input_dir=tmp_path / "in", output_dir=tmp_path / "o")
    mask = np.asarray(Image.open(tmp_path / "o" / "masks" / f"{src.stem}.png"))
    assert mask.shape == np.asarray(Image.open(src)).shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert json.loads((tmp_path / "o" / "config.json").read_text())["hyperparameters"]["network"] == "unet2"
