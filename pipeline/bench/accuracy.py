"""The accuracy report: a bundle's cross-validation against a plain PyTorch loop on the same folds.

    python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 \\
        --dataset_dir ../shared/data/ph2/PH2Dataset --output_dir runs/cv/ph2-unet-5fold
    python -m pipeline.bench.accuracy --cv runs/cv/ph2-unet-5fold --out docs/accuracy.md

The plain loop is what a user writes in a hundred lines (:func:`pipeline.bench.speed.plain_time_to_quality`'s
recipe, the earlier projects'): every image squashed to ``size`` x ``size``, the bundle's augmentation, DiceCE, Adam
at a fixed learning rate, the best validation epoch kept; predictions resized back to the source size and thresholded
at 0.5. Each of its fold models trains on exactly the training cases of the bundle's fold (``fold_<k>/splits.json``),
validates on its validation cases and predicts its test fold, so both sides are scored out-of-fold on the same cases,
with the same metric (:mod:`pipeline.metrics`, per image; thresholded masks at source resolution). The fold results
are kept in ``<cv>/plain/`` (a stopped report resumes at its next fold). The report gives, per side, the out-of-fold
mean, median and 95% bootstrap CI, the paired bootstrap CI of the difference (:mod:`pipeline.bench.stats`), the wall
time and the machine, and the commands that regenerate it (each cross-validation's with the torch thread count its
folds recorded). Units are images (IoU), or patients for LGG (volume Dice); ``--out`` keeps one section per
bundle in the file, so the three commands (PH2, LGG, DSB2018) write one report.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.bench.plain_loop import PlainLoop, reuse_or_run, stacked
from pipeline.bench.speed import _augment, _load_resized
from pipeline.bench.stats import bootstrap_ci, paired_difference
from pipeline.runs import host, machine_line, recorded_host


def _fold(fold_dir: Path) -> tuple[dict, dict]:
    """A fold run's recorded settings and its train / val / test case lists, read from the folder the fold read."""
    from pipeline.data import find_cases

    config = json.loads((fold_dir / "config.json").read_text())
    record, root = config["hyperparameters"], config["dataset"]["dir"]  # the folder the fold read (synthetic or not)
    split = json.loads((fold_dir / "splits.json").read_text())
    cases = {c["case_id"]: c for c in find_cases(record["layout"], root, **record["layout_args"])}
    return record, {s: [cases[i] for i in split[s]] for s in ("train", "val", "test")}


def plain_fold(fold_dir: Path, epochs: int, size: int = 256, lr: float = 1e-3, batch_size: int = 8, seed: int = 0,
               val_interval: int = 2) -> dict:
    """The plain loop on one fold of a cross-validation, with the fold's network and width: per-unit test scores of
    its best validation epoch (``test``: IoU per image, or Dice per patient volume for LGG)."""
    record, side = _fold(fold_dir)
    return plain_on(record, side, epochs, size, lr, batch_size, seed, val_interval)


def plain_on(record: dict, side: dict, epochs: int, size: int = 256, lr: float = 1e-3, batch_size: int = 8,
             seed: int = 0, val_interval: int = 2) -> dict:
    """The plain loop trained on ``side['train']`` with the network and width of a bundle run's ``record``, the best
    validation epoch on ``side['val']`` kept (``val_interval`` = ``epochs``: the last epoch's weights), scoring
    ``side['test']`` per unit.

    PH2 and image folders: every image squashed to ``size`` x ``size``. DSB2018: ``size`` random crops at source
    resolution, whole-image forward (:func:`pipeline.bench.dsb2018.fit_split`). LGG: whole 256x256 slices over 255,
    left-right flips, volume Dice for the checkpoint (:func:`pipeline.bench.lgg.fit_split`)."""
    network, width = record["network"], int(record["width"])
    common = {"params": {"epochs": epochs, "size": size, "lr": lr, "batch_size": batch_size, "seed": seed,
                         "val_interval": val_interval},
              "network": network, "width": width, "machine": host()}
    if record["layout"] == "lgg":
        from pipeline.bench import lgg

        res = lgg.fit_split(side, network, epochs, batch_size, lr, val_interval, width, seed, "fixed")
        return {**common, "train_s": res["train_s"], "best_epoch": res["best_epoch"],
                "val_volume_dice": res["val_volume_dice"], "test": res["best"]["volume_dice"]}
    if record["layout"] == "dsb2018":
        from pipeline.bench import dsb2018

        res = dsb2018.fit_split(side, seed, network, epochs, batch_size, size, lr, val_interval, width)
        return {**common, "train_s": res["train_s"], "best_epoch": res["best_epoch"], "val_iou": res["val_iou"],
                "test": res["best"]}
    return {**common, **_squashed_fold(side, network, width, epochs, size, lr, batch_size, seed, val_interval)}


