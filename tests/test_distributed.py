"""Distributed data-parallel training: ``torchrun ... -m monai.bundle run training --config_file
"['bundles/<bundle>.json','configs/distributed.json']"`` with 2 CPU processes (gloo) on a tiny synthetic set."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_in_process

OVERLAY = "configs/distributed.json"


def torchrun(*args, nproc: int = 2, timeout: int = 240) -> str:
    """``torchrun --standalone --nproc_per_node=<nproc> -m monai.bundle <args>`` from the repository root; a run
    that does not end within ``timeout`` seconds (a deadlock) fails the test instead of hanging it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "monai.bundle", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun passes SIGTERM on to its workers
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s (deadlock?):\n{out[-6000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-8000:]}"
    return out


def test_two_processes_write_one_run_whose_metric_matches_a_single_process_evaluation(tmp_path):
    default, synth, run = tmp_path / "PH2Dataset", tmp_path / "synthetic" / "PH2Dataset", tmp_path / "run"
    # 8 cases: 4 train (2 per process, one batch of 2), 3 validation (2 + 1: an uneven split), 1 test
    common = {"width": 8, "image_size": 64, "roi_size": [64, 64], "val_fraction": 0.3, "test_fraction": 0.1,
              "split_seed": 5}  # the seed that deals these 8 ids 4 / 3 / 1
    log = torchrun("run", "training", "--config_file", f"['bundles/ph2.json','{OVERLAY}']",
                   *[a for k, v in common.items() for a in (f"--{k}", str(v).replace(" ", ""))],
                   "--dataset_dir", default, "--default_dataset_dir", default, "--synthetic_dir", synth,
                   "--synthetic_cases", 8, "--epochs", 4, "--lr", 0.02, "--val_interval", 1, "--batch_size", 2,
                   "--group_metrics", "true", "--output_dir", run)

    # one run, written once: rank 0 logs, records and checkpoints; the synthetic sample was written once
    assert log.count("epoch 4/4") == 1 and log.count("training finished") == 1 and log.count("SYNTHETIC DATA") == 1
    assert sorted(p.name for p in (run / "models").iterdir()) == ["best.pt", "last.pt"]
    assert len(list(run.rglob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in run.iterdir()) == ["calibration.json", "calibration.png", "config.json",
                                                      "metrics.json", "models", "splits.json", "tensorboard"]
    config = json.loads((run / "config.json").read_text())
    assert {k: config["distributed"][k] for k in ("world_size", "backend")} == {"world_size": 2, "backend": "gloo"}
    assert [r["rank"] for r in config["distributed"]["ranks"]] == [0, 1]
    val_ids = json.loads((run / "splits.json").read_text())["val"]
    assert len(val_ids) == 3 and config["split_sizes"] == {"train": 4, "val": 3, "test": 1}

    last = torch.load(run / "models" / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in last["network"])  # the bare network, not the DDP wrapper
    assert last["trainer"]["epoch_length"] == 1  # each process saw half of the 4 training cases per epoch
    assert last["trainer"]["iteration"] == 4
    best_pt = torch.load(run / "models" / "best.pt", weights_only=True)
    assert set(best_pt) == set(last["network"])

    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4] and metrics["completed"]
    # each process cached only its share of the 4 training cases
    assert [(p["rank"], p["train_cases_cached"]) for p in metrics["processes"]] == [(0, 2), (1, 2)]
    best = metrics["best"]
    assert best["val_iou"] > 0.0, "the comparison below is only meaningful for a network that finds something"

    # the validation metric of the 2-process run (each process scored part of the validation set) is the mean over
    # the whole validation set: a single-process evaluation of best.pt on the validation split gives the same
    ev = tmp_path / "eval-val"
    run_in_process("evaluate", **common, dataset_dir=synth, split="val", ckpt=run / "models" / "best.pt", output_dir=ev)
    summary = json.loads((ev / "metrics.json").read_text())
    assert summary["n_cases"] == 3
    assert summary["summary"]["iou"]["mean"] == pytest.approx(best["val_iou"], abs=1e-6)
    assert summary["summary"]["dice"]["mean"] == pytest.approx(best["val_dice"], abs=1e-6)
    # the per-patient volume Dice sums its voxel counts over the ranks; a PH2 "patient" is one image, so the
    # 2-process figure is the single-process mean per-image Dice
    assert summary["summary"]["dice"]["mean"] == pytest.approx(best["val_volume_dice"], abs=1e-6)
    # and the test can tell: rank 0's own share (cases 1 and 3) has another mean than the whole set
    rows = sorted(csv.DictReader(open(ev / "per_case.csv")), key=lambda r: r["case_id"])
    rank0 = [float(r["iou"]) for r in rows[::2]]
    assert abs(sum(rank0) / len(rank0) - best["val_iou"]) > 1e-3


