"""Speed of the bundle's engine against a plain PyTorch loop on the same model and data (a benchmark, not a test).

    python -m pipeline.bench.speed [--dataset_dir ../shared/data/ph2/PH2Dataset] [--networks unet segnet]
                                   [--epochs 3] [--rounds 1] [--engine_overrides '{}'] [--json runs/bench.json]
    python -m pipeline.bench.speed --only_time_to_quality [--rounds 2] | --interleaved | --levers | --scaling

(``python -m pipeline.bench`` is the same command.)

1. Training throughput (images/s) of the PH2 bundle's ``SupervisedTrainer`` (its transforms, ``CacheDataset`` and
   ``DataLoader``) against a hand-written loop with the same network, batch size, crop, augmentation, loss and
   optimiser (``pipeline.bench.plain_loop``), images decoded and resized once into memory as a careful hand-written
   loop would; the engine's time
   waiting for data, in its training steps and in its epoch-end handlers is reported separately, the loop's step
   time too. The loop runs twice: as written (glibc's default allocator) and with the host-allocator setting the
   bundles turn on (``pipeline.host_memory``), so ``ratio`` is the engine against the loop a user would write and
   ``ratio_same_allocator`` what the framework itself costs. ``--rounds N`` alternates the sides N times (a fresh
   process each) and reports the median ratios.
   ``--interleaved`` instead alternates the engine's and the loop's epochs in one process (same allocator, same
   moment of a drifting machine) and reports the median ratio over the epoch pairs.
2. Inference on one PH2 image and one 1388x1040 image: the bundle's inferer against a plain forward of the whole
   (padded) image and against MONAI's ``sliding_window_inference`` with its default settings, with the fraction of
   mask pixels on which each path disagrees with the bundle's.
3. Peak memory (max RSS) of each measurement: each runs in its own subprocess.

Every figure is measured in the same invocation on the same machine, one after another; ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.bench.plain_loop import PlainLoop, random_crop, random_flips, read_image, stacked
from pipeline.bench.timing import max_rss_mb, median_time, minor_faults

BUNDLE = "bundles/ph2.json"


def _workflow(run_id: str, **overrides):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=BUNDLE, workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    wf.initialize()
    return wf


def _cache_bytes(dataset) -> int:
    """Bytes of the tensors a MONAI ``CacheDataset`` holds."""
    total = 0
    for item in getattr(dataset, "_cache", []) or []:
        for v in (item.values() if isinstance(item, dict) else [item]):
            if isinstance(v, torch.Tensor):
                total += v.element_size() * v.nelement()
            elif isinstance(v, np.ndarray):
                total += v.nbytes
    return total


def _epoch_clock(trainer) -> dict:
    """Timing hooks on ``trainer``; the dict they fill holds, for the epoch in progress: its start (``t0``), minor
    page faults until then (``faults``), images seen, seconds waiting for batches (``data``), each step from batch
    received to iteration done (``steps``) and when the last iteration ended (``last_iteration``)."""
    from ignite.engine import Events

    clock = {}

    @trainer.on(Events.EPOCH_STARTED)
    def _(engine):
        clock.update(t0=time.perf_counter(), faults=minor_faults(), images=0, data=0.0, steps=[])

    @trainer.on(Events.GET_BATCH_STARTED)
    def _(engine):
        clock["batch"] = time.perf_counter()

    @trainer.on(Events.GET_BATCH_COMPLETED)
    def _(engine):
        clock["step"] = time.perf_counter()
        clock["data"] += clock["step"] - clock["batch"]

    @trainer.on(Events.ITERATION_COMPLETED)
    def _(engine):
        clock["last_iteration"] = time.perf_counter()
        clock["steps"].append(clock["last_iteration"] - clock["step"])
        clock["images"] += len(engine.state.batch)

    return clock


def engine_train(dataset_dir: str, network: str, epochs: int, **overrides) -> dict:
    """Images/s of the bundle trainer over ``epochs`` epochs after one warm-up epoch, no validation."""
    from ignite.engine import Events

    with tempfile.TemporaryDirectory() as tmp:
        # one warm-up epoch first and one extra epoch last (the bundle validates at its last epoch), neither timed
        wf = _workflow("training", dataset_dir=dataset_dir, network=network, epochs=epochs + 2, val_interval=10**6,
                       output_dir=tmp, **overrides)
        trainer = wf.parser.get_parsed_content("train#trainer")
        train_set = wf.parser.get_parsed_content("train#dataset")
        stats = {"epoch_s": [], "data_s": [], "end_s": [], "images": [], "step_s": [], "faults": []}
        clock = _epoch_clock(trainer)

        @trainer.on(Events.EPOCH_COMPLETED)  # attached last: runs after the bundle's epoch-end handlers
        def _(engine):
            now = time.perf_counter()
            stats["epoch_s"].append(now - clock["t0"])
            stats["data_s"].append(clock["data"])
            stats["end_s"].append(now - clock["last_iteration"])
            stats["images"].append(clock["images"])
            stats["faults"].append(minor_faults() - clock["faults"])
            if engine.state.epoch > 1:  # after the warm-up epoch
                stats["step_s"] += clock["steps"]

        trainer.run()
    secs, images = sum(stats["epoch_s"][1:-1]), sum(stats["images"][1:-1])
    return {"images_per_s": images / secs, "data_fraction": sum(stats["data_s"][1:-1]) / secs,
            "epoch_end_fraction": sum(stats["end_s"][1:-1]) / secs, "step_ms": 1e3 * float(np.median(stats["step_s"])),
            "faults_per_image": sum(stats["faults"][1:-1]) / images,
            "epochs": epochs,
            "epoch_s": secs / epochs, "images_per_epoch": stats["images"][-1], "cached_cases": len(train_set),
            "cache_mb": _cache_bytes(train_set) / 2**20, "max_rss_mb": max_rss_mb()}


def scaling(network: str, sizes=(25, 50, 100), rois=(128, 256), epochs: int = 2) -> list[dict]:
    """Epoch time and cache size of the bundle trainer against the number of training images and the crop size, on
    synthetic PH2-layout sets (768x560 images, worked on at 256 px)."""
    from pipeline.data.synthetic import write_ph2

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            # train is about 65% of the cases with the default split fractions
            root = write_ph2(Path(tmp) / f"n{n}" / "PH2Dataset", n_cases=round(n / 0.65))
            for roi in rois:
                res = engine_train(str(root), network, epochs, roi_size=[roi, roi], image_size=256,
                                   default_dataset_dir=str(root))
                rows.append({"train_images": res["cached_cases"], "roi": roi, "epoch_s": res["epoch_s"],
                             "images_per_s": res["images_per_s"], "cache_mb": res["cache_mb"],
                             "max_rss_mb": res["max_rss_mb"]})
    return rows


def _load_resized(path: str, size: int, rgb: bool) -> torch.Tensor:
    t = read_image(path, rgb)
    if size:
        h, w = t.shape[1:]
        scale = size / max(h, w)
        t = F.interpolate(t[None], size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")[0]
    return t if rgb else (t > 0.5).float()


def _augment(img: torch.Tensor, lab: torch.Tensor, roi: int, g: torch.Generator):
    """The bundle's training augmentation, written with plain torch ops: pad, random crop, flips, rot90, intensity."""
    img, lab = random_crop(img, lab, roi, g, centred=True)  # SpatialPadd pads symmetrically
    u = torch.rand(8, generator=g)
    img, lab = random_flips(img, lab, u[:2])
    if u[2] < 0.5:
        k = int(torch.randint(1, 4, (1,), generator=g))
        img, lab = img.rot90(k, (1, 2)), lab.rot90(k, (1, 2))
    if u[3] < 0.5:
        img = img * (1 + (torch.rand(img.shape[0], 1, 1, generator=g) * 0.3 - 0.15))
    if u[4] < 0.5:
        img = img + (float(u[5]) * 0.1 - 0.05)
    if u[6] < 0.3:
        lo, hi = img.min(), img.max()
        gamma = 0.7 + float(u[7]) * 0.8
        img = ((img - lo) / (hi - lo + 1e-7)) ** gamma * (hi - lo) + lo
    return img, lab


