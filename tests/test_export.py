"""``python -m monai.bundle ckpt_export`` gives a TorchScript file for every network, and inference from it writes
the same masks as inference from the checkpoint."""

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export
from PIL import Image

from pipeline.data.synthetic import write_ph2
from pipeline.networks import NETWORKS, build_network

from conftest import ROOT, run_bundle, run_in_process


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_ckpt_export_every_network(network, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    net = build_network(network, width=4).eval()
    torch.save(net.state_dict(), tmp_path / "best.pt")
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "best.pt"),
                meta_file="configs/metadata/ph2.json", config_file="bundles/ph2.json", network=network, width=4)
    ts = torch.jit.load(str(tmp_path / "model.ts")).eval()
    x = torch.rand(1, 3, 61, 77)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x))


def test_inference_from_export_matches_checkpoint(tmp_path, monkeypatch):
    """``ckpt_export`` and inference from the ``.ts`` file through the command line; training and the checkpoint's
    own inference in process."""
    monkeypatch.chdir(ROOT)
    data = write_ph2(tmp_path / "PH2Dataset", n_cases=5, seed=6)
    common = {"width": 4, "image_size": 128, "roi_size": [128, 128]}
    run_in_process("training", dataset_dir=data, epochs=1, batch_size=2, output_dir=tmp_path / "run", **common)
    best = tmp_path / "run" / "models" / "best.pt"
    run_bundle("ckpt_export", "network_def", "--filepath", tmp_path / "model.ts", "--ckpt_file", best,
               "--meta_file", "configs/metadata/ph2.json", "--config_file", "bundles/ph2.json", "--width", 4)
    run_bundle("run", "inference", "--config_file", "bundles/ph2.json", "--width", 4, "--image_size", 128,
               "--roi_size", "[128,128]", "--ckpt", tmp_path / "model.ts", "--input_dir", data,
               "--output_dir", tmp_path / "ts")
    run_in_process("inference", ckpt=best, input_dir=data, output_dir=tmp_path / "pt", **common)
    masks = sorted((tmp_path / "pt" / "masks").glob("*.png"))
    assert len(masks) == 5
    for m in masks:
        np.testing.assert_array_equal(np.asarray(Image.open(m)), np.asarray(Image.open(tmp_path / "ts" / "masks" / m.name)))