def _squashed_fold(side: dict, network: str, width: int, epochs: int, size: int, lr: float, batch_size: int,
                   seed: int, val_interval: int) -> dict:
    from pipeline.metrics import case_record

    def squash(t):
        return F.interpolate(t[None], size=(size, size), mode="area")[0]

    train = [(squash(_load_resized(c["image"], 0, True)), (squash(_load_resized(c["label"], 0, False)) > 0.5).float())
             for c in side["train"]]
    loop = PlainLoop(network, stacked(train, lambda img, lab, g: _augment(img, lab, size, g)), len(train),
                     batch_size=batch_size, drop_last=len(train) > batch_size, width=width, lr=lr, seed=seed)

    @torch.inference_mode()
    def ious(net, chosen):
        net.eval()
        out = {}
        for c in chosen:
            x, y = _load_resized(c["image"], 0, True), _load_resized(c["label"], 0, False)
            logits = F.interpolate(net(squash(x)[None]), size=y.shape[1:], mode="bilinear")[0]
            out[c["case_id"]] = case_record(logits > 0, y, hd95=False)["iou"]
        return out

    fit = loop.fit(epochs, lambda net: float(np.mean(list(ious(net, side["val"]).values()))), val_interval,
                   "val_iou")
    scores = loop.last_and_best(lambda net: ious(net, side["test"]))
    return {"train_s": fit["train_s"], "best_epoch": fit["best_epoch"], "val_iou": fit["val_iou"],
            "test": scores["best"]}


def _summary(values) -> dict:
    v = np.asarray(list(values), dtype=float)
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "ci": list(bootstrap_ci(v))}


# the plain loop's defaults per layout: its crop / squash size and validation interval (the bundle's)
PLAIN_DEFAULTS = {"dsb2018": {"size": 256, "val_interval": 5}, "lgg": {"size": 256, "val_interval": 2}}


def report(cvs, epochs: int | None = None, **plain_kwargs) -> dict:
    """One cross-validation folder against the plain loop on its folds; several (the same bundle and folds, other
    ``--seed``): each against the plain loop with its seed, per unit the runs of each arm averaged before the paired
    bootstrap, and the per-run means listed."""
    cvs = [Path(cvs)] if isinstance(cvs, (str, Path)) else [Path(c) for c in cvs]
    runs = [_report_one(cv, epochs, **plain_kwargs) for cv in cvs]
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    for r in runs[1:]:
        if (r["bundle_file"], r["folds"], set(r["bundle_units"])) != (first["bundle_file"], first["folds"],
                                                                      set(first["bundle_units"])):
            raise SystemExit(f"error: {r['cv']} is not a run of {first['bundle_file']} on the folds of {first['cv']}")

    def mean_over_runs(key):
        return {u: float(np.mean([r[key][u] for r in runs])) for u in first[key]}

    ours, plain = mean_over_runs("bundle_units"), mean_over_runs("plain_units")
    return {**first, "cv": [r["cv"] for r in runs], "runs": len(runs), "seeds": [r["seed"] for r in runs],
            "overrides_per_run": [r["overrides"] for r in runs], "threads_per_run": [r["threads"] for r in runs],
            "machines": [m for r in runs for m in r["machines"]],
            "per_run": [{"seed": r["seed"], "bundle": r["bundle"]["mean"], "plain": r["plain"]["mean"],
                         "difference": r["difference"]["mean"], "bundle_train_s": r["bundle_train_s"],
                         "plain_train_s": r["plain_train_s"]} for r in runs],
            "bundle": _summary(ours.values()), "plain": _summary(plain.values()),
            "difference": {k: v for k, v in paired_difference(ours, plain).items() if k != "units"},
            "bundle_units": ours, "plain_units": plain,
            "bundle_train_s": round(sum(r["bundle_train_s"] for r in runs), 1),
            "plain_train_s": round(sum(r["plain_train_s"] for r in runs), 1)}


