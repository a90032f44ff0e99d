"""Run folders: where a run writes, what it records about itself, and atomic JSON writes."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

logger = logging.getLogger(__name__)


def default_output_dir(bundle: str, network: str, root: str = "runs") -> str:
    """``runs/<bundle>-<network>-<YYYYmmdd-HHMMSS>``; a numeric suffix keeps two runs of one second apart. In
    distributed training rank 0 names the folder and every rank gets that name (a collective: all ranks call this
    at the same point; ``configs/distributed.json`` does it in ``initialize``)."""
    from .distributed import broadcast_object, is_main

    path = None
    if is_main():
        base = Path(root) / f"{bundle}-{network}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        path, k = base, 1
        while path.exists():
            path, k = base.with_name(f"{base.name}-{k}"), k + 1
    return str(broadcast_object(path))


def _clean(obj):
    """JSON-safe copy: NaN/inf become null, tensors and numpy scalars become numbers, paths become strings."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as JSON atomically (temporary file, then rename): a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_clean(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)
    return path


def update_json(path: str | Path, **fields) -> dict:
    path = Path(path)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.update(fields)
    write_json(path, doc)
    return doc


def start(output_dir: str, purpose: str, hyperparameters: dict, dataset: dict | None = None,
          splits: dict | None = None, split_params: dict | None = None) -> Path:
    """Create the run folder and record what the run is: command, hyperparameters, dataset (and whether it is
    synthetic), the split case ids and, in distributed training, the number of processes. Returns the folder.
    In distributed training only rank 0 writes."""
    from .data import splits as splits_mod
    from .data.synthetic import is_synthetic
    from .distributed import is_main, world_size

    out = Path(output_dir)
    if not is_main():
        return out
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "purpose": purpose,
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "hyperparameters": hyperparameters,
    }
    if world_size() > 1:
        import torch.distributed as dist

        info["distributed"] = {"world_size": world_size(), "backend": dist.get_backend()}
    if dataset is not None:
        info["dataset"] = {**dataset, "synthetic": is_synthetic(dataset["dir"])}
    if splits is not None:
        splits_mod.save(splits, out / "splits.json", **(split_params or {}))
        info["split_sizes"] = {k: len(v) for k, v in splits.items()}
    write_json(out / "config.json", info)
    logger.info("%s: writing to %s", purpose, out)
    return out


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def existing_file(path, name: str) -> str:
    """``path`` if it is a file; otherwise a clear error naming the option (checked before any work starts)."""
    if path is None or str(path) == "":
        raise ValueError(f"--{name} is required: give the path of a checkpoint, e.g. runs/<run>/models/best.pt")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--{name}: no such file: {path}")
    return str(path)


def existing_dir(path, name: str) -> str:
    if path is None or str(path) == "":
        raise ValueError(f"--{name} is required")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"--{name}: no such folder: {path}")
    return str(path)


def report_training(output_dir: str, config_file: str = "bundles/<bundle>.json", dataset_dir: str | None = None) -> dict:
    """Log where the run is, its best validation score and the commands to review and evaluate it (rank 0 only)."""
    from .distributed import is_main

    if not is_main():
        return {}
    out = Path(output_dir)
    doc = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    best = doc.get("best") or {}
    ckpt = out / "models" / "best.pt"
    lines = [f"run folder: {out}"]
    if best:
        lines.append("best validation: epoch {} ".format(best["epoch"]) + "  ".join(
            f"{k[4:]} {v:.4f}" for k, v in best.items() if k.startswith("val_")))
    lines += [
        f"review:   tensorboard --logdir {out.parent}",
        f"evaluate: python -m monai.bundle run evaluate --config_file {config_file} --ckpt {ckpt}"
        + (f" --dataset_dir {dataset_dir}" if dataset_dir else ""),
    ]
    print("\n".join(["training finished", *lines]), flush=True)
    return doc


def as_bool(value, name: str) -> bool:
    """A switch given in a config or on the command line: ``fire`` passes ``--x false`` as the *string* "false",
    which Python would take as true, so strings are parsed here and anything unclear is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(f"--{name} must be true or false, got {value!r}")


# validation metrics that can pick best.pt; val_volume_dice only in bundles with group_metrics (LGG, NIfTI)
KEY_METRICS = ("val_iou", "val_dice", "val_volume_dice")


def check_hyperparameters(hp: dict) -> dict:
    """Reject bad overrides before any data is read or any folder written; each message names the option."""
    from .losses import LOSSES, OUT_CHANNELS
    from .networks import NETWORKS

    problems = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    def positive_int(name: str) -> None:
        v = hp.get(name)
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"--{name} must be a positive integer, got {v!r}")

    for name in ("epochs", "batch_size", "val_interval", "width"):
        positive_int(name)
    need(isinstance(hp.get("lr"), (int, float)) and hp["lr"] > 0, f"--lr must be a positive number, got {hp.get('lr')!r}")
    need(hp.get("network") in NETWORKS, f"--network {hp.get('network')!r} is unknown; choose one of: {', '.join(sorted(NETWORKS))}")
    need(hp.get("loss") in LOSSES, f"--loss {hp.get('loss')!r} is unknown; choose one of: {', '.join(sorted(LOSSES))}")
    if hp.get("loss") in LOSSES and "out_channels" in hp:
        want = OUT_CHANNELS.get(hp["loss"], 1)
        need(hp["out_channels"] == want, f"--loss {hp['loss']} needs --out_channels {want}, got {hp['out_channels']!r}")
    min_size = hp.get("min_lesion_size", 0)
    need(isinstance(min_size, int) and not isinstance(min_size, bool) and min_size >= 0,
         f"--min_lesion_size must be a whole number of pixels >= 0 (0: off), got {min_size!r}")
    need(hp.get("key_metric", "val_iou") in KEY_METRICS,
         f"--key_metric must be one of {', '.join(KEY_METRICS)}, got {hp.get('key_metric')!r}")
    if hp.get("key_metric") == "val_volume_dice":
        need(as_bool(hp.get("group_metrics", False), "group_metrics"),
             "--key_metric val_volume_dice needs --group_metrics true (cases grouped into patient volumes)")
    need(hp.get("cache", "memory") in ("memory", "disk", "none"),
         f"--cache must be memory, disk or none, got {hp.get('cache')!r}")
    folds, fold = hp.get("folds", 0), hp.get("fold", 0)
    need(isinstance(folds, int) and (folds == 0 or folds >= 2) and isinstance(fold, int)
         and (0 <= fold < folds or folds == fold == 0),
         f"--folds must be 0 (no cross-validation) or >= 2, and --fold in 0..folds-1; got folds={folds!r}, fold={fold!r}")
    size = hp.get("image_size")
    need(isinstance(size, int) and not isinstance(size, bool) and size >= 0,
         f"--image_size must be 0 (source resolution) or a positive integer, got {size!r}")
    roi = hp.get("roi_size")
    need(isinstance(roi, (list, tuple)) and len(roi) == 2 and all(isinstance(r, int) and r >= 8 for r in roi),
         f"--roi_size must be two integers >= 8, e.g. [256,256], got {roi!r}")
    if isinstance(size, int) and size > 0 and isinstance(roi, (list, tuple)) and len(roi) == 2:
        need(max(roi) <= 2 * size, f"--roi_size {list(roi)} is much larger than the working resolution "
                                   f"(--image_size {size}): most of each crop would be padding")
    if problems:
        raise ValueError("bad configuration:\n  " + "\n  ".join(problems))
    return hp
