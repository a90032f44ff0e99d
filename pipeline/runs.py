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


def default_output_dir(bundle: str, network: str, root: str = "runs", ckpt=None, split: str = "test",
                       input_dir=None) -> str:
    """Where a workflow writes when no ``--output_dir`` is given.

    - training: ``runs/<bundle>-<network>-<YYYYmmdd-HHMMSS>``;
    - evaluate of a checkpoint inside a training run (or of a cross-validation folder): ``<run>/eval-<split>``;
    - inference (``--input_dir`` given) of such a checkpoint: ``<run>/inference-<YYYYmmdd-HHMMSS>``;
    - a checkpoint outside a run folder: ``runs/<bundle>-<network>-eval-<split>-<time>`` (or ``-inference-``).

    A numeric suffix keeps an existing folder. In distributed training rank 0 names the folder and every rank gets
    that name (a collective: all ranks call this at the same point; ``configs/distributed.json`` does it in
    ``initialize``)."""
    from .distributed import broadcast_object, is_main

    path = None
    if is_main():
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        task = "" if not ckpt else f"inference-{stamp}" if input_dir else f"eval-{split}"
        home = _home_of(ckpt) if ckpt else None
        if home is not None:
            base = home / task
        else:
            base = Path(root) / (f"{bundle}-{network}-{stamp}" if not task else
                                 f"{bundle}-{network}-{task}" + ("" if input_dir else f"-{stamp}"))
        path, k = base, 1
        while path.exists():
            path, k = base.with_name(f"{base.name}-{k}"), k + 1
    return str(broadcast_object(path))


def _home_of(ckpt) -> Path | None:
    """The training run (``<run>/models/best.pt`` -> ``<run>``) or cross-validation folder a ``--ckpt`` names; None
    for a list of checkpoints or a file outside a run."""
    from . import crossval

    text = str(ckpt)
    if "," in text:
        return None
    if crossval.is_ensemble(text):
        return Path(text)
    record = find_record(text) if Path(text).is_file() else None
    return record.parent if record is not None else None


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
          splits: dict | None = None, split_params: dict | None = None, bundle_file: str | None = None,
          runtime: dict | None = None) -> Path:
    """Create the run folder and record what the run is: command, every setting the workflow resolved
    (``hyperparameters``: the bundle's settings with the overrides, and for evaluate / inference those restored
    from the checkpoint's run), the bundle's components as written, the package version and git commit, dataset
    (and whether it is synthetic), the split case ids and, in distributed training, the number of processes.
    Returns the folder. In distributed training only rank 0 writes."""
    from .data import splits as splits_mod
    from .data.marker import is_synthetic
    from .distributed import is_main, world_size

    out = Path(output_dir)
    if not is_main():
        return out
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "purpose": purpose,
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "hyperparameters": {k: v for k, v in hyperparameters.items() if k != RESTORED_FROM},
        **({"restored_from": hyperparameters[RESTORED_FROM]} if RESTORED_FROM in hyperparameters else {}),
        "overrides": _overrides(hyperparameters, bundle_file),
        "runtime": runtime or {},
        "provenance": provenance(bundle_file),
    }
    if world_size() > 1:
        import torch.distributed as dist

        from .distributed import gathered_ranks

        info["distributed"] = {"world_size": world_size(), "backend": dist.get_backend(), "ranks": gathered_ranks()}
    if dataset is not None:
        info["dataset"] = {**dataset, "synthetic": is_synthetic(dataset["dir"])}
    if splits is not None:
        splits_mod.save(splits, out / "splits.json", **(split_params or {}))
        info["split_sizes"] = {k: len(v) for k, v in splits.items()}
        fraction = float((split_params or {}).get("train_fraction", 1.0))
        if fraction < 1 and dataset is not None:
            unused = dataset["n_cases"] - sum(info["split_sizes"].values())
            info["split_sizes"]["unused"] = unused
            logger.warning("train_fraction %g: training on %d cases; %d training cases left out of every split",
                           fraction, len(splits["train"]), unused)
    write_json(out / "config.json", info)
    logger.info("%s: writing to %s", purpose, out)
    return out


