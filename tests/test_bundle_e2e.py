"""The PH2 bundle end to end, through ``python -m monai.bundle`` as users call it, on a tiny synthetic sample."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data import ph2

from conftest import ROOT, error_chain, run_bundle, run_in_process

BUNDLE = "bundles/ph2.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    run_dir = tmp / "run"
    # the default dataset folder is absent: the bundle must write and use a synthetic sample
    proc = run_bundle("run", "training", "--config_file", BUNDLE, "--epochs", 2, "--val_interval", 1,
                      "--dataset_dir", tmp / "PH2Dataset", "--default_dataset_dir", tmp / "PH2Dataset",
                      "--synthetic_dir", tmp / "synthetic" / "PH2Dataset", "--synthetic_cases", 8,
                      "--batch_size", 4, "--output_dir", run_dir)
    return {"tmp": tmp, "run": run_dir, "data": tmp / "synthetic" / "PH2Dataset", "log": proc.stdout + proc.stderr}


def test_training_writes_a_complete_run_folder(trained):
    run, log = trained["run"], trained["log"]
    assert "SYNTHETIC DATA" in log
    assert f"run folder: {run}" in log and f"tensorboard --logdir {run}\n" in log  # not its parent: tmp holds more
    assert "epoch 2/2" in log
    # each epoch line says the time so far and the time left, estimated from the epochs done
    first, last = (re.search(rf"epoch {e}/2 .* elapsed (\d+):(\d\d)  eta (\d+):(\d\d)", log) for e in (1, 2))
    assert first and last and last.groups()[2:] == ("0", "00")
    assert int(first[1]) * 60 + int(first[2]) <= int(last[1]) * 60 + int(last[2])

    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["synthetic"] is True and config["hyperparameters"]["epochs"] == 2
    assert config["hyperparameters"]["network"] == "unet"

    splits = json.loads((run / "splits.json").read_text())
    all_ids = splits["train"] + splits["val"] + splits["test"]
    assert sorted(all_ids) == [f"IMD{900 + i}" for i in range(1, 9)] and splits["val"] and splits["test"]

    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["completed"] is True
    assert metrics["synthetic"] is True  # as data/README.md promises for every metrics.json
    assert all(0.0 <= h["val_iou"] <= h["val_dice"] <= 1.0 for h in metrics["history"])
    assert metrics["best"]["val_iou"] == max(h["val_iou"] for h in metrics["history"])

    models = sorted(p.name for p in (run / "models").iterdir())
    assert "best.pt" in models and "last.pt" in models
    last = torch.load(run / "models" / "last.pt", weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer"} <= set(last)
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"]


def test_one_tensorboard_stream_with_expected_tags(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    streams = list((trained["run"] / "tensorboard").glob("events.out.tfevents.*"))
    assert len(streams) == 1
    acc = EventAccumulator(str(streams[0]), size_guidance={"images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/iou", "val/dice"} <= scalars
    assert [e.step for e in acc.Scalars("val/iou")] == [1, 2]
    assert {"val/ece"} <= scalars and [e.step for e in acc.Scalars("val/ece")] == [1, 2]
    assert [e.step for e in acc.Images("val/reliability")] == [1, 2]  # the calibration diagram, every validation
    # the run's settings and best scores in the HParams tab, in this same stream
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))
    assert [e.value for e in acc.Scalars("val/best_iou")] == pytest.approx([max(e.value for e in acc.Scalars("val/iou"))])
    # two tag groups, both open in TensorBoard's Time Series dashboard
    assert {t.split("/")[0] for t in scalars} == {"train", "val"} and "train/epoch_s" in scalars
    images = [t for t in acc.Tags()["images"] if t != "val/reliability"]
    assert images and all(t.startswith("val/overlay/IMD") for t in images)
    # the overlay keeps the source image's orientation: landscape in, landscape out
    img = acc.Images(images[0])[-1]
    assert img.width > img.height
    assert img.width == 384  # the synthetic 768-px images, shrunk to the overlay width before outlining
    assert [e.step for e in acc.Images(images[0])] == [1, 2]  # one per validation, at the trainer's epoch


def test_evaluate_scores_each_test_case(trained):
    out = trained["tmp"] / "eval"
    run_bundle("run", "evaluate", "--config_file", BUNDLE, "--dataset_dir", trained["data"],
               "--ckpt", trained["run"] / "models" / "best.pt", "--output_dir", out)
    test_ids = json.loads((trained["run"] / "splits.json").read_text())["test"]
    rows = list(csv.DictReader(open(out / "per_case.csv")))
    assert [r["case_id"] for r in rows] == sorted(test_ids)
    assert set(rows[0]) == {"case_id", "iou", "dice", "hd95", "area_true", "area_pred"}
    for r in rows:
        label = ph2.find_cases(trained["data"])[int(r["case_id"][3:]) - 901]["label"]
        assert int(r["area_true"]) == int((np.asarray(Image.open(label).convert("L")) > 127).sum())
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n_cases"] == len(rows) and summary["split"] == "test" and summary["synthetic"] is True
    ious = [float(r["iou"]) for r in rows]
    assert summary["summary"]["iou"]["mean"] == pytest.approx(np.mean(ious), abs=1e-5)
    assert summary["summary"]["iou"]["median"] == pytest.approx(np.median(ious), abs=1e-5)
    assert (out / "worst_cases.png").is_file()
    # the failure gallery: the lowest-IoU cases of per_case.csv, worst first (16 at most: --gallery_cases)
    page = (out / "gallery" / "index.html").read_text()
    shown = re.findall(r'<tr data-case="([^"]+)" data-score="([0-9.]+)"', page)
    worst = sorted(rows, key=lambda r: (float(r["iou"]), r["case_id"]))[:16]
    assert [c for c, _ in shown] == [r["case_id"] for r in worst]
    assert [float(v) for _, v in shown] == pytest.approx([float(r["iou"]) for r in worst], abs=1e-5)
    # calibration over the test cases' pixels: every pixel of every case counted once
    pixels = sum(Image.open(ph2.find_cases(trained["data"])[int(c[3:]) - 901]["image"]).size[0]
                 * Image.open(ph2.find_cases(trained["data"])[int(c[3:]) - 901]["image"]).size[1] for c in test_ids)
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["pixels"] == summary["calibration"]["pixels"] == pixels
    assert summary["calibration"]["ece"] == pytest.approx(calibration["ece"]) and (out / "calibration.png").is_file()

    # without --output_dir the evaluation goes inside the run it scores, named for the split
    run_in_process("evaluate", dataset_dir=trained["data"], split="val", ckpt=trained["run"] / "models" / "best.pt")
    assert json.loads((trained["run"] / "eval-val" / "metrics.json").read_text())["split"] == "val"

    out_all = trained["tmp"] / "eval_all"
    run_in_process("evaluate", dataset_dir=trained["data"], split="all", ckpt=trained["run"] / "models" / "best.pt",
                   output_dir=out_all)
    assert len(list(csv.DictReader(open(out_all / "per_case.csv")))) == 8


def test_an_unreadable_input_stops_inference_naming_the_file(trained, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.open(ph2.find_cases(trained["data"])[0]["image"]).save(flat / "good.png")
    (flat / "broken.png").write_bytes(b"not a png")
    proc = run_bundle("run", "inference", "--config_file", BUNDLE, "--ckpt", trained["run"] / "models" / "best.pt",
                      "--input_dir", flat, "--output_dir", tmp_path / "out", check=False)
    assert proc.returncode != 0
    last = [line for line in proc.stderr.splitlines() if line.strip()][-2:]
    assert last[0].startswith(f"error: broken: {flat / 'broken.png'} is not a readable image (PIL."), last
    assert "--skip_bad_cases true" in last[0] and "PIPELINE_TRACEBACK" in last[1]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()  # checked before the run record
    run_in_process("inference", ckpt=trained["run"] / "models" / "best.pt", input_dir=flat,
                   output_dir=tmp_path / "skip", skip_bad_cases="true")
    assert [p.name for p in (tmp_path / "skip" / "masks").iterdir()] == ["good.png"]
    inputs = json.loads((tmp_path / "skip" / "config.json").read_text())["dataset"]
    assert inputs["dir"] == str(flat) and inputs["n_cases"] == 1 and len(inputs["skipped"]) == 1


def test_inference_writes_full_size_masks(trained, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    src = ph2.find_cases(trained["data"])[0]["image"]
    im = Image.open(src)
    im.save(flat / "skin.jpg")
    im.crop((0, 0, 701, 523)).save(flat / "odd_size.png")
    im.convert("RGBA").save(flat / "with_alpha.png")
    for input_dir, expected in ((flat, {"skin", "odd_size", "with_alpha"}),
                                (trained["data"], {f"IMD{900 + i}" for i in range(1, 9)})):
        out = tmp_path / f"out_{len(expected)}"
        if input_dir == flat:  # from the command line
            run_bundle("run", "inference", "--config_file", BUNDLE, "--ckpt", trained["run"] / "models" / "best.pt",
                       "--input_dir", input_dir, "--output_dir", out)
        else:
            run_in_process("inference", ckpt=trained["run"] / "models" / "best.pt", input_dir=input_dir,
                           output_dir=out)
        assert {p.stem for p in (out / "masks").glob("*.png")} == expected
        assert {p.stem for p in (out / "overlays").glob("*.png")} == expected
        rows = {r["case_id"]: r for r in csv.DictReader(open(out / "predictions.csv"))}
        for cid in expected:
            mask = Image.open(out / "masks" / f"{cid}.png")
            source = Image.open(rows[cid]["source"])
            assert mask.size == source.size and mask.mode == "L"
            assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_missing_user_paths_are_errors(trained, tmp_path):
    args = ("run", "training", "--config_file", BUNDLE, "--dataset_dir", tmp_path / "typo", "--output_dir",
            tmp_path / "run")
    proc = run_bundle(*args, check=False)
    last = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last[-2] == f"error: FileNotFoundError: dataset_dir does not exist: {tmp_path / 'typo'}"
    full = run_bundle(*args, check=False, env={"PIPELINE_TRACEBACK": "1"})  # the traceback, then the same reason
    assert "Traceback (most recent call last)" in full.stderr
    assert [line for line in full.stderr.splitlines() if line.strip()][-1] == last[-2]
    with pytest.raises(Exception) as err:
        run_in_process("evaluate", ckpt=tmp_path / "none.pt", dataset_dir=trained["data"], output_dir=tmp_path / "e")
    assert "--ckpt: no such file" in error_chain(err.value)


@pytest.mark.parametrize("bundle, overrides", [("ph2", {}), ("lgg", {}), ("dsb2018", {}), ("nifti", {})])
def test_the_shared_metadata_file_describes_every_three_channel_network(bundle, overrides, monkeypatch):
    """MONAI's ``verify_net_in_out`` reads metadata as written (no ``@`` or ``%`` resolved), so the model-zoo path
    configs/metadata.json is literal: PH2's file, whose input (3 channels, 16*n) and output (1 logit) fit every
    three-channel network, NIfTI's with ``--context_slices 1`` included; NIfTI's default single slice is described by
    its own file (the test above), and PH2's file refuses it."""
    from monai.bundle import verify_net_in_out

    monkeypatch.chdir(ROOT)
    assert Path("configs/metadata.json").resolve() == (ROOT / "configs/metadata/ph2.json").resolve()
    verify_net_in_out("network_def", meta_file="configs/metadata.json", config_file=f"bundles/{bundle}.json", n=16,
                      **overrides)
    if bundle == "nifti":  # the single-slice model takes one channel: PH2's file refuses it
        with pytest.raises(RuntimeError, match="expected input.* to have 1 channels, but got 3"):
            verify_net_in_out("network_def", meta_file="configs/metadata.json", config_file=f"bundles/{bundle}.json",
                              n=16, context_slices=0)


