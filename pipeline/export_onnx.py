"""ONNX export of a trained network, where the packages ``onnx`` and ``onnxscript`` are installed.

    python -m pipeline.export_onnx --config_file bundles/ph2.json --ckpt runs/<run>/models/best.pt --out model.onnx \\
        [--network unet --width 16 ...]

Run from the repository root (the bundle includes ``configs/engine.json`` by relative path). Options other than
``--config_file``, ``--ckpt`` and ``--out`` override bundle ids, as for ``evaluate``: pass the run's ``--network``,
``--width``, ``--network_kwargs``, ... The file holds the network alone (torch's ``torch.export``-based exporter,
which needs ``onnxscript``): input ``image``, float32 (N, in_channels, *roi_size): any batch size N, but height and
width fixed at the bundle's ``roi_size``, the window the sliding-window inferer feeds (the networks pad their input
to a multiple of their stride, which the exporter fixes to the traced size); output ``logits`` (N, out_channels,
*roi_size), sigmoid > 0.5 gives the mask. Resizing, sliding windows and post-processing stay outside. With
``onnxruntime`` installed the export is checked: the file's output on a random batch must match the network's.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

NEEDED = ("onnx", "onnxscript")


def missing_packages(names=NEEDED) -> list[str]:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_onnx() -> None:
    """A clear error naming the packages ONNX export needs and lacks."""
    missing = missing_packages()
    if missing:
        raise ModuleNotFoundError(
            f"ONNX export needs the Python package(s) {' and '.join(missing)}, not installed here: "
            "pip install onnx onnxscript (and onnxruntime to check the exported file)", name=missing[0])


def _value(text: str):
    """A command-line value as a Python literal when it is one (8, 0.5, [64,64], true), else the string."""
    lowered = {"true": "True", "false": "False", "null": "None"}.get(text.strip().lower(), text)
    try:
        return ast.literal_eval(lowered)
    except (ValueError, SyntaxError):
        return text


def export(config_file: str, ckpt: str, out: str, overrides: dict | None = None, check: bool = True) -> Path:
    """Export the bundle's ``network_def`` with the weights of ``ckpt`` to ``out``; returns the path."""
    require_onnx()
    from monai.bundle import ConfigParser

    from .handlers import load_network_weights
    from .runs import existing_file

    ckpt = existing_file(ckpt, "ckpt")
    parser = ConfigParser()
    parser.read_config(config_file)
    parser["ckpt"] = ckpt  # the network and window are restored from the checkpoint's run record
    for k, v in (overrides or {}).items():
        parser[k] = v
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, ckpt)
    net.eval()
    resolved = parser.get_parsed_content("resolved")
    shape = (int(resolved["in_channels"]), *map(int, resolved["roi_size"]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(net, (torch.rand(1, *shape),), str(out), dynamo=True, input_names=["image"],
                          output_names=["logits"], external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    logger.info("wrote %s (input image [N, %s])", out, ", ".join(map(str, shape)))
    if check:
        check_with_onnxruntime(net, out, torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)))
    return out


def check_with_onnxruntime(net: torch.nn.Module, path: Path, x: torch.Tensor, atol: float = 1e-4) -> float | None:
    """Max absolute difference between the ONNX file's output (onnxruntime, CPU) and the network's on ``x``; an
    error above ``atol`` times the output's largest magnitude (at least 1): onnxruntime sums in another order, and
    float32 rounding grows with the size of what is summed, so logits in the hundreds differ by more than 1e-4
    where the graph is right. None (and a log line) when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        logger.info("onnxruntime is not installed: the exported file was not checked")
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = net(x)
    want = (want[0] if isinstance(want, (list, tuple)) else want).numpy()
    diff = float(np.max(np.abs(got - want)))
    if got.shape != want.shape or not diff <= atol * max(1.0, float(np.max(np.abs(want)))):
        raise RuntimeError(f"{path}: onnxruntime output differs from the network's (shape {got.shape} vs "
                           f"{want.shape}, max abs difference {diff})")
    logger.info("checked with onnxruntime: max abs difference %.2e", diff)
    return diff


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.export_onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config_file", required=True)
    ap.add_argument("--ckpt", required=True, help="a best.pt / last.pt of a run")
    ap.add_argument("--out", required=True, help="the .onnx file to write")
    args, rest = ap.parse_known_args(argv)
    if len(rest) % 2 or any(not k.startswith("--") for k in rest[::2]):
        ap.error(f"overrides must be --id value pairs, got {rest}")
    overrides = {k[2:]: _value(v) for k, v in zip(rest[::2], rest[1::2])}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    try:
        export(args.config_file, args.ckpt, args.out, overrides)
    except ModuleNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
