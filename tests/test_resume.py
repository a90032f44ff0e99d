"""A killed run resumes from its last checkpoint; checkpoints load safely or fail with a clear message."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from pipeline.data.synthetic import write_ph2
from pipeline.handlers import RunRecorder, load_network_weights
from pipeline.networks import build_network

from conftest import ROOT, run_bundle


def test_sigkill_then_resume_reaches_the_planned_epoch(tmp_path):
    data = write_ph2(tmp_path / "PH2Dataset", n_cases=6, seed=1)
    run = tmp_path / "run"
    args = ["run", "training", "--config_file", "bundles/ph2.json", "--dataset_dir", str(data), "--epochs", "6",
            "--val_interval", "1", "--batch_size", "2", "--image_size", "128", "--roi_size", "[128,128]",
            "--output_dir", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            done = json.loads((run / "metrics.json").read_text()).get("epochs_done", 0) if (
                run / "metrics.json").is_file() else 0
            if done >= 2 and (run / "models" / "last.pt").is_file():
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = torch.load(run / "models" / "last.pt", weights_only=True)["trainer"]
    assert killed_at["iteration"] // killed_at["epoch_length"] < 6

    run_bundle(*args[:-2], "--output_dir", run, "--resume", "true")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6] and metrics["completed"]
    last = torch.load(run / "models" / "last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 6 * last["trainer"]["epoch_length"]
    assert last["best"]["metric"] == pytest.approx(max(h["val_iou"] for h in metrics["history"]))

    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(run / "tensorboard"))
    mux.Reload()
    steps = sorted({e.step for r in mux.Runs() for e in mux.Scalars(r, "train/loss")})
    assert steps == [1, 2, 3, 4, 5, 6]  # the epoch history continues, it does not restart at 1


def test_resume_without_checkpoint_is_an_error(tmp_path):
    proc = run_bundle("run", "training", "--config_file", "bundles/ph2.json", "--resume", "true",
                      "--output_dir", tmp_path / "nothing", check=False)
    assert proc.returncode != 0 and "no checkpoint to resume from" in proc.stdout + proc.stderr


def test_checkpoint_for_another_network_names_the_mismatch(tmp_path):
    path = tmp_path / "best.pt"
    torch.save(build_network("unet", width=8).state_dict(), path)
    with pytest.raises(RuntimeError, match="does not fit the configured network .* differ in shape"):
        load_network_weights(build_network("unet", width=16), str(path))
    with pytest.raises(RuntimeError, match="are not in the checkpoint"):
        load_network_weights(build_network("segnet", width=8), str(path))
    net = build_network("unet", width=8)
    load_network_weights(net, str(path))  # the right network loads, from a bare state dict or {"network": ...}
    torch.save({"network": net.state_dict(), "optimizer": {}}, tmp_path / "last.pt")
    load_network_weights(build_network("unet", width=8), str(tmp_path / "last.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*junk.pt"):
        load_network_weights(net, str(tmp_path / "junk.pt"))


def test_non_finite_loss_stops_naming_epoch_and_iteration(tmp_path):
    rec = RunRecorder(str(tmp_path))
    rec.loss_sum, rec.n = 0.0, 0
    engine = SimpleNamespace(state=SimpleNamespace(output=[{"loss": float("nan")}], epoch=3, iteration=17))
    with pytest.raises(FloatingPointError, match="epoch 3, iteration 17"):
        rec._iteration(engine)
