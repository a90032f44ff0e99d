"""New cases: the bundle's cross-validation ensemble against a plain loop trained on every case it had, both scored
on cases neither saw.

    python -m pipeline.bench.new_cases --config_file bundles/ph2.json --dataset_dir ../shared/data/ph2/PH2Dataset \\
        --output_dir runs/new_cases/ph2 --out docs/new_cases.md

This is the comparison a user with new patients cares about, and the out-of-fold report (:mod:`.accuracy`) cannot
make: there both arms train on the same fold sides, whereas a user deploys either the fold models' ensemble or one
plain model trained on every case. Nested, so that it runs on the shared data: the cases are dealt into
``--outer_folds`` folds by the project's case-level (patient-level for LGG) hashing
(:func:`pipeline.data.splits.assign`, seed ``--split_seed``). For each outer fold k (``--only`` runs some) the
other folds' cases are the data a user has, and fold k's are new cases. Both are written as folders of links in the
dataset's own layout (``outer_<k>/seen``, ``outer_<k>/new``: each case folder a link to the original, nothing
copied), and:

- **the bundle**, as a user runs it: ``run cross_validation --folds 5`` on the seen folder (its defaults, plus any
  ``--id value`` overrides given after the bench's options), then ``run evaluate --ckpt <cv> --dataset_dir
  outer_<k>/new --split all``: the fold models' mean probability with the choices made out-of-fold;
- **the plain loop** (:func:`pipeline.bench.accuracy.plain_on`, the bundle run's network, width, epochs and seed)
  trained on every seen case, its last epoch's weights (no case is left to choose an epoch on), predicting the new
  cases.

And, to see whether the post-processing chosen out-of-fold holds on new cases, **the same ensemble without it**: the
fold models' chosen checkpoints as a list (``--ckpt a,b,...``) with the chosen TTA, threshold 0.5 and no
post-processing (:data:`pipeline.crossval.START`), saving its probabilities; from those, each chosen step is dropped
in turn from the chosen set and the new cases rescored (:func:`pipeline.crossval.post_scores`, the out-of-fold
search's own scorer).

All are scored per image (per patient volume for LGG) with :mod:`pipeline.metrics`. The report gives, over the new
cases of the finished outer folds, each arm's mean, median and 95% bootstrap CI, the paired difference, and each
outer fold's out-of-fold estimate beside the ensemble's score on its new cases (does the estimate hold?). Every step
resumes: the cross-validation fold by fold, the evaluation and the plain loop once done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.bench.accuracy import PLAIN_DEFAULTS, _summary, merged, plain_on
from pipeline.bench.learning_curve import bench_overrides
from pipeline.bench.plain_loop import reuse_or_run
from pipeline.bench.stats import paired_difference, unit_scores
from pipeline.crossval import POSTPROCESSING, START, cli_args, fold_checkpoints, load_predictions, post_scores
from pipeline.runs import machine_line, recorded_host

TITLE = """# New cases: the cross-validation ensemble against a plain loop trained on every case