def ph2_loop(dataset_dir: str, network: str, epochs: int, batch_size: int = 8, image_size: int = 256,
             roi: int = 256, lr: float = 2e-3) -> PlainLoop:
    """The bundle's training as a plain PyTorch loop (``pipeline.bench.plain_loop``: main-thread augmentation, no
    framework), one epoch per :meth:`~PlainLoop.epoch` call: the 60 PH2 training images resized once into memory,
    batches of ``batch_size`` random ``roi`` crops with the bundle's augmentation (:func:`_augment`), the last partial
    batch dropped, DiceCE, AdamW with a cosine schedule over ``epochs`` + 1."""
    from pipeline.data import find_cases, splits

    cases = splits.assign(find_cases("ph2", dataset_dir))["train"]
    data = [(_load_resized(c["image"], image_size, True), _load_resized(c["label"], image_size, False))
            for c in cases]
    return PlainLoop(network, stacked(data, lambda img, lab, g: _augment(img, lab, roi, g)), len(data),
                     batch_size=batch_size, drop_last=True, lr=lr, cosine_epochs=epochs + 1)


def plain_train(dataset_dir: str, network: str, epochs: int, retain_freed_memory: bool = False, **kwargs) -> dict:
    """Images/s of the plain loop (:func:`ph2_loop`) over ``epochs`` epochs after one warm-up epoch.
    ``retain_freed_memory``: give the loop the bundle's host-allocator setting (``pipeline.host_memory``), which a
    plain loop does not have; with it the comparison isolates what the framework itself costs."""
    from pipeline.host_memory import retain_freed_memory as retain

    retain(retain_freed_memory)
    loop = ph2_loop(dataset_dir, network, epochs, **kwargs)
    loop.epoch()  # warm-up
    done = [loop.epoch() for _ in range(epochs)]
    images = sum(e["images"] for e in done)
    return {"images_per_s": images / sum(e["s"] for e in done),
            "step_ms": 1e3 * float(np.median([t for e in done for t in e["step_s"]])),
            "faults_per_image": sum(e["faults"] for e in done) / images,
            "epochs": epochs, "images_per_epoch": done[-1]["images"], "max_rss_mb": max_rss_mb()}