def _report_one(cv: Path, epochs: int | None = None, **plain_kwargs) -> dict:
    doc = json.loads((cv / "crossval.json").read_text())
    if "oof_score" not in doc:
        raise SystemExit(f"error: {cv}: the cross-validation has not finished; run it again to complete it")
    folds = doc["folds"]
    record = json.loads((cv / "fold_0" / "config.json").read_text())["hyperparameters"]
    epochs = epochs or int(record["epochs"])
    (cv / "plain").mkdir(exist_ok=True)
    params = {"epochs": epochs, "size": 256, "lr": 1e-3, "batch_size": 8, "seed": int(record.get("seed", 0)),
              "val_interval": 2,
              **PLAIN_DEFAULTS.get(record["layout"], {}), **{k: v for k, v in plain_kwargs.items() if v is not None}}
    plain = [reuse_or_run(cv / "plain" / f"fold_{k}.json", {"params": params},
                          lambda k=k: plain_fold(cv / f"fold_{k}", **params)) for k in range(folds)]
    plain_scores = {unit: s for r in plain for unit, s in r["test"].items()}
    ours = doc["oof_score"]["per_unit"]
    cv_seconds = sum(json.loads((cv / f"fold_{k}" / "metrics.json").read_text()).get("train_seconds", 0)
                     for k in range(folds))
    hosts = [recorded_host(cv / f"fold_{k}") for k in range(folds)]
    # absolute, not resolved: a runs/ that is a symlink stays runs/ in the regenerate commands
    return {"cv": str(cv.absolute()), "folds": folds, "bundle_file": doc["bundle_file"], "overrides": doc["overrides"],
            "chosen": doc["chosen"], "trials": doc["trials"], "metric": doc["oof_score"]["metric"],
            "unit": doc["oof_score"]["unit"],
            "bundle": _summary(ours.values()), "plain": _summary(plain_scores.values()), "runs": 1,
            "seed": int(record.get("seed", 0)), "bundle_units": ours, "plain_units": plain_scores,
            "threads": (hosts[0] or {}).get("torch_threads"),
            "difference": {k: v for k, v in paired_difference(ours, plain_scores).items() if k != "units"},
            "bundle_train_s": round(cv_seconds, 1), "plain_train_s": round(sum(r["train_s"] for r in plain), 1),
            "plain_params": plain[0]["params"],
            "machines": hosts + [r.get("machine") for r in plain]}


def _finished(cvs: list[Path]) -> list[dict]:
    """The records of finished cross-validations that score the same units by the same metric."""
    docs = []
    for cv in cvs:
        doc = json.loads((cv / "crossval.json").read_text()) if (cv / "crossval.json").is_file() else {}
        if "oof_score" not in doc:
            raise SystemExit(f"error: {cv}: not a finished cross-validation (no out-of-fold score in crossval.json)")
        docs.append(doc)
    first = docs[0]["oof_score"]
    for cv, doc in zip(cvs, docs):
        if set(doc["oof_score"]["per_unit"]) != set(first["per_unit"]) or doc["oof_score"]["metric"] != first["metric"]:
            raise SystemExit(f"error: {cv} does not score the same {first['unit']}s by {first['metric']} as "
                             f"{cvs[0]}: not the same data and folds")
    return docs


def _mean_over_runs(scores: list[dict]) -> dict[str, float]:
    return {u: float(np.mean([s["per_unit"][u] for s in scores])) for u in sorted(scores[0]["per_unit"])}


def compare(cvs, against) -> dict:
    """Out-of-fold ``cvs`` minus ``against``: finished cross-validations of two variants on the same folds, one run
    per seed in each arm, given in the same order. Per unit each arm's runs are averaged, then the paired bootstrap;
    the per-run differences show whether the seeds agree."""
    cvs, against = [Path(c) for c in cvs], [Path(c) for c in against]
    if len(cvs) != len(against):
        raise SystemExit(f"error: --cv has {len(cvs)} folders and --against {len(against)}: give one per seed in each")
    scores = [d["oof_score"] for d in _finished(cvs + against)]
    ours, theirs = scores[:len(cvs)], scores[len(cvs):]
    a, b = _mean_over_runs(ours), _mean_over_runs(theirs)
    return {"cv": [str(c) for c in cvs], "against": [str(c) for c in against], "metric": ours[0]["metric"],
            "unit": ours[0]["unit"], "runs": len(cvs), "mean": float(np.mean(list(a.values()))),
            "against_mean": float(np.mean(list(b.values()))),
            "per_run": [paired_difference(x["per_unit"], y["per_unit"])["mean"] for x, y in zip(ours, theirs)],
            "difference": {k: v for k, v in paired_difference(a, b).items() if k != "units"}}


