"""ONNX export (``python -m pipeline.export_onnx``): a clear error where ``onnx`` / ``onnxscript`` are missing; where
they and ``onnxruntime`` are installed (``pip install -e ".[onnx]"``; the ``test`` extra includes them, so these tests
always run), the exported file gives the network's output."""

import sys

import numpy as np
import pytest
import torch

from pipeline.export_onnx import export, main, missing_packages
from pipeline.networks import NETWORKS, build_network

from conftest import ROOT, balance_output, smooth_image

# not a skip: `pip install -e ".[test]"` installs them, so a missing one is a broken test environment
_MISSING = missing_packages(("onnx", "onnxscript", "onnxruntime"))
assert not _MISSING, f"{', '.join(_MISSING)} not installed: pip install -e '.[test]' installs the ONNX packages"


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


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_onnxruntime_matches_the_network(network, monkeypatch, tmp_path):
    import onnxruntime as ort

    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    x = torch.cat([smooth_image(64, 64, seed=s) for s in range(3)])  # any batch size; H, W: the bundle's roi_size
    net = balance_output(build_network(network, width=4), x)  # masks with both classes, logits away from 0
    torch.save(net.state_dict(), tmp_path / "best.pt")
    path = export("bundles/ph2.json", str(tmp_path / "best.pt"), str(tmp_path / "model.onnx"),
                  {"network": network, "width": 4, "roi_size": [64, 64]})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == (3, 1, 64, 64)
    # ONNX Runtime sums in another order: float32 rounding grows with the magnitude of the logits (up to about 15
    # here; 2e-4 seen for segnet), so the tolerance is 1e-4 of the largest, the rule export() itself checks; a wrong
    # graph misses it by orders of magnitude. Masks may differ only where the logit is within that of 0.
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= tol
    near_threshold = np.abs(want) <= tol
    assert near_threshold.mean() < 0.01 and 0.2 < (want > 0).mean() < 0.8
    np.testing.assert_array_equal((got > 0)[~near_threshold], (want > 0)[~near_threshold])