def interleaved_train(dataset_dir: str, network: str, epochs: int, **overrides) -> dict:
    """The engine and the plain loop in one process, their epochs alternated: after each epoch of the bundle's
    trainer (timed from its start to the end of the bundle's own epoch-end handlers) one epoch of the plain loop
    (:func:`ph2_loop`) runs. Both sides see the same machine within seconds of each other and the same host
    allocator (the bundle's ``retain_freed_memory``, process-wide), so a drifting machine biases neither; the
    ratio of each pair of epochs is what the framework costs. The first pair is a warm-up; the engine's last epoch,
    which validates, is not timed."""
    from ignite.engine import Events

    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        wf = _workflow("training", dataset_dir=dataset_dir, network=network, epochs=epochs + 2, val_interval=10**6,
                       output_dir=tmp, **overrides)
        trainer = wf.parser.get_parsed_content("train#trainer")
        cfg = {k: wf.parser.get_parsed_content(k) for k in ("image_size", "roi_size", "batch_size", "lr")}
        loop = ph2_loop(dataset_dir, network, epochs + 2, batch_size=int(cfg["batch_size"]),
                         image_size=int(cfg["image_size"]), roi=int(cfg["roi_size"][0]), lr=float(cfg["lr"]))
        clock = _epoch_clock(trainer)

        @trainer.on(Events.EPOCH_COMPLETED)  # attached last: after the bundle's epoch-end handlers
        def _(engine):
            engine_s = time.perf_counter() - clock["t0"]
            if engine.state.epoch < engine.state.max_epochs:
                plain = loop.epoch()
                pairs.append({"engine_images_per_s": clock["images"] / engine_s,
                              "plain_images_per_s": plain["images"] / plain["s"],
                              # per image: waiting for the batch (engine) / building it (loop), and the step
                              "engine_data_ms": 1e3 * clock["data"] / clock["images"],
                              "plain_data_ms": 1e3 * (plain["s"] - sum(plain["step_s"])) / plain["images"],
                              "engine_step_ms": 1e3 * float(np.median(clock["steps"])),
                              "plain_step_ms": 1e3 * float(np.median(plain["step_s"]))})

        trainer.run()
    timed = pairs[1:]
    ratios = [p["engine_images_per_s"] / p["plain_images_per_s"] for p in timed]
    return {"pairs": timed, "ratio": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "engine_images_per_s": float(np.median([p["engine_images_per_s"] for p in timed])),
            "plain_images_per_s": float(np.median([p["plain_images_per_s"] for p in timed])),
            **{k: float(np.median([p[k] for p in timed])) for k in ("engine_data_ms", "plain_data_ms",
                                                                     "engine_step_ms", "plain_step_ms")},
            "epochs": len(timed), "batch_size": loop.batch_size, "max_rss_mb": max_rss_mb()}


