"""Learning curves: how a bundle's out-of-fold score grows with training cases and with epochs, so that a target out
of reach can name the lever that would reach it.

    python -m pipeline.bench.learning_curve --config_file bundles/dsb2018.json \\
        --dataset_dir ../shared/data/dsb2018/stage1_train --full runs/cv/dsb2018-unet-5fold --out docs/learning_curve.md

For each fraction f < 1 of ``--fractions`` it runs the bundle's cross-validation (``run cross_validation``, resumable)
with ``--train_fraction f``: the same folds, each fold training on a nested share f of its own training side
(whole patients; :func:`pipeline.data.splits.assign`), and ``--epochs`` and ``--val_interval`` divided by f, so
every point takes the same number of optimiser steps and the curve measures data, not training time. Every point is
scored out-of-fold on the same cases (each case by the fold model that did not train on it, with that point's own
choices made out-of-fold). The point f = 1 is ``--full``: a finished cross-validation of the bundle with the same
folds (docs/accuracy.md's), else it is run. Folders: ``<--root>/<bundle>-train<f>``.

The section it writes per bundle: training cases per fold, the out-of-fold mean, median and 95% CI of each point
and the paired difference to the point before it; the gain per doubling of training cases (a least-squares line of
the mean on log2 cases) and, for ``--target``, the training cases that line reaches it at (a guide from few points,
not a promise: learning curves flatten); and the epoch curve of the full point, the folds' mean validation score at
each validation (each fold's validation side, not out-of-fold), which says whether more epochs would still help.
A figure of both goes next to the report (``learning_curve_<bundle>.png``). ``--id value`` pairs after the bench's
options are bundle overrides for every point (``--invert_bright_background false``); every point, ``--full`` too,
must have been made with exactly those.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.bench.accuracy import merged
from pipeline.bench.stats import paired_difference
from pipeline.crossval import cli_args
from pipeline.export_onnx import _value
from pipeline.runs import machine_line, recorded_host

TITLE = "# Learning curves: out-of-fold score against training cases and epochs\n"
FRACTIONS = (0.25, 0.5)
EPOCH_MARKS = (0.1, 0.25, 0.5, 0.75, 1.0)


def point_dir(root: Path, bundle: str, fraction: float) -> Path:
    return root / f"{bundle}-train{fraction:g}"


def cv_command(config_file: str, dataset_dir: str, fraction: float, epochs: int, val_interval: int, out: Path,
               folds: int = 5, overrides: dict | None = None) -> list[str]:
    """The cross-validation of one point: ``epochs`` / ``val_interval`` are the full point's, divided by ``fraction``;
    ``overrides`` (bundle settings) go to every point alike."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "cross_validation", "--config_file", config_file, "--folds",
           str(folds), "--dataset_dir", dataset_dir, *cli_args(overrides or {})]
    if fraction < 1:
        cmd += ["--train_fraction", f"{fraction:g}", "--epochs", str(round(epochs / fraction)), "--val_interval",
                str(max(1, round(val_interval / fraction)))]
    return cmd + ["--output_dir", str(out)]


# what the bench sets per point itself; any other override is the user's and must be the same at every point
PER_POINT = {"dataset_dir", "train_fraction", "epochs", "val_interval", "output_dir", "folds"}


def bench_overrides(rest: list[str], reserved: set = PER_POINT) -> dict:
    """``--id value`` pairs after the bench's own options: bundle settings for every point (parsed as the bundle
    run parses them); ``reserved`` ids are the bench's own."""
    if len(rest) % 2 or any(not k.startswith("--") for k in rest[::2]):
        raise SystemExit(f"error: bundle overrides must be --id value pairs, got {' '.join(rest)}")
    overrides = {k[2:]: _value(v) for k, v in zip(rest[::2], rest[1::2])}
    if reserved & set(overrides):
        raise SystemExit(f"error: {sorted(reserved & set(overrides))} are set by the bench; use its own options "
                         "(--dataset_dir, --folds, ...)")
    return overrides


def check_same_settings(points: list[dict], settings: dict) -> None:
    """Every point must have been trained with ``settings`` (the bundle file's values with the bench's overrides),
    compared as values with each point's fold 0 record, but for what the bench sets per point: a --full folder
    made with other settings would compare two recipes, not two amounts of data. A folder made before a bundle
    default changed matches when the bench pins the old value."""
    from pipeline.crossval import settings_differ

    for p in points:
        hp = p["hyperparameters"]
        differ = settings_differ(hp, settings, ignore=PER_POINT)
        if differ:
            raise SystemExit(f"error: {p['cv']} was made with " + ", ".join(
                f"{k}={hp[k]!r} (the bench asks for {settings[k]!r})" for k in differ) + ": every point of a "
                "learning curve must share the bundle's settings (pass --id value pairs to the bench to pin them)")