def pooled(cvs) -> dict:
    """One ensemble of several cross-validations on the same folds (``--seed`` runs): for every case, the
    out-of-fold probabilities of its fold model in each folder averaged (8-bit, as the folders store them), for each
    prediction variant (checkpoint, flip, rot90) the folders hold, and the choices made out-of-fold on the average as
    ``cross_validation`` makes them (:func:`pipeline.crossval.choose`). Scored against the folders' own out-of-fold
    scores averaged per unit, paired: does an ensemble of ``5 x len(cvs)`` fold models beat one cross-validation's
    five?"""
    import shutil
    import tempfile

    from PIL import Image

    from pipeline import crossval

    cvs = [Path(c) for c in cvs]
    if len(cvs) < 2:
        raise SystemExit("error: --pooled needs at least two --cv folders of one bundle on the same folds")
    docs = _finished(cvs)
    folds, grouped = int(docs[0]["folds"]), docs[0]["oof_score"]["unit"] == "patient"
    with tempfile.TemporaryDirectory() as tmp:
        def variant(ckpt: str, flip: bool, rot90: bool) -> list[Path] | None:
            name, out = crossval.oof_name(ckpt, flip, rot90), []
            for k in range(folds):
                sources = [cv / f"fold_{k}" / name for cv in cvs]
                if not all((s / "probabilities" / "index.csv").is_file() for s in sources):
                    return None
                rows = crossval._rows(sources[0])
                for s in sources[1:]:
                    if crossval._rows(s) != rows:
                        raise SystemExit(f"error: {s} holds other cases than {sources[0]}: not the same folds")
                target = Path(tmp) / name / f"fold_{k}"
                if not target.is_dir():
                    (target / "probabilities").mkdir(parents=True)
                    shutil.copytree(sources[0] / "truth", target / "truth")
                    shutil.copyfile(sources[0] / "probabilities" / "index.csv", target / "probabilities" / "index.csv")
                    for row in rows:
                        png = Path("probabilities") / f"{row['case_id']}.png"
                        mean = np.mean([np.asarray(Image.open(s / png), np.float32) for s in sources], axis=0)
                        Image.fromarray(np.rint(mean).astype(np.uint8)).save(target / png)
                out.append(target)
            return out

        doc = crossval.choose(variant, grouped=grouped, key_metric=docs[0].get("key_metric", "val_iou"))
    runs = _mean_over_runs([d["oof_score"] for d in docs])
    score = doc["oof_score"]
    return {"cv": [str(c) for c in cvs], "metric": score["metric"], "unit": score["unit"], "chosen": doc["chosen"],
            "pooled": {k: score[k] for k in ("mean", "median", "ci", "n", "per_unit")},
            "per_run": [d["oof_score"]["mean"] for d in docs], "runs_mean": float(np.mean(list(runs.values()))),
            "difference": {k: v for k, v in paired_difference(score["per_unit"], runs).items() if k != "units"}}


def pooled_line(p: dict) -> str:
    d, s = p["difference"], p["pooled"]
    shown = d["ci"][0] > 0 or d["ci"][1] < 0
    return (f"pooled ensemble of {len(p['cv'])} cross-validations ({' '.join(p['cv'])}): out-of-fold {p['metric']} "
            f"mean {s['mean']:.3f}, median {s['median']:.3f} (n {s['n']}, 95% CI {s['ci'][0]:.3f}..{s['ci'][1]:.3f}); "
            f"the cross-validations alone {', '.join(f'{m:.3f}' for m in p['per_run'])} (averaged per {p['unit']}: "
            f"{p['runs_mean']:.3f}); pooled minus alone {d['mean']:+.4f}, paired 95% CI {d['ci'][0]:+.4f}.."
            f"{d['ci'][1]:+.4f}, better on {d['better']}; "
            f"{'the paired CI excludes 0' if shown else 'no difference shown'}; chosen on the pool: {p['chosen']}")


