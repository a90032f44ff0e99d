"""Every registered network trains, validates and infers through the PH2 bundle's engine with one override."""

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image

from pipeline.data.synthetic import write_ph2
from pipeline.handlers import load_network_weights
from pipeline.networks import NETWORKS, build_network

from conftest import ROOT, balance_output


@pytest.fixture(scope="module")
def tiny_ph2(tmp_path_factory):
    root = write_ph2(tmp_path_factory.mktemp("tiny") / "PH2Dataset", n_cases=6, seed=2)
    flat = root.parent / "flat"
    flat.mkdir()
    Image.open(root / "PH2 Dataset images" / "IMD902" / "IMD902_Dermoscopic_Image" / "IMD902.bmp").crop(
        (3, 5, 700, 514)).save(flat / "odd.png")
    return root, flat


def run(run_id, **overrides):
    wf = ConfigWorkflow(config_file=str(ROOT / "bundles" / "ph2.json"), workflow_type=None, run_id=run_id,
                        logging_file=False, **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_network_through_the_engine(network, tiny_ph2, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the bundle includes configs/engine.json relative to the repository root
    data, flat = tiny_ph2
    common = {"network": network, "width": 4, "image_size": 96, "roi_size": [64, 64], "dataset_dir": str(data)}
    run("training", epochs=1, val_interval=1, batch_size=2, output_dir=str(tmp_path / "run"), **common)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["completed"] and 0.0 <= metrics["history"][0]["val_iou"] <= 1.0
    run("inference", ckpt=str(tmp_path / "run" / "models" / "best.pt"), input_dir=str(flat),
        output_dir=str(tmp_path / "out"), **common)
    mask = Image.open(tmp_path / "out" / "masks" / "odd.png")
    assert mask.size == (697, 509) and set(np.unique(np.asarray(mask))) <= {0, 255}


def test_source_resolution_without_resize(tiny_ph2, tmp_path, monkeypatch):
    """``image_size 0`` trains on crops of the source images and predicts at their own resolution."""
    monkeypatch.chdir(ROOT)
    data, flat = tiny_ph2
    common = {"width": 4, "image_size": 0, "roi_size": [128, 128], "sw_batch_size": 16, "dataset_dir": str(data)}
    run("training", epochs=1, val_interval=1, batch_size=2, output_dir=str(tmp_path / "run"), **common)
    run("inference", ckpt=str(tmp_path / "run" / "models" / "best.pt"), input_dir=str(flat),
        output_dir=str(tmp_path / "out"), **common)
    assert Image.open(tmp_path / "out" / "masks" / "odd.png").size == (697, 509)


def test_pspnet_auxiliary_head_trains_through_the_engine(tiny_ph2, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    data, _ = tiny_ph2
    run("training", network="pspnet", network_kwargs={"aux_head": True}, width=4, image_size=96, roi_size=[64, 64],
        dataset_dir=str(data), epochs=1, val_interval=1, batch_size=2, output_dir=str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["completed"] and 0.0 <= metrics["history"][0]["val_iou"] <= 1.0


def test_channels_last_trains_and_its_checkpoint_serves_the_default_layout(tiny_ph2, tmp_path, monkeypatch):
    """``channels_last true`` puts the 4D weights in channels-last layout through training; the checkpoint is an
    ordinary state dict: the default (contiguous) model loads it and gives the same masks."""
    monkeypatch.chdir(ROOT)
    data, flat = tiny_ph2
    common = {"network": "segnet", "width": 4, "image_size": 96, "roi_size": [64, 64], "dataset_dir": str(data)}
    wf = ConfigWorkflow(config_file=str(ROOT / "bundles" / "ph2.json"), workflow_type=None, run_id="training",
                        logging_file=False, channels_last=True, epochs=1, val_interval=1, batch_size=2,
                        output_dir=str(tmp_path / "run"), **common)
    wf.initialize()
    net = wf.parser.get_parsed_content("net")
    weights = [p for p in net.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    wf.run()
    wf.finalize()
    # the trained weights, hand-set so that the masks compared hold both classes (one epoch learns little)
    trained = build_network("segnet", width=4)
    load_network_weights(trained, str(tmp_path / "run" / "models" / "best.pt"))
    image = Image.open(flat / "odd.png").convert("RGB").resize((96, 70), Image.BOX)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 1, 0)[None]  # (1, 3, W, H) as PILReader
    ckpt = str(tmp_path / "balanced.pt")
    torch.save(balance_output(trained, x).state_dict(), ckpt)
    for layout in (True, False):
        run("inference", ckpt=ckpt, input_dir=str(flat), output_dir=str(tmp_path / f"out{layout}"),
            channels_last=layout, **common)
    a, b = (np.asarray(Image.open(tmp_path / f"out{v}" / "masks" / "odd.png")) > 0 for v in (True, False))
    assert 0.05 < b.mean() < 0.95, b.mean()  # neither empty nor full
    # same weights, another float summation order: only pixels whose probability is within rounding of 0.5 may
    # differ, and balance_output leaves under 1% of the logits that close to 0
    assert (a != b).mean() < 1e-3


def test_channels_last_must_be_a_boolean(tiny_ph2, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(Exception, match="channels_last"):
        run("training", channels_last="fast", dataset_dir=str(tiny_ph2[0]), epochs=1,
            output_dir=str(tmp_path / "run"))