def read_point(cv: Path) -> dict:
    """One finished cross-validation: its out-of-fold score, the training units of each fold (patients for grouped
    data, from the fold's splits.json), the epochs and the training wall time."""
    doc = json.loads((cv / "crossval.json").read_text())
    if "oof_score" not in doc:
        raise SystemExit(f"error: {cv}: the cross-validation has not finished (no out-of-fold score in crossval.json)")
    folds = [cv / f"fold_{k}" for k in range(int(doc["folds"]))]
    configs = [json.loads((f / "config.json").read_text()) for f in folds]
    metrics = [json.loads((f / "metrics.json").read_text()) for f in folds]
    hp = configs[0]["hyperparameters"]
    return {"cv": str(cv), "overrides": doc["overrides"], "hyperparameters": hp, "chosen": doc["chosen"],
            "score": doc["oof_score"],
            "fraction": float(hp.get("train_fraction", 1.0)), "epochs": int(hp["epochs"]),
            "train_cases": [len(json.loads((f / "splits.json").read_text())["groups"]["train"]) for f in folds],
            "train_minutes": sum(m["train_seconds"] for m in metrics) / 60,
            "histories": [m["history"] for m in metrics], "key_metric": hp["key_metric"],
            "machines": [recorded_host(f) for f in folds]}


def epoch_curve(point: dict) -> list[tuple[int, float]]:
    """(epoch, the folds' mean validation key metric) at every epoch all folds validated."""
    key = point["key_metric"]
    by_fold = [{h["epoch"]: h[key] for h in hist if key in h} for hist in point["histories"]]
    epochs = sorted(set.intersection(*(set(f) for f in by_fold)))
    return [(e, float(np.mean([f[e] for f in by_fold]))) for e in epochs]