def comparison_line(c: dict) -> str:
    d = c["difference"]
    runs = "one run per arm" if c["runs"] == 1 else (
        f"{c['runs']} runs per arm averaged per {c['unit']}; per run " + ", ".join(f"{x:+.4f}" for x in c["per_run"]))
    shown = d["ci"][0] > 0 or d["ci"][1] < 0
    verdict = ("the paired CI excludes 0" if shown else "no difference shown") + (
        "" if c["runs"] > 1 else " (one run per arm ranks nothing: add seeds)")
    return (f"{' '.join(c['cv'])} minus {' '.join(c['against'])}: out-of-fold {c['metric']} {c['mean']:.3f} - "
            f"{c['against_mean']:.3f} = {d['mean']:+.4f} over {d['n']} {c['unit']}s, paired 95% CI "
            f"{d['ci'][0]:+.4f}..{d['ci'][1]:+.4f}, better on {d['better']}; {runs}; {verdict}")


METRIC_NAMES = {"iou": "IoU", "volume_dice": "volume Dice"}
SECTION_ORDER = ("ph2", "lgg", "dsb2018")
TITLE = "# Accuracy: out-of-fold, against a plain PyTorch loop on the same folds\n"


def merged(existing: str, section: str, title: str = TITLE) -> str:
    """A report (docs/accuracy.md) with ``section`` (one bundle's ``## <bundle>: ...``) added or replaced, bundles in
    order."""
    parts = {}
    for chunk in existing.split("\n## ")[1:]:
        parts[chunk.split(":", 1)[0].strip()] = "## " + chunk.rstrip() + "\n"
    parts[section[3:].split(":", 1)[0].strip()] = section.rstrip() + "\n"
    order = sorted(parts, key=lambda b: (SECTION_ORDER.index(b) if b in SECTION_ORDER else len(SECTION_ORDER), b))
    return title + "\n" + "\n".join(parts[b] for b in order)


def cv_commands(res: dict) -> list[str]:
    """The cross-validation commands that made the report's folders."""
    if res.get("runs", 1) == 1:
        return [cv_command(res)]
    return [cv_command({**res, "cv": cv, "overrides": o, "threads": t})
            for cv, o, t in zip(res["cv"], res["overrides_per_run"], res["threads_per_run"])]


def cv_command(res: dict) -> str:
    """The cross-validation command that made ``res['cv']``, paths relative to the working directory, with the torch
    thread count its folds recorded (runs made before the record held it: none)."""
    from pipeline.crossval import cli_args

    def rel(v):
        return os.path.relpath(v) if isinstance(v, str) and os.path.isabs(v) else v

    overrides = {k: rel(v) for k, v in res["overrides"].items()}
    threads = [f"OMP_NUM_THREADS={res['threads']}"] if res.get("threads") else []
    return " ".join([*threads, "python -m monai.bundle run cross_validation --config_file", res["bundle_file"], "--folds",
                     str(res["folds"]), *cli_args(overrides), "--output_dir", rel(res["cv"])])


def _minutes(run: dict) -> str:
    """A run's training wall times, bundle / plain loop."""
    return f" ({run['bundle_train_s'] / 60:.0f} / {run['plain_train_s'] / 60:.0f} min)"


