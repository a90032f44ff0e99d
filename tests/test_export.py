"""``python -m monai.bundle ckpt_export`` gives a TorchScript file for every network, and inference from it writes
the same masks as inference from the checkpoint."""

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export
from PIL import Image

from pipeline.data.synthetic import write_ph2
from pipeline.networks import NETWORKS, build_network

from conftest import ROOT, balance_output, run_bundle, run_in_process, smooth_image


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_ckpt_export_every_network(network, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    x = smooth_image(61, 77)
    net = balance_output(build_network(network, width=4), x)  # masks with both classes, logits away from 0
    torch.save(net.state_dict(), tmp_path / "best.pt")
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "best.pt"),
                meta_file="configs/metadata/ph2.json", config_file="bundles/ph2.json", network=network, width=4)
    ts = torch.jit.load(str(tmp_path / "model.ts")).eval()
    with torch.no_grad():
        got, want = ts(x), net(x)
    torch.testing.assert_close(got, want)  # the same kernels: equal to float32 rounding
    assert torch.equal(got > 0, want > 0) and 0.2 < (want > 0).float().mean() < 0.8


def test_inference_from_export_matches_checkpoint(tmp_path, monkeypatch):
    """``ckpt_export`` and inference from the ``.ts`` file through the command line; the checkpoint's own inference
    in process. The model is hand-set (:func:`balance_output` on the first image, as preprocessed), so that its
    masks hold both classes; TorchScript runs the same kernels, so the masks must be identical."""
    monkeypatch.chdir(ROOT)
    data = write_ph2(tmp_path / "PH2Dataset", n_cases=5, seed=6)
    common = {"width": 4, "image_size": 128, "roi_size": [128, 128]}
    first = sorted(data.rglob("*_Dermoscopic_Image/*.bmp"))[0]
    image = Image.open(first).convert("RGB")
    image = image.resize((128, round(128 * image.height / image.width)), Image.BOX)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 1, 0)[None]  # (1, 3, W, H) as PILReader
    torch.manual_seed(0)
    best = tmp_path / "best.pt"
    torch.save(balance_output(build_network("unet", width=4), x).state_dict(), best)
    run_bundle("ckpt_export", "network_def", "--filepath", tmp_path / "model.ts", "--ckpt_file", best,
               "--meta_file", "configs/metadata/ph2.json", "--config_file", "bundles/ph2.json", "--width", 4)
    run_bundle("run", "inference", "--config_file", "bundles/ph2.json", "--width", 4, "--image_size", 128,
               "--roi_size", "[128,128]", "--ckpt", tmp_path / "model.ts", "--input_dir", data,
               "--output_dir", tmp_path / "ts")
    run_in_process("inference", ckpt=best, input_dir=data, output_dir=tmp_path / "pt", **common)
    masks = sorted((tmp_path / "pt" / "masks").glob("*.png"))
    assert len(masks) == 5
    for m in masks:
        pt, ts = (np.asarray(Image.open(d / "masks" / m.name)) > 0 for d in (tmp_path / "pt", tmp_path / "ts"))
        assert 0.05 < pt.mean() < 0.95, (m.name, pt.mean())  # neither empty nor full
        np.testing.assert_array_equal(pt, ts)