def fit(points: list[dict]) -> tuple[float, float]:
    """Least-squares line of the out-of-fold mean on log2 of the mean training cases per fold: (slope, intercept)."""
    x = np.log2([np.mean(p["train_cases"]) for p in points])
    y = np.array([p["score"]["mean"] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def cases_for(target: float, slope: float, intercept: float) -> float:
    """Training cases per fold at which the fitted line reaches ``target`` (inf when the line rises by less than
    0.001 per doubling, or reaches it beyond 2**60 cases)."""
    doublings = (target - intercept) / slope if slope >= 1e-3 else math.inf
    return 2 ** doublings if doublings < 60 else math.inf


def report(points: list[dict], target: float | None = None) -> dict:
    points = sorted(points, key=lambda p: p["fraction"])
    steps = []
    for before, after in zip(points, points[1:]):
        d = paired_difference(after["score"]["per_unit"], before["score"]["per_unit"])
        steps.append({"from": before["fraction"], "to": after["fraction"], **{k: d[k] for k in ("n", "mean", "ci",
                                                                                                  "better")}})
    slope, intercept = fit(points) if len(points) >= 2 else (math.nan, math.nan)
    full = points[-1]
    curve = epoch_curve(full)
    marks = {}
    for m in EPOCH_MARKS:  # each mark the mean of the validations within 5% of the epochs of it: one is noisy
        near = [v for e, v in curve if abs(e - m * full["epochs"]) <= 0.05 * full["epochs"] + 1e-9]
        if near:
            marks[m] = (round(m * full["epochs"]), float(np.mean(near)))
    return {"points": points, "steps": steps, "slope_per_doubling": slope, "intercept": intercept,
            "target": target, "cases_for_target": cases_for(target, slope, intercept) if target else None,
            "epoch_curve": curve, "epoch_marks": marks}


def _ci(ci) -> str:
    return f"{ci[0]:+.3f}..{ci[1]:+.3f}"


def markdown(bundle: str, res: dict, commands: list[str], figure: str | None) -> str:
    pts, full = res["points"], res["points"][-1]
    s = full["score"]
    unit, metric = s["unit"], s["metric"]
    lines = [f"## {bundle}: out-of-fold {metric} against training cases per fold", "",
             "Regenerate (each point's cross-validation resumes where it stopped; the full point is docs/accuracy.md's):",
             "", *[f"    {c}" for c in commands], "",
             f"Same {len(pts[0]['train_cases'])} folds, every point scored out-of-fold on the same {s['n']} {unit}s; "
             f"each point trains for the same optimiser steps ({full['epochs']} epochs of the full training side, "
             "epochs divided by the fraction below it) and makes its own choices out-of-fold.", "",
             f"| share of each fold's training side | training {unit}s per fold | epochs | out-of-fold {metric} mean "
             "| median | 95% CI | change from the row above, paired 95% CI | training wall time |",
             "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for i, p in enumerate(pts):
        step = res["steps"][i - 1] if i else None
        change = (f"{step['mean']:+.3f} ({_ci(step['ci'])}, better on {step['better']} of {step['n']})"
                  if step else "")
        n = p["train_cases"]
        lines.append(f"| {p['fraction']:g} | {np.mean(n):.1f} ({min(n)}..{max(n)}) | {p['epochs']} | "
                     f"{p['score']['mean']:.3f} | {p['score']['median']:.3f} | {p['score']['ci'][0]:.3f}.."
                     f"{p['score']['ci'][1]:.3f} | {change} | {p['train_minutes']:.0f} min |")
    lines.append("")
    slope = res["slope_per_doubling"]
    text = (f"Least-squares line on log2 training cases: {slope:+.3f} {metric} per doubling of the training side. "
            if len(pts) > 1 else "One point only: no line. ")
    if res["target"] and len(pts) > 1:
        need = res["cases_for_target"]
        if math.isfinite(need):
            factor = need / np.mean(full["train_cases"])
            text += (f"It reaches the {res['target']:g} target at about {need:.0f} training {unit}s per fold, "
                     f"{factor:.1f} times the {np.mean(full['train_cases']):.0f} each fold has here "
                     "(an extrapolation from these points; learning curves flatten, so read it as a lower bound). ")
        else:
            text += f"The line does not rise, so more {unit}s of this kind are not shown to reach {res['target']:g}. "
    lines += [text, ""]
    if res["epoch_marks"]:
        marks = res["epoch_marks"]
        row = ", ".join(f"epoch {e}: {v:.3f}" for e, v in marks.values())
        late = marks[1.0][1] - marks[0.75][1]
        lines += [f"Epochs (full point, the folds' mean validation {full['key_metric']} on each fold's validation "
                  f"side, averaged over the validations within 5% of the epochs of each mark): {row}. Over the last quarter of training it moved {late:+.3f}"
                  + (", so more epochs are not the lever." if late < 0.005 else
                     " (the cosine schedule lowers the learning rate to 1% there, so a late rise is expected and does "
                     "not by itself show that more epochs help; training longer out-of-fold would)."),
                  ""]
    if figure:
        lines += [f"![learning curve]({figure})", ""]
    lines.append(machine_line([m for p in res["points"] for m in p.get("machines", [])]))
    return "\n".join(lines) + "\n"


def figure(bundle: str, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = res["points"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    n = [np.mean(p["train_cases"]) for p in pts]
    m = [p["score"]["mean"] for p in pts]
    lo = [p["score"]["mean"] - p["score"]["ci"][0] for p in pts]
    hi = [p["score"]["ci"][1] - p["score"]["mean"] for p in pts]
    a.errorbar(n, m, yerr=[lo, hi], marker="o", capsize=3, label="out-of-fold mean, 95% CI")
    if math.isfinite(res["slope_per_doubling"]):
        xs = np.geomspace(min(n), max(n) * 4, 50)
        a.plot(xs, res["intercept"] + res["slope_per_doubling"] * np.log2(xs), "--", color="grey", label="fit")
    if res["target"]:
        a.axhline(res["target"], color="red", lw=0.8, label=f"target {res['target']:g}")
    a.set_xscale("log", base=2)
    a.set_xlabel(f"training {pts[-1]['score']['unit']}s per fold")
    a.set_ylabel(f"out-of-fold {pts[-1]['score']['metric']}")
    a.legend(fontsize=7)
    curve = res["epoch_curve"]
    b.plot([e for e, _ in curve], [v for _, v in curve], marker=".")
    b.set_xlabel("epoch (full training side)")
    b.set_ylabel(f"validation {pts[-1]['key_metric'].removeprefix('val_')}, mean of folds")
    fig.suptitle(f"{bundle}: learning curves", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    from pipeline.bundles import file_values

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config_file", required=True)
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--full", type=Path, default=None,
                    help="a finished cross-validation of the bundle on the same folds (the point at fraction 1)")
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--root", type=Path, default=Path("runs/cv/learning_curve"))
    ap.add_argument("--target", type=float, default=None, help="the score to extrapolate the line to")
    ap.add_argument("--out", type=Path, default=None, help="add (or replace) this bundle's section of this file")
    args, rest = ap.parse_known_args(argv)
    overrides = bench_overrides(rest)
    stated = file_values(args.config_file)
    bundle, epochs, val_interval = stated["bundle_name"], int(stated["epochs"]), int(stated["val_interval"])
    commands, points = [], []
    for f in sorted({*args.fractions, 1.0}):
        out = args.full if f == 1 and args.full else point_dir(args.root, bundle, f)
        cmd = cv_command(args.config_file, args.dataset_dir, f, epochs, val_interval, out, args.folds, overrides)
        commands.append(" ".join(["python", *cmd[1:]]))
        done = (out / "crossval.json").is_file() and "oof_score" in json.loads((out / "crossval.json").read_text())
        if not done:
            print("running:", commands[-1], flush=True)
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"error: the cross-validation at train_fraction {f:g} failed; rerun to resume")
        points.append(read_point(out))
    check_same_settings(points, {**stated, **overrides})
    dirs = {p["overrides"].get("dataset_dir") for p in points}
    if len(dirs) > 1:
        raise SystemExit(f"error: the points read different data {sorted(map(str, dirs))}")
    res = report(points, args.target)
    fig_path = None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig_path = args.out.parent / f"learning_curve_{bundle}.png"
        figure(bundle, res, fig_path)
    text = markdown(bundle, res, commands + [" ".join(["python -m pipeline.bench.learning_curve",
                                                       *(sys.argv[1:] if argv is None else argv)])],
                    fig_path.name if fig_path else None)
    if args.out:
        args.out.write_text(merged(args.out.read_text() if args.out.is_file() else "", text, TITLE))
    print(text)


if __name__ == "__main__":
    main()