def markdown(res: dict, command: str) -> str:
    b, p, d = res["bundle"], res["plain"], res["difference"]
    lo, hi = d["ci"]
    side = "above" if lo > 0 else "below" if hi < 0 else None
    n_runs = res.get("runs", 1)
    per_run = res.get("per_run") or [{"seed": res.get("seed", 0), "bundle": b["mean"], "plain": p["mean"],
                                      "difference": d["mean"]}]
    same_sign = all(r["difference"] > 0 for r in per_run) or all(r["difference"] < 0 for r in per_run)
    if not side:
        verdict = f"no difference shown (paired 95% CI {lo:+.3f}..{hi:+.3f} crosses 0)"
    elif n_runs == 1:
        verdict = (f"paired 95% CI {lo:+.3f}..{hi:+.3f}, {side} 0 over cases; one training run per arm, so this ranks "
                   "nothing until more seeds agree")
    else:
        verdict = (f"paired 95% CI {lo:+.3f}..{hi:+.3f}, {side} 0 over cases, with {n_runs} runs per arm whose "
                   f"differences {'agree in sign' if same_sign else 'disagree in sign'}; few runs, so read it as "
                   "evidence, not a settled ranking")
    runs_line = (f"{n_runs} runs per arm (seeds {', '.join(str(r['seed']) for r in per_run)}; per run, bundle / plain: "
                 + ", ".join(f"{r['bundle']:.3f} / {r['plain']:.3f}" + _minutes(r) for r in per_run)
                 + "); per unit each arm's runs are averaged before the paired bootstrap" if n_runs > 1 else
                 f"One run per arm (seed {per_run[0]['seed']}): the CI is over cases, not over training runs")
    trials = [f"{t['setting']} {t['value']} ({t['change']:+.4f}, {t['change_ci'][0]:+.4f}..{t['change_ci'][1]:+.4f})"
              for t in res.get("trials", []) if t.get("kept")]
    return "\n".join([
        f"## {Path(res['bundle_file']).stem}: {res['folds']}-fold cross-validation against a plain loop",
        "",
        "Regenerate (the cross-validation, then this report; both resume where they stopped):",
        "",
        *[f"    {c}" for c in cv_commands(res)],
        f"    {command}",
        "",
        f"Bundle `{res['bundle_file']}`, chosen out-of-fold (change of the mean, paired 95% CI): "
        f"{'; '.join(trials) or 'nothing beyond the defaults'}{' (first run)' if n_runs > 1 else ''}. Plain loop: {res['plain_params']}. "
        f"{runs_line}.",
        "",
        f"| arm | n ({res['unit']}s) | out-of-fold {METRIC_NAMES[res['metric']]} mean | median | 95% CI "
        f"| training wall time{f' (sum of {n_runs} runs)' if n_runs > 1 else ''} |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        f"| bundle cross-validation | {b['n']} | {b['mean']:.3f} | {b['median']:.3f} | {b['ci'][0]:.3f}..{b['ci'][1]:.3f}"
        f" | {res['bundle_train_s'] / 60:.0f} min |",
        f"| plain loop, same folds | {p['n']} | {p['mean']:.3f} | {p['median']:.3f} | {p['ci'][0]:.3f}..{p['ci'][1]:.3f}"
        f" | {res['plain_train_s'] / 60:.0f} min |",
        "",
        f"Bundle minus plain loop, paired by {res['unit']}: {d['mean']:+.3f} over {d['n']} {res['unit']}s, better on "
        f"{d['better']}: "
        f"{verdict}.",
        machine_line(res['machines']),
        ""])


def main(argv=None) -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv", required=True, type=Path, nargs="+",
                    help="a finished cross-validation folder, or several of one bundle on the same folds (--seed)")
    ap.add_argument("--epochs", type=int, default=None, help="plain loop epochs (default: the bundle run's)")
    ap.add_argument("--size", type=int, default=None, help="plain loop squash (PH2) or crop (DSB2018) size; 256")
    ap.add_argument("--lr", type=float, default=None, help="plain loop learning rate (default 1e-3)")
    ap.add_argument("--out", type=Path, default=None,
                    help="add (or replace) this bundle's section of this markdown file (default: print)")
    ap.add_argument("--against", type=Path, default=None, nargs="+",
                    help="other finished cross-validations on the same folds, one per --cv folder (the same seeds, "
                         "in the same order): print the paired difference of the out-of-fold scores (--cv minus "
                         "--against, each arm's runs averaged per unit) instead of training the plain loop")
    ap.add_argument("--pooled", action="store_true",
                    help="score the --cv folders (same folds, other seeds) as one ensemble of all their fold models, "
                         "choices made out-of-fold on the pool, against each folder alone (no plain loop)")
    args = ap.parse_args(argv)
    if args.pooled:
        print(pooled_line(pooled(args.cv)))
        return
    if args.against:
        print(comparison_line(compare(args.cv, args.against)))
        return
    res = report(args.cv, args.epochs, size=args.size, lr=args.lr)
    (args.cv[0] / "accuracy.json").write_text(json.dumps(res, indent=1))
    text = markdown(res, "python -m pipeline.bench.accuracy " + " ".join(sys.argv[1:] if argv is None else argv))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(merged(args.out.read_text() if args.out.is_file() else "", text))
    print(text)


if __name__ == "__main__":
    main()