What a user deploys, scored on cases neither arm saw: the bundle's five-fold cross-validation ensemble (choices made
out-of-fold) against one plain PyTorch loop trained on every case the user has (last epoch: no case is left to pick
one). Nested on the shared data: each outer fold's cases are new, the other folds' cases are the user's
(`python -m pipeline.bench.new_cases`; its docstring has the details). A third arm, the same ensemble without the
post-processing chosen out-of-fold, asks whether those choices hold on new cases. docs/accuracy.md compares the two
recipes on the same fold sides instead.
"""
# what the bench sets itself; any other --id value is a bundle override for the cross-validations
RESERVED = {"dataset_dir", "output_dir", "folds", "ckpt", "split"}


def case_folder(case: dict, root: Path) -> Path:
    """The folder under ``root`` that holds one case or patient whole: the ancestor of its image named as its group
    (PH2 ``IMDxxx/``, DSB2018 ``<image id>/``, LGG ``<patient>/``)."""
    image = Path(os.path.abspath(case["image"]))
    group = str(case.get("group", case["case_id"]))
    for parent in image.parents:
        if parent == root:
            break
        if parent.name == group:
            return parent
    raise SystemExit(f"error: {case['image']}: no folder named {group} holds this case under {root}; the new-cases "
                     "bench needs a layout with one folder per case or patient (PH2, DSB2018, LGG)")


def linked_subset(cases: list[dict], root: Path, dest: Path) -> Path:
    """A folder in ``root``'s layout holding only ``cases``: their case folders as links, and the plain files on the
    way down (PH2's diagnosis CSV, a synthetic sample's marker) linked too."""
    root = Path(os.path.abspath(root))
    for folder in sorted({case_folder(c, root) for c in cases}):
        rel = folder.relative_to(root)
        for depth in range(len(rel.parts)):
            src_dir = root.joinpath(*rel.parts[:depth])
            (dest / src_dir.relative_to(root)).mkdir(parents=True, exist_ok=True)
            for f in src_dir.iterdir():
                if f.is_file() and not (dest / f.relative_to(root)).exists():
                    (dest / f.relative_to(root)).symlink_to(f)
        link = dest / rel
        if not link.is_symlink():
            link.symlink_to(folder, target_is_directory=True)
    return dest


def outer_split(layout: str, dataset_dir: str, outer_folds: int, fold: int, seed: int, layout_args: dict,
                dest: Path) -> dict:
    """Outer fold ``fold``'s seen and new cases, each written as a linked folder; checked to list exactly them."""
    from pipeline.data import find_cases
    from pipeline.data.splits import assign

    cases = find_cases(layout, dataset_dir, **layout_args)
    sides = assign(cases, folds=outer_folds, fold=fold, seed=seed)
    parts = {"seen": sides["train"] + sides["val"], "new": sides["test"]}
    for name, chosen in parts.items():
        folder = linked_subset(chosen, Path(dataset_dir), dest / name)
        listed = {c["case_id"] for c in find_cases(layout, folder, **layout_args)}
        if listed != {c["case_id"] for c in chosen}:
            raise SystemExit(f"error: {folder} lists {len(listed)} cases where outer fold {fold} has {len(chosen)} "
                             f"{name} cases; remove the folder and run again")
    return parts