LEVERS = ("fp32", "channels_last", "bf16_autocast", "channels_last_bf16", "compile")


def levers(network: str, steps: int = 6, batch_size: int = 8, size: int = 256, retain_freed_memory: bool = False
           ) -> dict:
    """Images/s of one training step (forward, DiceCE, backward, AdamW) on a fixed random batch for each CPU lever,
    the variants interleaved round by round so a noisy machine biases none of them; ``compile`` is timed after its
    compilation. Also the largest difference of the bf16 logits from fp32 ones (same weights, eval mode).
    ``retain_freed_memory`` (process-wide, so measured in a separate process): the bundle's host-allocator setting."""
    from monai.losses import DiceCELoss

    from pipeline.host_memory import retain_freed_memory as retain
    from pipeline.networks import build_network

    retain(retain_freed_memory)
    torch.manual_seed(0)
    x = torch.rand(batch_size, 3, size, size)
    y = (torch.rand(batch_size, 1, size, size) > 0.5).float()
    loss_fn = DiceCELoss(sigmoid=True)
    setups = {}
    for name in LEVERS:
        torch.manual_seed(0)
        net = build_network(network, in_channels=3, out_channels=1, width=16)
        xb = x
        if "channels_last" in name:
            net, xb = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        fwd = torch.compile(net) if name == "compile" else net
        setups[name] = (net, fwd, xb, torch.optim.AdamW(net.parameters(), lr=1e-3), "bf16" in name)

    def step(name):
        net, fwd, xb, opt, bf16 = setups[name]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fwd(xb)
        loss_fn(out.float(), y).backward()
        opt.step()

    times = {name: [] for name in LEVERS}
    for name in LEVERS:  # warm-up (and compilation)
        for _ in range(2):
            step(name)
    for _ in range(steps):
        for name in LEVERS:
            t0 = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - t0)
    out = {name: batch_size / float(np.median(t)) for name, t in times.items()}
    net = setups["fp32"][0].eval()
    with torch.inference_mode():
        ref = net(x[:2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x[:2]).float()
    out["bf16_max_logit_diff"] = float((ref - low).abs().max())
    out["bf16_mask_disagreement"] = float(((ref > 0) != (low > 0)).float().mean())
    return out


def _first_time(curve: list[dict], level: float) -> float | None:
    return next((c["elapsed_s"] for c in curve if c["val_iou"] >= level), None)


def engine_time_to_quality(dataset_dir: str, network: str, epochs: int | None) -> dict:
    """The bundle's default recipe as users run it; its validation IoU curve against wall time (from the first
    epoch, after caching), read from the run's ``metrics.json``."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"dataset_dir": dataset_dir, "network": network, "output_dir": tmp}
        if epochs:
            overrides["epochs"] = epochs
        wf = _workflow("training", **overrides)
        wf.run()
        history = json.loads((Path(tmp) / "metrics.json").read_text())["history"]
    curve = [{"epoch": h["epoch"], "elapsed_s": h["elapsed_s"], "val_iou": h["val_iou"]} for h in history
             if "val_iou" in h]
    return {"curve": curve, "epochs": history[-1]["epoch"], "total_s": history[-1]["elapsed_s"],
            "max_rss_mb": max_rss_mb()}


def plain_time_to_quality(dataset_dir: str, network: str, epochs: int, lr: float = 1e-3, size: int = 256,
                          batch_size: int = 8, val_interval: int = 2) -> dict:
    """The earlier projects' recipe as a plain loop: every image squashed to ``size`` x ``size`` (aspect ratio
    lost), a fixed learning rate, the loss and augmentation of :func:`plain_train`. Validated like the bundle: each
    validation image predicted at ``size`` x ``size``, the logits resized back to the source size, thresholded at 0
    (sigmoid 0.5), mean per-image IoU (``pipeline.metrics``); validation time counts, as it does for the bundle."""
    from pipeline.data import find_cases, splits
    from pipeline.metrics import case_record

    split = splits.assign(find_cases("ph2", dataset_dir))

    def squash(t, mode="area"):
        return F.interpolate(t[None], size=(size, size), mode=mode)[0]

    train = [(squash(_load_resized(c["image"], 0, True)), (squash(_load_resized(c["label"], 0, False)) > 0.5).float())
             for c in split["train"]]
    val = [(squash(_load_resized(c["image"], 0, True)), _load_resized(c["label"], 0, False)) for c in split["val"]]
    loop = PlainLoop(network, stacked(train, lambda img, lab, g: _augment(img, lab, size, g)), len(train),
                     batch_size=batch_size, drop_last=True, lr=lr)

    @torch.inference_mode()
    def validate(net):
        net.eval()
        return float(np.mean([case_record(F.interpolate(net(x[None]), size=y.shape[1:], mode="bilinear")[0] > 0, y,
                                          hd95=False)["iou"] for x, y in val]))

    curve = loop.fit(epochs, validate, val_interval, "val_iou", digits=2)["curve"]
    return {"curve": curve, "epochs": epochs, "total_s": curve[-1]["elapsed_s"], "lr": lr, "max_rss_mb": max_rss_mb()}


def inference(image: str, image_size: int, network: str, ckpt: str | None) -> dict:
    """Seconds per image of the bundle's inferer, a whole-image forward and MONAI's default sliding window."""
    from monai.inferers import sliding_window_inference

    wf = _workflow("inference", network=network, image_size=image_size, input_dir=str(Path(image).parent),
                   output_dir=tempfile.mkdtemp())
    net = wf.parser.get_parsed_content("net").eval()
    if ckpt:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("network", state))
    pre = wf.parser.get_parsed_content("infer#preprocessing")
    x = pre({"image": image})["image"][None].as_tensor()
    inferer = wf.parser.get_parsed_content("validate#inferer")
    paths = {
        "bundle": lambda: inferer(x, net),
        "whole_image": lambda: net(x),
        "monai_default_sliding_window": lambda: sliding_window_inference(x, (256, 256), 1, net),
    }
    out = {"input_hw": list(x.shape[2:])}
    with torch.inference_mode():
        masks = {k: (fn() > 0) for k, fn in paths.items()}
        for k, fn in paths.items():
            out[f"{k}_s"] = median_time(fn, repeats=5, warmup=1)
            out[f"{k}_mask_disagreement"] = float((masks[k] != masks["bundle"]).float().mean())
    out["max_rss_mb"] = max_rss_mb()
    return out


def _find_dsb_image(root: Path) -> str | None:
    from PIL import Image

    for p in sorted(root.glob("*/images/*.png")):
        with Image.open(p) as im:
            if im.size == (1388, 1040):
                return str(p)
    return None


def _run_part(args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter (own peak memory, no state shared between measurements)."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.bench.speed", "--part", *args], capture_output=True,
                          text=True)
    if proc.returncode:
        raise RuntimeError(f"bench part {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ttq_round(dataset_dir: str, network: str, epochs: int, plain_first: bool) -> dict:
    if plain_first:  # the plain loop needs the epoch count up front: the bundle's unless --ttq_epochs
        plain = _run_part(["ttq_plain", dataset_dir, network, str(epochs or _bundle_epochs())])
        engine = _run_part(["ttq_engine", dataset_dir, network, str(epochs)])
    else:
        engine = _run_part(["ttq_engine", dataset_dir, network, str(epochs)])
        plain = _run_part(["ttq_plain", dataset_dir, network, str(epochs or engine["epochs"])])
    target = plain["curve"][-1]["val_iou"]  # the plain loop's final validation IoU
    out = {"order": "plain first" if plain_first else "recipe first", "engine": engine, "plain": plain,
           "plain_final_iou": target, "engine_s_to_plain_final": _first_time(engine["curve"], target),
           "plain_total_s": plain["total_s"]}
    for level in (0.85, 0.88):
        out[f"engine_s_to_{level}"] = _first_time(engine["curve"], level)
        out[f"plain_s_to_{level}"] = _first_time(plain["curve"], level)
    t = out["engine_s_to_plain_final"]
    out["ratio_to_plain_final"] = t / plain["total_s"] if t is not None else None
    return out


def _bundle_epochs() -> int:
    return int(json.loads(Path(BUNDLE).read_text())["epochs"])


def time_to_quality(dataset_dir: str, network: str, epochs: int, rounds: int = 1) -> dict:
    """Rounds alternate which side runs first (recipe first in odd rounds), so a machine whose speed drifts over
    minutes does not favour one side; each round's ratio compares the two runs of that round."""

    def fmt(x):
        return "never" if x is None else f"{x:.0f}s"

    results = []
    for r in range(rounds):
        out = _ttq_round(dataset_dir, network, epochs, plain_first=r % 2 == 1)
        results.append(out)
        plain, engine, t = out["plain"], out["engine"], out["engine_s_to_plain_final"]
        print(f"time to quality ({network}, round {r + 1}, {out['order']}): plain loop final val IoU "
              f"{out['plain_final_iou']:.3f} after {fmt(plain['total_s'])} ({plain['epochs']} epochs, fixed lr "
              f"{plain['lr']}, 256x256 squashed); default recipe reaches it after {fmt(t)} of its "
              f"{fmt(engine['total_s'])} (ratio {out['ratio_to_plain_final'] or float('nan'):.2f}, target <= 0.5) | "
              f"IoU 0.85: recipe {fmt(out['engine_s_to_0.85'])}, plain {fmt(out['plain_s_to_0.85'])} | IoU 0.88: "
              f"recipe {fmt(out['engine_s_to_0.88'])}, plain {fmt(out['plain_s_to_0.88'])} | peak RSS recipe "
              f"{engine['max_rss_mb']:.0f} MB, plain {plain['max_rss_mb']:.0f} MB", flush=True)
    ratios = [o["ratio_to_plain_final"] for o in results]
    summary = {**results[0], "rounds": results}
    if rounds > 1:
        finite = [x if x is not None else math.inf for x in ratios]
        summary["ratio_to_plain_final"] = float(np.median(finite))
        print(f"time to quality ({network}): ratio median {summary['ratio_to_plain_final']:.2f} over {rounds} "
              f"rounds ({min(finite):.2f}-{max(finite):.2f})", flush=True)
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", default="../shared/data/ph2/PH2Dataset")
    ap.add_argument("--dsb_dir", default="../shared/data/dsb2018/stage1_train")
    ap.add_argument("--networks", nargs="*", default=["unet", "segnet"])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--ckpt", help="trained checkpoint for the inference comparison (masks of random weights agree "
                                   "less meaningfully)")
    ap.add_argument("--time_to_quality", action="store_true",
                    help="also train the default recipe and the earlier projects' plain loop to the end and compare "
                         "wall time to validation IoU 0.85 / 0.88 (about 10 minutes on 2 cores)")
    ap.add_argument("--ttq_epochs", type=int, default=0, help="epochs for --time_to_quality (0: the bundle's)")
    ap.add_argument("--only_time_to_quality", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scaling", action="store_true", help="only measure epoch time and cache size against the "
                                                           "number of images and the crop size (synthetic data)")
    ap.add_argument("--interleaved", action="store_true",
                    help="only measure training throughput with the engine's and the plain loop's epochs alternated "
                         "in one process (same allocator setting, drift-proof)")
    ap.add_argument("--levers", action="store_true", help="only measure the CPU levers (channels_last, bf16 "
                                                          "autocast, torch.compile) on one training step per network")
    ap.add_argument("--rounds", type=int, default=1, help="throughput rounds per network (plain loop, plain loop with "
                         "the bundles' allocator setting, engine; each in a fresh process), or time-to-quality "
                         "rounds (recipe first in odd rounds, plain loop first in even ones); the ratios reported "
                         "are the medians")
    ap.add_argument("--engine_overrides", default="{}", help="bundle overrides for the engine side of the throughput "
                                                              "comparison, as JSON, e.g. '{\"channels_last\": true}'")
    ap.add_argument("--json", type=Path, default=Path("runs/bench.json"))
    ap.add_argument("--part", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.part:  # one measurement, called by the orchestrator below
        kind, *rest = args.part
        if kind == "engine":
            res = engine_train(rest[0], rest[1], int(rest[2]), **json.loads(rest[3] if len(rest) > 3 else "{}"))
        elif kind == "plain":
            res = plain_train(rest[0], rest[1], int(rest[2]), retain_freed_memory=len(rest) > 3 and rest[3] == "retain")
        elif kind == "interleaved":
            res = interleaved_train(rest[0], rest[1], int(rest[2]), **json.loads(rest[3] if len(rest) > 3 else "{}"))
        elif kind == "levers":
            res = levers(rest[0], retain_freed_memory=len(rest) > 1 and rest[1] == "retain")
        elif kind == "scaling":
            res = scaling(rest[0])
        elif kind == "ttq_engine":
            res = engine_time_to_quality(rest[0], rest[1], int(rest[2]) or None)
        elif kind == "ttq_plain":
            res = plain_time_to_quality(rest[0], rest[1], int(rest[2]))
        else:
            res = inference(rest[0], int(rest[1]), rest[2], rest[3] if len(rest) > 3 else None)
        print(json.dumps(res))
        return

    if not Path(args.dataset_dir).is_dir():
        raise SystemExit(f"PH2 not found at {args.dataset_dir}: pass --dataset_dir")
    from pipeline.data import find_cases, splits

    results = {"torch_threads": torch.get_num_threads(), "engine_overrides": json.loads(args.engine_overrides),
               "training": {}, "inference": {}}
    if args.scaling:
        rows = results["scaling"] = _run_part(["scaling", args.networks[0]])
        for r in rows:
            print(f"scaling {args.networks[0]}: {r['train_images']:4d} train images, crop {r['roi']}: epoch "
                  f"{r['epoch_s']:.2f}s ({r['images_per_s']:.1f} img/s), cache {r['cache_mb']:.0f} MB "
                  f"({r['cache_mb'] / r['train_images']:.2f} MB/image), peak RSS {r['max_rss_mb']:.0f} MB", flush=True)
    if args.levers:
        for net in args.networks:
            for allocator in ("default", "retain"):  # process-wide setting: one process each
                res = results.setdefault("levers", {}).setdefault(net, {})[allocator] = _run_part(
                    ["levers", net, allocator])
                print(f"levers {net:8s} {allocator:7s} allocator: "
                      + " | ".join(f"{k} {res[k]:.1f} img/s ({res[k] / res['fp32']:.2f}x)" for k in LEVERS)
                      + f" | bf16 logits max diff {res['bf16_max_logit_diff']:.3f}, mask pixels differing "
                        f"{res['bf16_mask_disagreement']:.3%}", flush=True)
            both = results["levers"][net]
            both["retain_freed_memory_gain"] = both["retain"]["fp32"] / both["default"]["fp32"]
            print(f"levers {net:8s} retain_freed_memory (fp32 step, retained / default allocator): "
                  f"{both['retain_freed_memory_gain']:.2f}x", flush=True)
    if args.interleaved:
        for net in args.networks:
            res = results.setdefault("interleaved", {})[net] = _run_part(
                ["interleaved", args.dataset_dir, net, str(args.epochs), args.engine_overrides])
            print(f"train {net:8s} interleaved, {res['epochs']} epoch pairs: engine {res['engine_images_per_s']:.1f} "
                  f"img/s, plain loop {res['plain_images_per_s']:.1f} img/s (medians); engine / plain loop per pair: "
                  f"median {res['ratio']:.2f} ({res['ratio_min']:.2f}-{res['ratio_max']:.2f}) | per image, data: engine "
                  f"{res['engine_data_ms']:.1f} ms, loop {res['plain_data_ms']:.1f} ms | step of {res['batch_size']}: "
                  f"engine {res['engine_step_ms']:.0f} ms, loop {res['plain_step_ms']:.0f} ms | peak RSS "
                  f"{res['max_rss_mb']:.0f} MB (both sides)", flush=True)
    if args.levers or args.scaling or args.interleaved:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        return
    if args.time_to_quality or args.only_time_to_quality:
        results["time_to_quality"] = time_to_quality(args.dataset_dir, args.networks[0], args.ttq_epochs,
                                                      args.rounds)
        if args.only_time_to_quality:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
            print(f"wrote {args.json}")
            return
    for net in args.networks:
        rounds = []
        for r in range(args.rounds):  # alternate the sides: one process each, so spread between processes shows
            plain = _run_part(["plain", args.dataset_dir, net, str(args.epochs)])
            plain_retained = _run_part(["plain", args.dataset_dir, net, str(args.epochs), "retain"])
            engine = _run_part(["engine", args.dataset_dir, net, str(args.epochs), args.engine_overrides])
            rounds.append({"engine": engine, "plain": plain, "plain_retained": plain_retained,
                           "ratio": engine["images_per_s"] / plain["images_per_s"],
                           "ratio_same_allocator": engine["images_per_s"] / plain_retained["images_per_s"]})
            print(f"train {net:8s} round {r + 1}: engine {engine['images_per_s']:6.1f} img/s (data wait "
                  f"{engine['data_fraction']:.0%}, epoch-end handlers {engine['epoch_end_fraction']:.0%}, step "
                  f"{engine['step_ms']:.0f} ms, {engine['faults_per_image']:.0f} page faults/image, "
                  f"{engine['max_rss_mb']:.0f} MB) | plain loop {plain['images_per_s']:6.1f} "
                  f"img/s (step {plain['step_ms']:.0f} ms, {plain['faults_per_image']:.0f} page faults/image, "
                  f"{plain['max_rss_mb']:.0f} MB) | plain loop with the engine's "
                  f"allocator setting {plain_retained['images_per_s']:6.1f} img/s (step "
                  f"{plain_retained['step_ms']:.0f} ms, {plain_retained['faults_per_image']:.0f} page faults/image) | "
                  f"ratio {rounds[-1]['ratio']:.2f}, "
                  f"same allocator {rounds[-1]['ratio_same_allocator']:.2f}", flush=True)
        ratios = [r["ratio"] for r in rounds]
        same = [r["ratio_same_allocator"] for r in rounds]
        results["training"][net] = {**rounds[len(rounds) // 2], "rounds": rounds, "ratio": float(np.median(ratios)),
                                    "ratio_same_allocator": float(np.median(same))}
        if len(rounds) > 1:
            print(f"train {net:8s} ratio median {np.median(ratios):.2f} over {len(rounds)} rounds "
                  f"({min(ratios):.2f}-{max(ratios):.2f}); same allocator {np.median(same):.2f} "
                  f"({min(same):.2f}-{max(same):.2f})", flush=True)

    ph2_image = splits.assign(find_cases("ph2", args.dataset_dir))["test"][0]["image"]
    dsb_image = _find_dsb_image(Path(args.dsb_dir)) if Path(args.dsb_dir).is_dir() else None
    cases = [("ph2_working_res", ph2_image, 256), ("ph2_source_res", ph2_image, 0)]
    if dsb_image:
        cases.append(("dsb_1388x1040", dsb_image, 0))
    for name, image, size in cases:
        res = _run_part(["infer", image, str(size), args.networks[0], *([args.ckpt] if args.ckpt else [])])
        results["inference"][name] = res
        print(f"infer {name:16s} {tuple(res['input_hw'])}: bundle {res['bundle_s']:.3f}s | whole image "
              f"{res['whole_image_s']:.3f}s (disagree {res['whole_image_mask_disagreement']:.2%}) | MONAI default "
              f"sliding window {res['monai_default_sliding_window_s']:.3f}s "
              f"(disagree {res['monai_default_sliding_window_mask_disagreement']:.2%}) | {res['max_rss_mb']:.0f} MB",
              flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