@pytest.mark.parametrize("bundle, channels", [("ph2", 3), ("lgg", 3), ("dsb2018", 3), ("nifti", 3)])
def test_monai_bundle_checks(bundle, channels, tmp_path, monkeypatch):
    """What ``python -m monai.bundle verify_metadata`` / ``verify_net_in_out`` run (README), called in process, for
    every bundle: its own metadata validates against the schema in the repository and describes its own input, and
    the ``_meta_`` that ``run`` sees (through bundles/metadata.json) is that bundle's."""
    import jsonschema
    from monai.bundle import ConfigWorkflow, verify_metadata, verify_net_in_out

    monkeypatch.chdir(ROOT)
    config, meta = f"bundles/{bundle}.json", f"configs/metadata/{bundle}.json"
    wf = ConfigWorkflow(config_file=config, workflow_type="train", output_dir=str(tmp_path / "run"))
    wf.initialize()
    assert wf.check_properties() == []
    own = json.loads(Path(meta).read_text())
    assert wf.parser.get_parsed_content("_meta_#task") == own["task"]
    assert wf.parser.get_parsed_content("_meta_#version") == own["version"] in own["changelog"]
    assert own["network_data_format"]["inputs"]["image"]["num_channels"] == channels
    assert wf.parser.get_parsed_content("in_channels") == channels
    verify_metadata(meta_file=meta, filepath="configs/metadata_schema.json")
    verify_net_in_out("network_def", meta_file=meta, config_file=config, n=16)
    broken = {k: v for k, v in own.items() if k != "version"}
    with pytest.raises(jsonschema.ValidationError, match="'version' is a required property"):
        jsonschema.validate(broken, json.loads(Path("configs/metadata_schema.json").read_text()))