SCRIPT = r"""
import json, os, sys
import torch
from monai.bundle import ConfigWorkflow
from monai.data import DistributedSampler, DistributedWeightedRandomSampler

tmp, bundles = sys.argv[1], sys.argv[2:]
out = {}
for bundle in bundles:
    d = os.path.join(tmp, bundle)
    wf = ConfigWorkflow(config_file=[f"bundles/{bundle}.json", "configs/distributed.json"], workflow_type=None,
                        run_id="training", logging_file=False, dataset_dir=d + "/data", default_dataset_dir=d + "/data",
                        synthetic_dir=d + "/synthetic", synthetic_cases=3, width=4, roi_size=[64, 64],
                        output_dir=d + "/run")
    wf.initialize()
    p = wf.parser
    trainer, loader = p.get_parsed_content("train#trainer"), p.get_parsed_content("train#dataloader")
    val_loader = p.get_parsed_content("validate#dataloader")
    out[bundle] = {
        "ddp": isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel),
        "checkpoint_network_bare": p.get_parsed_content("train#checkpoints").objects["network"] is trainer.network.module,
        "train_sampler": type(loader.sampler).__name__,
        "train_shuffle": getattr(loader.sampler, "shuffle", None),
        "val_sampler": type(val_loader.sampler).__name__,
        "val_shuffle": getattr(val_loader.sampler, "shuffle", None),
        "val_cases": len(val_loader.sampler), "val_set": len(p.get_parsed_content("validate#dataset")),
        "train_cached": len(p.get_parsed_content("train#dataset")),
        "train_split": len(p.get_parsed_content("data#splits")["train"]),
        "backend": torch.distributed.get_backend(),
    }
torch.distributed.destroy_process_group()
print("RESULT " + json.dumps(out))
"""


def test_overlay_composes_with_every_bundle(tmp_path):
    """Each bundle with the overlay resolves to a DDP trainer with distributed samplers (one gloo process)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), "ph2", "lgg", "dsb2018", "nifti"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    got = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for bundle, r in got.items():
        assert r["ddp"] and r["checkpoint_network_bare"] and r["backend"] == "gloo", (bundle, r)
        assert r["val_sampler"] == "DistributedSampler" and r["val_shuffle"] is False, (bundle, r)
        assert r["val_cases"] == r["val_set"] and r["train_cached"] == r["train_split"], (bundle, r)  # one process
        # LGG keeps its tumour-weighted draws, split across processes; the others shuffle
        want = "DistributedWeightedRandomSampler" if bundle == "lgg" else "DistributedSampler"
        assert r["train_sampler"] == want and r["train_shuffle"] is True, (bundle, r)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_nodes(args: list, port: int, timeout: int = 300) -> list[str]:
    """Two ``torchrun --nnodes 2 --nproc_per_node 1`` launches on this machine joined by a c10d rendezvous (gloo):
    two "nodes" of one process each, as on two machines sharing the run folder."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"nodes{port}",
           "-m", "monai.bundle", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for _ in range(2)]
    outs = []
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                os.killpg(p.pid, signal.SIGKILL)
            pytest.fail("the two-node launch did not finish (rendezvous or deadlock)")
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0, f"a node failed ({proc.returncode}):\n{out[-6000:]}"
    return outs


def test_two_nodes_train_one_run_that_resumes(tmp_path):
    default, synth, run = tmp_path / "PH2Dataset", tmp_path / "synthetic" / "PH2Dataset", tmp_path / "run"
    args = ["run", "training", "--config_file", f"['bundles/ph2.json','{OVERLAY}']", "--width", 4, "--image_size", 64,
            "--roi_size", "[64,64]", "--val_fraction", 0.3, "--test_fraction", 0.1, "--split_seed", 5,
            "--dataset_dir", default, "--default_dataset_dir", default, "--synthetic_dir", synth,
            "--synthetic_cases", 8, "--val_interval", 1, "--batch_size", 2, "--output_dir", run]
    logs = _launch_nodes([*args, "--epochs", 2], _free_port())
    config = json.loads((run / "config.json").read_text())
    ranks = config["distributed"]["ranks"]
    assert config["distributed"]["world_size"] == 2 and sorted(r["node"] for r in ranks) == [0, 1]
    assert len({r["pid"] for r in ranks}) == 2
    # node 0 wrote the run, once; node 1 trained (its process held its share) but wrote nothing
    assert sum(log.count("training finished") for log in logs) == 1
    assert len(list(run.rglob("events.out.tfevents.*"))) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["train_cases_cached"] for p in metrics["processes"]] == [2, 2]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    before = torch.load(run / "models" / "last.pt", weights_only=True)["trainer"]["iteration"]

    _launch_nodes([*args, "--epochs", 3, "--resume", "true"], _free_port())
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and metrics["completed"]
    assert torch.load(run / "models" / "last.pt", weights_only=True)["trainer"]["iteration"] == before + 1
