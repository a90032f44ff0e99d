"""ONNX export (``python -m pipeline.export_onnx``): a clear error where ``onnx`` / ``onnxscript`` are missing; where
they and ``onnxruntime`` are installed (``pip install -e ".[onnx]"``), the exported file gives the network's output."""

import sys

import numpy as np
import pytest
import torch

from pipeline.export_onnx import export, main, missing_packages
from pipeline.networks import NETWORKS, build_network

from conftest import ROOT

MISSING = missing_packages(("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.parametrize("absent", ["onnx", "onnxscript"])
def test_missing_package_is_named(absent, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, absent, None)  # makes `import <absent>` fail, whether installed or not
    with pytest.raises(ModuleNotFoundError, match=f"needs the Python package\\(s\\) .*{absent}.*pip install onnx onnxscript"):
        export("bundles/ph2.json", str(tmp_path / "none.pt"), str(tmp_path / "model.onnx"))
    with pytest.raises(SystemExit, match=f"error: ONNX export needs .*{absent}"):
        main(["--config_file", "bundles/ph2.json", "--ckpt", str(tmp_path / "none.pt"), "--out",
              str(tmp_path / "model.onnx"), "--width", "4"])
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.skipif(bool(MISSING), reason=f"ONNX export not checked: {', '.join(MISSING)} not installed "
                                          "(pip install -e '.[onnx]')")
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_onnxruntime_matches_the_network(network, monkeypatch, tmp_path):
    import onnxruntime as ort

    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    net = build_network(network, width=4).eval()
    torch.save(net.state_dict(), tmp_path / "best.pt")
    path = export("bundles/ph2.json", str(tmp_path / "best.pt"), str(tmp_path / "model.onnx"),
                  {"network": network, "width": 4, "roi_size": [64, 64]})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 64, 64)  # any batch size; height and width are the bundle's roi_size
    got = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