def _run(cmd: list[str], what: str) -> None:
    print("running:", " ".join(["python", *cmd[1:]]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"error: {what} failed; rerun the bench to resume")


def outer_fold(config_file: str, dataset_dir: str, out: Path, k: int, outer_folds: int, inner_folds: int,
               overrides: dict, plain_kwargs: dict, seed: int, layout: str, layout_args: dict) -> dict:
    """One outer fold, resumed where it stopped: its cross-validation, the ensemble's evaluation on the new cases,
    the plain loop trained on every seen case. Returns both arms' per-unit scores and the fold's record."""
    d = out / f"outer_{k}"
    parts = outer_split(layout, dataset_dir, outer_folds, k, seed, layout_args, d)
    cv, eval_dir = d / "cv", d / "eval-new"
    doc = json.loads((cv / "crossval.json").read_text()) if (cv / "crossval.json").is_file() else {}
    if "oof_score" not in doc:
        _run([sys.executable, "-m", "monai.bundle", "run", "cross_validation", "--config_file", config_file, "--folds",
              str(inner_folds), "--dataset_dir", str(d / "seen"), *cli_args(overrides), "--output_dir", str(cv)],
             f"the cross-validation of outer fold {k}")
        doc = json.loads((cv / "crossval.json").read_text())
    if not (eval_dir / "metrics.json").is_file():
        _run([sys.executable, "-m", "monai.bundle", "run", "evaluate", "--config_file", config_file, "--ckpt", str(cv),
              "--dataset_dir", str(d / "new"), "--split", "all", "--output_dir", str(eval_dir)],
             f"the ensemble's evaluation on outer fold {k}'s new cases")
    unit, scores = unit_scores(eval_dir)
    ours = scores["dice" if unit == "patient" else "iou"]
    post = unprocessed(config_file, cv, doc["chosen"], d / "new", d / "eval-new-unprocessed", unit == "patient")
    record = json.loads((cv / "fold_0" / "config.json").read_text())["hyperparameters"]
    # the accuracy report's plain loop (its size per layout), trained for the bundle run's epochs with its seed
    params = {"epochs": int(record["epochs"]), "size": PLAIN_DEFAULTS.get(layout, {}).get("size", 256), "lr": 1e-3,
              "batch_size": 8, "seed": int(record["seed"]),
              **{k_: v for k_, v in plain_kwargs.items() if v is not None}}
    side = {"train": parts["seen"], "val": parts["seen"], "test": parts["new"]}
    plain = reuse_or_run(d / "plain.json", {"params": {**params, "val_interval": params["epochs"]}},
                         lambda: plain_on(record, side, **params, val_interval=params["epochs"]))
    if set(ours) != set(post["unprocessed"]):
        raise SystemExit(f"error: outer fold {k}: the ensemble scored {len(ours)} {unit}s, without post-processing "
                         f"{len(post['unprocessed'])}; remove {d / 'eval-new-unprocessed'} and run again")
    if set(ours) != set(plain["test"]):
        raise SystemExit(f"error: outer fold {k}: the ensemble scored {len(ours)} {unit}s, the plain loop "
                         f"{len(plain['test'])}; remove {eval_dir} and {d / 'plain.json'} and run again")
    train_s = sum(json.loads((cv / f"fold_{i}" / "metrics.json").read_text()).get("train_seconds", 0)
                  for i in range(int(doc["folds"])))
    hosts = [recorded_host(cv / f"fold_{i}") for i in range(int(doc["folds"]))]
    return {"fold": k, "unit": unit, "metric": doc["oof_score"]["metric"], "bundle": ours, "plain": plain["test"],
            "n_seen": len({str(c.get("group", c["case_id"])) for c in parts["seen"]}),
            "oof": doc["oof_score"]["mean"], "chosen": doc["chosen"], "bundle_train_s": round(train_s, 1),
            "plain_train_s": plain["train_s"], "plain_params": plain["params"], "network": record["network"],
            "threads": (hosts[0] or {}).get("torch_threads"), "machines": hosts + [plain.get("machine")], **post}


def unprocessed(config_file: str, cv: Path, chosen: dict, new: Path, out: Path, grouped: bool) -> dict:
    """The fold ensemble with the chosen checkpoint and TTA but no post-processing, on the new cases (its evaluation
    resumed once done), and each chosen post-processing step's share: the new cases rescored from the saved
    probabilities with the chosen set, and with each chosen step set back to where the choices start."""
    if not (out / "probabilities" / "index.csv").is_file():
        settings = {"flip_tta": chosen["flip_tta"], "rot90_tta": chosen["rot90_tta"],
                    **{k: START[k] for k in POSTPROCESSING}, "save_probabilities": True, "override_recorded": True}
        _run([sys.executable, "-m", "monai.bundle", "run", "evaluate", "--config_file", config_file, "--ckpt",
              ",".join(map(str, fold_checkpoints(cv))), "--dataset_dir", str(new), "--split", "all",
              *cli_args(settings), "--output_dir", str(out)],
             f"the ensemble's evaluation without post-processing on {new}")
    unit, scores = unit_scores(out)
    cases = load_predictions([out])
    kept = {k: chosen.get(k, START[k]) for k in POSTPROCESSING}
    return {"unprocessed": scores["dice" if unit == "patient" else "iou"],
            "rescored": post_scores(cases, kept, grouped),
            "without": {k: post_scores(cases, {**kept, k: START[k]}, grouped) for k in POSTPROCESSING
                        if kept[k] != START[k]}}


def report(folds: list[dict], outer_folds: int) -> dict:
    ours = {u: s for f in folds for u, s in f["bundle"].items()}
    plain = {u: s for f in folds for u, s in f["plain"].items()}
    diff = paired_difference(ours, plain)
    unprocessed = {u: s for f in folds for u, s in f["unprocessed"].items()}
    rescored = {u: s for f in folds for u, s in f["rescored"].items()}
    steps = {}
    for name in POSTPROCESSING:
        chose = [f for f in folds if name in f["without"]]
        if chose:
            d = paired_difference({u: f["rescored"][u] for f in chose for u in f["rescored"]},
                                  {u: f["without"][name][u] for f in chose for u in f["without"][name]})
            steps[name] = {"folds": [f["fold"] for f in chose], "values": [f["chosen"][name] for f in chose],
                           "worse": sum(1 for f in chose for u in f["rescored"]
                                        if f["rescored"][u] < f["without"][name][u]),
                           **{k: v for k, v in d.items() if k != "units"}}
    post = paired_difference(ours, unprocessed)
    return {"outer_folds": outer_folds, "finished": [f["fold"] for f in folds], "unit": folds[0]["unit"],
            "metric": folds[0]["metric"], "bundle": _summary(ours.values()), "plain": _summary(plain.values()),
            "difference": {k: v for k, v in diff.items() if k != "units"},
            "unprocessed": _summary(unprocessed.values()),
            "postprocessing": {**{k: v for k, v in post.items() if k != "units"},
                               "worse": sum(1 for u in post["units"] if ours[u] < unprocessed[u])},
            "steps": steps,
            # the saved 8-bit probabilities rescored with the chosen set against the engine's own scores
            "rescored_max_abs_diff": max(abs(rescored[u] - ours[u]) for u in ours),
            "per_fold": [
                {k: f[k] for k in ("fold", "n_seen", "oof", "chosen", "bundle_train_s", "plain_train_s")}
                | {"n_new": len(f["bundle"]), "bundle": float(np.mean(list(f["bundle"].values()))),
                   "plain": float(np.mean(list(f["plain"].values()))),
                   "unprocessed": float(np.mean(list(f["unprocessed"].values())))} for f in folds],
            "plain_params": folds[0]["plain_params"], "machines": [m for f in folds for m in f["machines"]],
            "threads": sorted({f["threads"] for f in folds if f["threads"]})}


def markdown(bundle: str, res: dict, commands: list[str]) -> str:
    b, p, d = res["bundle"], res["plain"], res["difference"]
    unit, metric = res["unit"], {"iou": "IoU", "volume_dice": "volume Dice"}.get(res["metric"], res["metric"])
    lo, hi = d["ci"]
    verdict = (f"no difference shown (paired 95% CI {lo:+.3f}..{hi:+.3f} crosses 0)" if lo <= 0 <= hi else
               f"paired 95% CI {lo:+.3f}..{hi:+.3f}, {'above' if lo > 0 else 'below'} 0 over {unit}s; one training "
               "seed per arm, so read it as evidence, not a settled ranking")
    unfinished = sorted(set(range(res["outer_folds"])) - set(res["finished"]))
    rows = [f"| {f['fold']} | {f['n_seen']} | {f['n_new']} | {f['oof']:.3f} | {f['bundle']:.3f} | "
            f"{f['unprocessed']:.3f} | {f['plain']:.3f} | {f['bundle_train_s'] / 60:.0f} / {f['plain_train_s'] / 60:.0f} "
            "min |" for f in res["per_fold"]]
    u, pp = res["unprocessed"], res["postprocessing"]
    step_rows = [f"| {name} | {', '.join(f'{v} ({k})' for v, k in zip(st['values'], st['folds']))} | {st['n']} | "
                 f"{st['mean']:+.4f} | {st['ci'][0]:+.4f}..{st['ci'][1]:+.4f} | {st['better']} / {st['worse']} |"
                 for name, st in res["steps"].items()]
    return "\n".join([
        f"## {bundle}: the {res['outer_folds']}-fold cross-validation ensemble against a plain loop on every case, "
        "scored on new cases",
        "",
        "Regenerate (resumes where it stopped):",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Outer folds finished: {', '.join(map(str, res['finished']))} of {res['outer_folds']}"
        + (f" (still to run: {', '.join(map(str, unfinished))}; `--only` picks outer folds)" if unfinished else "")
        + f". Plain loop: {res['plain_params']}, trained on every seen {unit}, last epoch.",
        "",
        f"| arm | n ({unit}s) | {metric} on new {unit}s, mean | median | 95% CI |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| bundle: cross-validation ensemble, choices out-of-fold | {b['n']} | {b['mean']:.3f} | {b['median']:.3f} "
        f"| {b['ci'][0]:.3f}..{b['ci'][1]:.3f} |",
        f"| the same ensemble without the post-processing chosen out-of-fold | {u['n']} | {u['mean']:.3f} | "
        f"{u['median']:.3f} | {u['ci'][0]:.3f}..{u['ci'][1]:.3f} |",
        f"| plain loop trained on every seen {unit} | {p['n']} | {p['mean']:.3f} | {p['median']:.3f} "
        f"| {p['ci'][0]:.3f}..{p['ci'][1]:.3f} |",
        "",
        f"Bundle minus plain loop, paired by {unit}: {d['mean']:+.3f} over {d['n']} {unit}s, better on {d['better']}: "
        f"{verdict}.",
        "",
        f"Does the post-processing chosen out-of-fold hold on new {unit}s? The ensemble with it minus without it "
        f"(the same fold models, checkpoint and TTA; threshold 0.5, nothing else): {pp['mean']:+.4f} over {pp['n']} "
        f"{unit}s, paired 95% CI {pp['ci'][0]:+.4f}..{pp['ci'][1]:+.4f}, better on {pp['better']}, worse on "
        f"{pp['worse']}. Each chosen step, dropped from the chosen set and the new {unit}s rescored from the saved "
        f"probabilities (the out-of-fold search's scorer; it agrees with the engine's scores within "
        f"{res['rescored_max_abs_diff']:.4f} per {unit}), over the outer folds that chose it:",
        "",
        f"| step | value chosen (outer fold) | new {unit}s | change of the mean with it | paired 95% CI | "
        f"{unit}s better / worse |",
        "| --- | --- | ---: | ---: | --- | ---: |",
        *(step_rows or ["| (none chosen) | | | | | |"]),
        "",
        f"| outer fold | seen {unit}s | new {unit}s | bundle's out-of-fold estimate | bundle on new | without "
        "post-processing | plain loop on new | training, bundle / plain |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        machine_line(res['machines']),
        ""])


def main(argv=None) -> None:
    from pipeline.bundles import file_values

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config_file", required=True)
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--output_dir", type=Path, required=True)
    ap.add_argument("--outer_folds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5, help="the cross-validation's folds within each outer fold")
    ap.add_argument("--only", type=int, nargs="+", default=None, help="run these outer folds (default: all)")
    ap.add_argument("--plain_size", type=int, default=None, help="plain loop squash (PH2) or crop (DSB2018) size")
    ap.add_argument("--out", type=Path, default=None, help="add (or replace) this bundle's section of this file")
    args, rest = ap.parse_known_args(argv)
    overrides = bench_overrides(rest, RESERVED)
    stated = {**file_values(args.config_file), **overrides}
    chosen = args.only if args.only is not None else range(args.outer_folds)
    if any(not 0 <= k < args.outer_folds for k in chosen):
        raise SystemExit(f"error: --only {args.only}: outer folds are 0..{args.outer_folds - 1}")
    folds = []
    for k in range(args.outer_folds):
        if k in chosen or (args.output_dir / f"outer_{k}" / "plain.json").is_file():  # finished before: reported
            folds.append(outer_fold(args.config_file, args.dataset_dir, args.output_dir, k, args.outer_folds,
                                    args.folds, overrides, {"size": args.plain_size}, int(stated["split_seed"]),
                                    stated["layout"], stated.get("layout_args") or {}))
    res = report(folds, args.outer_folds)
    (args.output_dir / "new_cases.json").write_text(json.dumps(res, indent=1))
    # the thread count the folds trained with sets the float summation order: the command states it
    threads = [f"OMP_NUM_THREADS={res['threads'][0]}"] if len(res["threads"]) == 1 else []
    command = " ".join([*threads, "python -m pipeline.bench.new_cases",
                        *(sys.argv[1:] if argv is None else map(str, argv))])
    text = markdown(stated["bundle_name"], res, [command])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(merged(args.out.read_text() if args.out.is_file() else "", text, TITLE))
    print(text)


if __name__ == "__main__":
    main()