RESTORED_FROM = "_restored_from_"
# what a model was trained with and cannot be evaluated without: a contradicting override is an error
MODEL_SETTINGS = ("network", "width", "network_kwargs", "in_channels", "out_channels", "image_size", "zoom", "roi_size",
                  "intensity_norm", "intensity_percentile", "threshold", "flip_tta", "rot90_tta",
                  "keep_largest_component", "fill_holes", "min_lesion_size", "volume_largest_component",
                  "invert_bright_background", "inverted_median_to_zero", "context_slices")
# where the model's data came from: taken from the run unless given on the command line
DATA_SETTINGS = ("dataset_dir", "layout", "layout_args")


def _git_commit(root: Path) -> dict:
    import subprocess

    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return {"git_commit": commit or None, "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))
                if commit else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def host() -> dict:
    """Platform, CPUs and torch's thread count (which sets the float summation order and so the last digits of a CPU
    run)."""
    import platform

    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def machine_line(machines: list) -> str:
    """A report's closing line on the machines (:func:`host`) its training runs recorded, each named once (``None``:
    a run made before the record held it); this process's where none did. A report written with another thread
    count than its runs were trained with still names theirs."""
    distinct = [m for i, m in enumerate(machines) if m and m not in machines[:i]] or [host()]
    said = "; ".join(f"{m['platform']}, {m['cpus']} CPUs, {m['torch_threads']} torch thread"
                     f"{'' if m['torch_threads'] == 1 else 's'}" for m in distinct)
    return f"Machine{'s' if len(distinct) > 1 else ''}: {said}; the wall times include whatever else ran on it."


def recorded_host(run_dir) -> dict | None:
    """The :func:`host` a training run's record (``config.json``) names, if it holds one."""
    doc = json.loads((Path(run_dir) / "config.json").read_text())
    return doc.get("provenance", {}).get("host")


def provenance(bundle_file: str | None = None) -> dict:
    """Package versions, the git commit of this checkout (and whether it had uncommitted changes), the :func:`host`
    and the bundle file with its components as written (readers, augmentation, samplers: what a setting cannot
    say)."""
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    import platform

    info = {"package": {n: version(n) for n in ("segpipe", "monai", "torch", "pytorch-ignite", "numpy")},
            "python": platform.python_version(), **_git_commit(Path(__file__).resolve().parents[1]), "host": host()}
    if bundle_file and Path(bundle_file).is_file():
        from .bundles import COMPONENT_KEYS, own_part

        own = own_part(json.loads(Path(bundle_file).read_text()))
        info["bundle_file"] = str(bundle_file)
        info["components"] = {k: own[k] for k in COMPONENT_KEYS if k in own}
    return info


def _overrides(settings: dict, bundle_file: str | None) -> dict:
    """The settings whose value differs from what the bundle file (and the defaults it forwards) states."""
    if not bundle_file or not Path(bundle_file).is_file():
        return {}
    from .bundles import file_values

    stated = file_values(bundle_file)
    return {k: v for k, v in settings.items() if k in stated and not _same(v, stated[k])}


def find_record(ckpt) -> Path | None:
    """The ``config.json`` of the training run a checkpoint belongs to: ``<run>/models/best.pt`` (or any file in
    ``<run>/`` or ``<run>/models/``) -> ``<run>/config.json``; None for a file outside a run folder."""
    path = Path(str(ckpt)).resolve()
    for folder in (path.parent, path.parent.parent):
        record = folder / "config.json"
        if record.is_file():
            try:
                doc = json.loads(record.read_text())
            except json.JSONDecodeError:
                raise ValueError(f"{record}: the run record of --ckpt {ckpt} is not valid JSON") from None
            if doc.get("purpose") == "training":
                return record
    return None


def _same(a, b) -> bool:
    def normal(v):
        # a switch given on the command line is recorded as fire passed it: `--x true` as the string "true"
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        if isinstance(v, (list, tuple)):
            return [normal(x) for x in v]
        if isinstance(v, dict):
            return {str(k): normal(x) for k, x in v.items()}
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        return v

    return normal(a) == normal(b)


def resolve(settings: dict, bundle_file: str, ckpt=None, override_recorded: bool = False) -> dict:
    """The settings a workflow runs with. Training: the bundle's settings with the command line's overrides.
    Evaluate / inference of a checkpoint inside a training run: the model's settings (:data:`MODEL_SETTINGS`) and
    its data (:data:`DATA_SETTINGS`) come from that run's ``config.json``. A model setting given on the command
    line that contradicts the record is an error naming both values, unless ``--override_recorded true``; a data
    setting given on the command line (another ``--dataset_dir``) is used as given. A value equal to the bundle's
    own default counts as not given."""
    from . import crossval

    settings = dict(settings)
    if crossval.is_ensemble(ckpt):  # fold 0's record with the settings chosen out-of-fold, or the first member's
        record, recorded = crossval.record(ckpt)
    else:
        if ckpt is None or str(ckpt) == "" or not Path(str(ckpt)).is_file():
            return settings  # a missing --ckpt is reported by the loader, naming the option
        record = find_record(ckpt)
        if record is None:
            logger.warning("--ckpt %s is not inside a training run folder (no config.json beside it): evaluating "
                           "with the bundle's settings and the command line's overrides", ckpt)
            return settings
        recorded = json.loads(record.read_text()).get("hyperparameters") or {}
    from .bundles import file_values

    stated = file_values(bundle_file)
    # a model setting the bundle states as an expression (out_channels) cannot have been given: restore it; a data
    # setting it states with references (NIfTI's layout_args from slice_axis) is taken as given: keep it
    given = {k for k in settings if (k in stated and not _same(settings[k], stated[k]))
             or (k in DATA_SETTINGS and k not in stated)}
    problems, restored = [], []
    for key in MODEL_SETTINGS + DATA_SETTINGS:
        if key not in recorded or key not in settings or _same(settings[key], recorded[key]):
            continue
        if key in given:
            if key in MODEL_SETTINGS and not override_recorded:
                problems.append(f"--{key} {settings[key]!r} contradicts the run's {key} {recorded[key]!r}")
            else:
                logger.warning("--%s %r replaces the run's %s %r (%s)", key, settings[key], key, recorded[key], record)
            continue
        settings[key] = recorded[key]
        restored.append(key)
    if problems:
        # SystemExit: MONAI's config parser does not wrap it, so the message is the last thing on screen
        raise SystemExit(f"error: the checkpoint's run {record} was trained otherwise:\n  " + "\n  ".join(problems)
                         + "\ndrop these overrides to evaluate the model as it was trained, or pass "
                         "--override_recorded true to use them anyway")
    if restored:
        logger.info("restored from %s: %s", record, ", ".join(f"{k}={settings[k]!r}" for k in restored))
    settings[RESTORED_FROM] = str(record)
    return settings


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
        # the default runs/ shows this run beside the others; a folder given elsewhere is shown alone
        f"review:   tensorboard --logdir {out.parent if out.parent.name == 'runs' else out}",
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

    for name in ("epochs", "batch_size", "val_interval", "width", "gallery_cases"):
        positive_int(name)
    for name in ("hair_prob", "affine_prob"):
        if name in hp:
            v = hp[name]
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
                 f"--{name} must be a probability from 0 to 1 (0: off), got {v!r}")
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
    zoom = hp.get("zoom", 1)
    need(isinstance(zoom, (int, float)) and not isinstance(zoom, bool) and 0.25 <= zoom <= 4,
         f"--zoom must be a scale factor from 0.25 to 4 (1: source resolution), got {zoom!r}")
    need(not (isinstance(size, int) and size > 0 and zoom != 1),
         f"--zoom {zoom} and --image_size {size} both set the working resolution: use one of them")
    roi = hp.get("roi_size")
    need(isinstance(roi, (list, tuple)) and len(roi) == 2 and all(isinstance(r, int) and r >= 8 for r in roi),
         f"--roi_size must be two integers >= 8, e.g. [256,256], got {roi!r}")
    if isinstance(size, int) and size > 0 and isinstance(roi, (list, tuple)) and len(roi) == 2:
        need(max(roi) <= 2 * size, f"--roi_size {list(roi)} is much larger than the working resolution "
                                   f"(--image_size {size}): most of each crop would be padding")
    if problems:
        raise ValueError("bad configuration:\n  " + "\n  ".join(problems))
    return hp
