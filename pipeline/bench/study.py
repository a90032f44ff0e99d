"""Studies: a grid of ordinary bundle runs, and the tables and plots that compare them.

    python -m pipeline.bench.study configs/studies/ph2.yaml            # train + evaluate what is missing, then report
    python -m pipeline.bench.study configs/studies/ph2.yaml --dry-run  # list the runs and their state
    python -m pipeline.bench.study configs/studies/ph2.yaml --report   # only (re)write the report

A study file (YAML)::

    name: ph2                          # the study folder: runs/studies/<name> unless output_dir is given
    bundle: bundles/ph2.json
    fixed: {epochs: 40, dataset_dir: ../shared/data/ph2/PH2Dataset}   # overrides every run gets
    grid:                              # every combination becomes one run, in this order
      network: [unet, segnet]
      loss: [bce, dice]
      lr: [1.0e-3, 1.0e-4]
    split: test                        # the held-out split each run's best.pt is evaluated on
    pool: fold                         # optional: also pool the test scores over this grid key (cross-validation:
                                       # grid fold: [0, 1, 2, 3] with fixed folds: 4 tests every patient once)

Each run is ``python -m monai.bundle run training`` then ``run evaluate --split <split>`` in its own folder
``<study>/<key>=<value>,...``, so any one run can be reproduced, inspected or resumed alone (``config.json`` holds its
command). A run whose training and evaluation are complete is skipped; one killed during training is resumed from
its ``models/last.pt``; one killed before its first checkpoint starts again. A folder whose recorded
hyperparameters differ from the study file is an error (rename the study or remove the folder), never overwritten.

The report, in the study folder:

- ``results.csv`` / ``results.md``: per run the grid values, parameter count, best validation score and epoch, the
  test IoU and Dice (mean, median, 95% bootstrap CI of the mean over test cases, or over patients for grouped data),
  HD95, the paired bootstrap difference to the reference run (the run with the best *validation* score, so the
  comparison is not chosen on the test set), training wall time, median epoch time, peak memory, and evaluation
  time per full-resolution image. The statistics are ``pipeline.bench.stats``.
- ``val_curves.png`` (each run's key validation metric per epoch, all runs) and ``test_scores.png`` (test score
  per run with CI bars).
- TensorBoard HParams entries under ``<study>/hparams`` (``tensorboard --logdir <study>``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.bench.stats import N_BOOTSTRAP, bootstrap_ci, paired_difference, unit_scores
from pipeline.crossval import cli_args

logger = logging.getLogger(__name__)

EVAL_DIR = "eval-{split}"


@dataclass
class Study:
    name: str
    bundle: str
    grid: dict
    fixed: dict = field(default_factory=dict)
    split: str = "test"
    output_dir: str = ""
    description: str = ""
    path: str = ""
    pool: str = ""

    @property
    def root(self) -> Path:
        return Path(self.output_dir or Path("runs") / "studies" / self.name)


@dataclass
class Run:
    name: str
    values: dict  # the grid values of this run
    overrides: dict  # fixed + values
    folder: Path


def bundle_ids(bundle_file: str | Path) -> set[str]:
    """The settings a run of ``bundle_file`` records and a study or command line may override: the keys of its
    ``settings`` (what ``pipeline.bundles`` writes from the bundle and configs/defaults.json)."""
    return set(json.loads(Path(bundle_file).read_text())["settings"])


def load_study(path: str | Path) -> Study:
    """Read and check a study file; every problem names the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping with name, bundle and grid")
    unknown = set(doc) - {"name", "bundle", "grid", "fixed", "split", "output_dir", "description", "pool"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    for key in ("name", "bundle", "grid"):
        if key not in doc:
            raise ValueError(f"{path}: missing required key {key!r}")
    if not Path(doc["bundle"]).is_file():
        raise FileNotFoundError(f"{path}: bundle {doc['bundle']!r} not found (run from the repository root)")
    grid = doc["grid"]
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: grid must map override names to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
    fixed = doc.get("fixed") or {}
    both = set(fixed) & set(grid)
    if both:
        raise ValueError(f"{path}: {sorted(both)} given both in fixed and in grid")
    ids = bundle_ids(doc["bundle"])
    typos = sorted(k for k in [*fixed, *grid] if k not in ids)
    if typos:
        raise ValueError(f"{path}: {typos} are not settings of {doc['bundle']} (a typo would train with the "
                         f"bundle default); its settings: {', '.join(sorted(ids))}")
    if doc.get("pool") and doc["pool"] not in grid:
        raise ValueError(f"{path}: pool {doc['pool']!r} is not a grid key")
    if doc.get("split", "test") not in ("train", "val", "test"):
        raise ValueError(f"{path}: split must be train, val or test, got {doc['split']!r}")
    return Study(name=str(doc["name"]), bundle=str(doc["bundle"]), grid=grid, fixed=fixed,
                 split=doc.get("split", "test"), output_dir=str(doc.get("output_dir") or ""),
                 description=str(doc.get("description") or ""), path=str(path),
                 pool=str(doc.get("pool") or ""))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return str(value)


def expand(study: Study) -> list[Run]:
    """One run per combination of grid values, in the grid's order (last key varies fastest)."""
    keys = list(study.grid)
    runs = []
    for combo in itertools.product(*(study.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        name = ",".join(f"{k}={_fmt(v)}" for k, v in values.items()).replace("/", "_").replace(" ", "")
        runs.append(Run(name=name, values=values, overrides={**study.fixed, **values}, folder=study.root / name))
    return runs


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def state(run: Run, split: str) -> str:
    """``done`` (trained and evaluated), ``trained``, ``partial`` (has a last.pt to resume from) or ``new``."""
    trained = _read_json(run.folder / "metrics.json").get("completed") is True
    if trained and (run.folder / EVAL_DIR.format(split=split) / "metrics.json").is_file():
        return "done"
    if trained:
        return "trained"
    if (run.folder / "models" / "last.pt").is_file():
        return "partial"
    return "new"


def _check_same_run(run: Run) -> None:
    """A run folder left by an earlier study must have been trained with the same overrides."""
    recorded = _read_json(run.folder / "config.json").get("hyperparameters")
    if not recorded:
        return
    for key, value in run.overrides.items():
        if key in recorded and _normal(recorded[key]) != _normal(value):
            raise ValueError(f"{run.folder}: was trained with {key}={recorded[key]!r}, the study now asks for "
                             f"{value!r}; remove the folder or give the study another name")


def _normal(v):
    if isinstance(v, (list, tuple)):
        return [_normal(x) for x in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return v


def _bundle(study: Study, *args, log: Path) -> int:
    cmd = [sys.executable, "-m", "monai.bundle", *map(str, args)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def execute(study: Study, run: Run) -> str:
    """Bring one run to ``done``: train (fresh or resumed) and evaluate. Returns the final state or ``failed``."""
    current = state(run, study.split)
    if current == "done":
        return current
    _check_same_run(run)
    (run.folder / "FAILED").unlink(missing_ok=True)
    if current == "new" and run.folder.exists():
        shutil.rmtree(run.folder)  # killed before its first checkpoint: nothing to keep
    if current in ("new", "partial"):
        logger.info("%s: training (%s)", run.name, "resuming" if current == "partial" else "new")
        rc = _bundle(study, "run", "training", "--config_file", study.bundle, "--output_dir", run.folder,
                     *cli_args(run.overrides), *(["--resume", "true"] if current == "partial" else []),
                     log=run.folder / "train.log")
        if rc != 0:
            return _failed(run, "training", rc, run.folder / "train.log")
    logger.info("%s: evaluating on %s", run.name, study.split)
    eval_dir = run.folder / EVAL_DIR.format(split=study.split)
    rc = _bundle(study, "run", "evaluate", "--config_file", study.bundle, "--output_dir", eval_dir,
                 "--ckpt", run.folder / "models" / "best.pt", "--split", study.split, *cli_args(run.overrides),
                 log=run.folder / "evaluate.log")
    if rc != 0:
        return _failed(run, "evaluation", rc, run.folder / "evaluate.log")
    return state(run, study.split)


def _failed(run: Run, what: str, rc: int, log: Path) -> str:
    logger.error("%s: %s failed (exit %d), see %s", run.name, what, rc, log)
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / "FAILED").write_text(f"{what} failed (exit {rc}), see {log}\n")
    return "failed"


# ----------------------------------------------------------------------------------------------------------- report

def _params(ckpt: Path) -> int | None:
    import torch

    if not ckpt.is_file():
        return None
    state_dict = torch.load(ckpt, map_location="cpu", weights_only=True)
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(v.numel() for k, v in state_dict.items() if not k.endswith(skip)))


def _median_epoch_s(history: list[dict]) -> float | None:
    """Median epoch time, over the epochs without validation when there are some."""
    plain = [h["epoch_s"] for h in history if not any(k.startswith("val_") for k in h)]
    times = plain or [h["epoch_s"] for h in history]
    return float(np.median(times)) if times else None


def collect(study: Study) -> tuple[list[dict], dict]:
    """One row per run (``status`` tells which are incomplete) and the per-unit scores of each evaluated run."""
    rows, scores = [], {}
    for run in expand(study):
        row = {"run": run.name, **{k: _fmt(v) for k, v in run.values.items()}, "status": state(run, study.split)}
        if (run.folder / "FAILED").is_file():
            row["status"] = "failed"
        train = _read_json(run.folder / "metrics.json")
        config = _read_json(run.folder / "config.json")
        best = train.get("best") or {}
        key = best.get("key_metric", "val_iou")  # runs recorded before key metrics were named picked on IoU
        row.update({
            "params": _params(run.folder / "models" / "best.pt"),
            "epochs": (config.get("hyperparameters") or {}).get("epochs"),
            "val_metric": key, "val_score": best.get(key), "best_epoch": best.get("epoch"),
            "train_s": train.get("train_seconds"), "epoch_s": _median_epoch_s(train.get("history", [])),
            "peak_rss_gb": train.get("peak_rss_gb"), "peak_cuda_gb": train.get("peak_cuda_gb"),
        })
        eval_dir = run.folder / EVAL_DIR.format(split=study.split)
        evaluation = _read_json(eval_dir / "metrics.json")
        if evaluation:
            unit, per_unit = unit_scores(eval_dir)
            scores[run.name] = per_unit
            row.update({"unit": unit, "n_test": len(per_unit["dice"]),
                        "infer_s_per_image": evaluation.get("seconds_per_case"),
                        "synthetic": evaluation.get("synthetic")})
            _score_columns(row, per_unit)
            hd = (evaluation.get("summary") or {}).get("hd95") or {}
            row.update({"hd95_mean": hd.get("mean"), "hd95_median": hd.get("median")})
        rows.append(row)
    _add_paired_differences(rows, scores)
    return rows, scores


def _score_columns(row: dict, per_unit: dict) -> None:
    for metric in ("iou", "dice"):
        v = list(per_unit[metric].values())
        lo, hi = bootstrap_ci(v)
        row.update({f"{metric}_mean": float(np.mean(v)), f"{metric}_median": float(np.median(v)),
                    f"{metric}_ci_low": lo, f"{metric}_ci_high": hi})


def pooled(study: Study, rows: list[dict], scores: dict) -> tuple[list[dict], dict]:
    """Rows that differ only in ``study.pool`` (e.g. the folds of a cross-validation) merged into one: their test
    units (disjoint across folds) scored together, validation score and epoch time averaged, training time summed.
    Only combinations whose runs are all evaluated are pooled."""
    keys = [k for k in study.grid if k != study.pool]
    out, out_scores = [], {}
    for combo in itertools.product(*(study.grid[k] for k in keys)):
        values = {k: _fmt(v) for k, v in zip(keys, combo)}
        members = [r for r in rows if all(r[k] == v for k, v in values.items())]
        if not members or any(r["run"] not in scores for r in members):
            continue
        name = ",".join(f"{k}={v}" for k, v in values.items()) or "all"
        per_unit = {m: {u: x for r in members for u, x in scores[r["run"]][m].items()} for m in ("iou", "dice")}
        row = {"run": name, **values, "status": "done", "runs": len(members), "unit": members[0]["unit"],
               "n_test": len(per_unit["dice"]), "params": members[0].get("params"),
               "val_metric": members[0]["val_metric"],
               "val_score": float(np.mean([r["val_score"] for r in members])),
               "train_s": float(sum(r["train_s"] or 0 for r in members)),
               "epoch_s": float(np.median([r["epoch_s"] for r in members if r.get("epoch_s") is not None] or [np.nan])),
               "peak_rss_gb": max((r["peak_rss_gb"] for r in members if r.get("peak_rss_gb")), default=None),
               "infer_s_per_image": float(np.mean([r.get("infer_s_per_image") or np.nan for r in members])),
               "synthetic": any(r.get("synthetic") for r in members)}
        _score_columns(row, per_unit)
        out.append(row)
        out_scores[name] = per_unit
    _add_paired_differences(out, out_scores)
    return out, out_scores


def _add_paired_differences(rows: list[dict], scores: dict, metric: str = "dice") -> None:
    """``d_<metric>`` = this run's mean minus the reference run's, on the same test units, with a paired bootstrap
    95% CI. The reference is the run with the best validation score (its key metric; not chosen on the test set)."""
    evaluated = [r for r in rows if r["run"] in scores and r.get("val_score") is not None]
    if not evaluated:
        return
    ref = max(evaluated, key=lambda r: r["val_score"])
    ref["reference"] = True
    ref_scores = scores[ref["run"]][metric]
    for r in evaluated:
        mine = scores[r["run"]][metric]
        if set(mine) != set(ref_scores):
            continue  # different test sets: no paired comparison
        d = paired_difference(mine, ref_scores)
        r.update({f"d_{metric}": d["mean"], f"d_{metric}_ci_low": d["ci"][0], f"d_{metric}_ci_high": d["ci"][1]})


COLUMNS = ["run", "status", "params", "epochs", "best_epoch", "val_metric", "val_score", "unit", "n_test",
           "iou_mean", "iou_median", "iou_ci_low", "iou_ci_high", "dice_mean", "dice_median", "dice_ci_low",
           "dice_ci_high", "hd95_mean", "hd95_median", "d_dice", "d_dice_ci_low", "d_dice_ci_high", "reference",
           "train_s", "epoch_s", "peak_rss_gb", "peak_cuda_gb", "infer_s_per_image", "synthetic"]


def _metric_label(key: str | None) -> str:
    """How a key validation metric reads in a table head."""
    return {"val_iou": "IoU", "val_dice": "Dice", "val_volume_dice": "volume Dice"}.get(key, key or "score")


def _cell(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_csv(study: Study, rows: list[dict], name: str = "results.csv") -> Path:
    path = study.root / name
    fields = [*[c for c in rows[0] if c not in COLUMNS], *COLUMNS] if rows else COLUMNS
    fields = list(dict.fromkeys(["run", *fields]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k), 6) for k in fields})
    return path


def _table(rows: list[dict], keys: list[str]) -> list[str]:
    """Markdown table of ``rows`` (best test Dice first) with ``keys`` as the leading columns."""
    metric = _metric_label(rows[0].get("val_metric") if rows else None)
    head = [*keys, "params", "best ep", f"val {metric}", "test IoU mean [95% CI]", "IoU median",
            "test Dice mean [95% CI]", "Dice median", "HD95 median", "d Dice [95% CI]", "train min", "s/epoch",
            "RSS GB", "eval s/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -(r.get("dice_mean") or -1)):
        def ci(m):
            if r.get(f"{m}_mean") is None:
                return r["status"]
            return f"{_cell(r[f'{m}_mean'], 3)} [{_cell(r[f'{m}_ci_low'], 3)}, {_cell(r[f'{m}_ci_high'], 3)}]"
        d = "★ reference" if r.get("reference") else (
            f"{r['d_dice']:+.3f} [{r['d_dice_ci_low']:+.3f}, {r['d_dice_ci_high']:+.3f}]" if "d_dice" in r else "")
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else ""
        train_min = f"{r['train_s'] / 60:.1f}" if r.get("train_s") else ""
        lines.append("| " + " | ".join([
            *[r[k] for k in keys], params, _cell(r.get("best_epoch")), _cell(r.get("val_score"), 3), ci("iou"),
            _cell(r.get("iou_median"), 3), ci("dice"), _cell(r.get("dice_median"), 3), _cell(r.get("hd95_median"), 1),
            d, train_min, _cell(r.get("epoch_s"), 1), _cell(r.get("peak_rss_gb"), 2),
            _cell(r.get("infer_s_per_image"), 2)]) + " |")
    return lines


def write_markdown(study: Study, rows: list[dict], pooled_rows: list[dict] | None = None) -> Path:
    evaluated = [r for r in rows if "dice_mean" in r]
    unit = evaluated[0]["unit"] if evaluated else "image"
    synthetic = any(r.get("synthetic") for r in evaluated)
    splits = _read_json(next((r for r in expand(study) if (r.folder / "config.json").is_file()),
                             expand(study)[0]).folder / "config.json").get("split_sizes", {})
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    if synthetic:
        lines += ["**SYNTHETIC DATA: these numbers say nothing about real images.**", ""]
    lines += [
        f"- Bundle `{study.bundle}`, fixed overrides `{json.dumps(study.fixed)}`; grid "
        + ", ".join(f"`{k}` in {[_fmt(v) for v in vs]}" for k, vs in study.grid.items()) + ".",
        f"- Split sizes {json.dumps(splits)} (fixed, seeded split{', per fold' if study.pool else ''}); scores on the "
        f"`{study.split}` split with each run's `best.pt` (best validation "
        f"{_metric_label(evaluated[0].get('val_metric') if evaluated else None)}).",
        f"- Metrics (`pipeline.metrics`): sigmoid > 0.5 (or softmax foreground > 0.5), then IoU and Dice of binary masks "
        f"per {unit}" + (" (slices stacked into one volume per patient)" if unit == "patient" else "")
        + "; empty vs empty = 1. CI: 95% percentile bootstrap of the mean over test "
        f"{unit}s ({N_BOOTSTRAP} resamples). HD95 in pixels, cases with an empty mask left out.",
        "- d Dice: mean paired difference in test Dice to the reference run (★, best validation score) with its 95% "
        "paired bootstrap CI; an interval containing 0 means the data cannot tell the two apart.",
        f"- Regenerate: `python -m pipeline.bench.study {study.path or '<study file>'}` (finished runs are skipped; "
        "`--report` rewrites this report only).", "",
    ]
    if pooled_rows:
        keys = [k for k in study.grid if k != study.pool]
        lines += [f"## Pooled over `{study.pool}`", "",
                  f"Each row: the runs that differ only in `{study.pool}`, their test {unit}s scored together "
                  f"(`results_pooled.csv`); the validation score is the mean over those runs, train min their sum.", "",
                  *_table(pooled_rows, keys), "", "## Every run", ""]
    lines += _table(rows, list(study.grid))
    missing = [r["run"] for r in rows if r["status"] != "done"]
    if missing:
        lines += ["", f"Not complete ({len(missing)}): " + ", ".join(f"`{m}`" for m in missing)]
    path = study.root / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plots(study: Study, rows: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths, keys = [], set()
    runs = expand(study)
    fig, ax = plt.subplots(figsize=(10, 6))
    cmap = plt.get_cmap("tab20" if len(runs) > 10 else "tab10")
    for i, run in enumerate(runs):
        train = _read_json(run.folder / "metrics.json")
        key = (train.get("best") or {}).get("key_metric", "val_iou")
        keys.add(key)
        hist = [h for h in train.get("history", []) if key in h]
        if hist:
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], label=run.name,
                    color=cmap(i % cmap.N), linestyle=("-", "--", ":")[(i // cmap.N) % 3], linewidth=1.2)
    label = " / ".join(_metric_label(k) for k in sorted(keys)) or "IoU"
    ax.set(xlabel="epoch", ylabel=f"validation {label}", title=f"{study.name}: validation {label}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    paths.append(study.root / "val_curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    evaluated = sorted([r for r in rows if "dice_mean" in r], key=lambda r: r["dice_mean"])
    if evaluated:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(evaluated) + 1.5))
        y = np.arange(len(evaluated))
        for metric, color, dy in (("dice", "tab:blue", 0.15), ("iou", "tab:orange", -0.15)):
            m = np.array([r[f"{metric}_mean"] for r in evaluated])
            err = np.array([[m_ - r[f"{metric}_ci_low"], r[f"{metric}_ci_high"] - m_] for m_, r in zip(m, evaluated)]).T
            ax.errorbar(m, y + dy, xerr=err, fmt="o", color=color, capsize=2, markersize=3,
                        label=f"test {metric} (mean, 95% CI)")
        ax.set_yticks(y, [r["run"] + (" ★" if r.get("reference") else "") for r in evaluated], fontsize=6)
        ax.set(xlabel=f"per-{evaluated[0]['unit']} score on the {study.split} split", title=study.name)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        paths.append(study.root / "test_scores.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write_hparams(study: Study, rows: list[dict]) -> Path:
    """One TensorBoard HParams entry per evaluated run (re-written from scratch on every report)."""
    from torch.utils.tensorboard import SummaryWriter

    root = study.root / "hparams"
    shutil.rmtree(root, ignore_errors=True)
    with SummaryWriter(log_dir=str(root)) as writer:
        for r in rows:
            if "dice_mean" not in r:
                continue
            hp = {k: r[k] for k in study.grid}
            metrics = {f"hparam/{k}": float(r[k]) for k in
                       ("val_score", "iou_mean", "iou_median", "dice_mean", "dice_median", "epoch_s", "peak_rss_gb")
                       if r.get(k) is not None}
            writer.add_hparams(hp, metrics, run_name=r["run"])
    return root


def report(study: Study) -> list[dict]:
    study.root.mkdir(parents=True, exist_ok=True)
    rows, scores = collect(study)
    pooled_rows = pooled(study, rows, scores)[0] if study.pool else []
    write_csv(study, rows)
    if pooled_rows:
        write_csv(study, pooled_rows, "results_pooled.csv")
    write_markdown(study, rows, pooled_rows)
    write_plots(study, rows)
    write_hparams(study, rows)
    logger.info("report: %s (%d of %d runs complete)", study.root / "results.md",
                sum(r["status"] == "done" for r in rows), len(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.study", description=__doc__.split("\n")[0])
    parser.add_argument("study", help="a study file, e.g. configs/studies/ph2.yaml")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    parser.add_argument("--report", action="store_true", help="only write the report from the runs on disk")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    study = load_study(args.study)
    runs = expand(study)
    if args.dry_run:
        for run in runs:
            print(f"{state(run, study.split):8s} {run.folder}")
        return 0
    failed = []
    if not args.report:
        for i, run in enumerate(runs, 1):
            logger.info("[%d/%d] %s", i, len(runs), run.name)
            if execute(study, run) == "failed":
                failed.append(run.name)
    report(study)
    if failed:
        logger.error("%d run(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
