"""The LGG bundle's recipe against a plain PyTorch loop under the same cross-validation (a benchmark, not a test).

    python -m pipeline.bench.lgg [--dataset_dir ../shared/data/lgg/kaggle_3m] [--folds 4] [--epochs 30]
                                 [--network unet] [--intensity_norm fixed] [--out runs/bench_lgg]
                                 [--study runs/studies/lgg_intensity]

The issue's reference figure (a plain UNet loop at about 0.64 volume Dice) was trained on all 16 patients and tested
on other ones, which this data set does not hold. So the plain loop is run here under the study's protocol
(``configs/studies/lgg.yaml``): the same folds (``pipeline.data.splits``, seed 0, 4 folds, 15% validation), the same
network and width, the same epochs and batch size, the same checkpoint choice (validation volume Dice every 2
epochs) and the same scoring (``pipeline.metrics``: Dice per patient volume, every patient tested once). What differs
is only what a plain loop does differently from the bundle's recipe:

================  ==============================================  ==============================================
                  plain loop (``pipeline.bench.plain_loop``)      bundle recipe (``bundles/lgg.json``)
================  ==============================================  ==============================================
sampling          every training slice once per epoch, shuffled   tumour slices drawn half the time (weighted)
loss              BCE + Dice per slice (``DiceCELoss``)            BCE + Dice over the batch (``batch=True``)
optimiser         Adam, fixed lr 1e-3                             AdamW 2e-3, weight decay 1e-4, cosine schedule
augmentation      horizontal flip                                 flip, affine, FLAIR-only, intensity, contrast
intensity         0..255 to 0..1 (``--intensity_norm patient``:     each channel over its 99th percentile in the
                  the bundle's per-patient scale)                 patient (``--intensity_norm patient``, 0.6.0)
================  ==============================================  ==============================================

Each fold's result is written to ``OUT/fold<k>.json`` as soon as it is done and reused by a rerun, so a stopped run
resumes at the next fold. With ``--study`` the pooled per-patient scores are compared, paired by patient, with the
study's runs evaluated on the test split (``python -m pipeline.bench.study configs/studies/lgg.yaml``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pipeline.bench.plain_loop import PlainLoop, reuse_or_run
from pipeline.bench.stats import bootstrap_ci, paired_difference, summarize, unit_scores
from pipeline.metrics import case_record, slice_summaries, volume_record

SPLIT = {"val_fraction": 0.15, "seed": 0}  # bundles/lgg.json: val_fraction, split_seed


def _load(cases: list[dict], intensity_norm: str = "fixed") -> tuple[torch.Tensor, torch.Tensor]:
    """Slices as (N, 3, H, W) float and masks as (N, 1, H, W) {0, 1}, read once (a plain loop's cache). Intensities
    over 255 (``fixed``), or over each channel's 99th percentile of the slice's patient (``patient``, the bundle's
    ``pipeline.data.lgg.patient_percentiles``)."""
    from PIL import Image

    from pipeline.data.lgg import INTENSITY_NORMS, patient_percentiles

    if intensity_norm not in INTENSITY_NORMS:
        raise ValueError(f"intensity_norm must be one of {', '.join(INTENSITY_NORMS)}, got {intensity_norm!r}")

    images, masks = [], []
    for c in cases:
        with Image.open(c["image"]) as im:
            images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        with Image.open(c["label"]) as im:
            masks.append(np.asarray(im.convert("L")) > 127)
    if intensity_norm == "patient":
        scale = np.stack([np.maximum(patient_percentiles(str(Path(c["image"]).parent)), 1.0) for c in cases])
    else:
        scale = np.full((len(cases), 3), 255.0)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    x /= torch.from_numpy(scale).float()[:, :, None, None]
    return x, torch.from_numpy(np.stack(masks))[:, None].float()


@torch.inference_mode()
def _predict(net: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i:i + batch_size]) > 0 for i in range(0, len(x), batch_size)])


def _volume_dice(cases: list[dict], pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Dice per patient volume (``pipeline.metrics.volume_record``); cases are in patient, slice order."""
    out = {}
    for g in dict.fromkeys(c["group"] for c in cases):
        idx = [i for i, c in enumerate(cases) if c["group"] == g]
        out[g] = volume_record(list(pred[idx, 0]), list(truth[idx, 0]))["dice_volume"]
    return out


def _flipped(x: torch.Tensor, y: torch.Tensor):
    """The plain loop's batches: the slices and masks at ``indices``, each flipped left-right with probability 1/2."""

    def batch(indices: list[int], g: torch.Generator):
        xb, yb = x[indices], y[indices]
        flip = torch.rand(len(indices), generator=g) < 0.5
        xb[flip], yb[flip] = xb[flip].flip(-1), yb[flip].flip(-1)
        return xb, yb

    return batch


def train_fold(dataset_dir: str, fold: int, folds: int, network: str = "unet", epochs: int = 30,
               batch_size: int = 8, lr: float = 1e-3, val_interval: int = 2, width: int = 16, seed: int = 0,
               intensity_norm: str = "fixed") -> dict:
    """Train the plain loop on one fold's training patients, keep the epoch with the best validation volume Dice,
    and score the fold's test patients with it and with the last epoch."""
    from pipeline.data import find_cases, splits

    split = splits.assign(find_cases("lgg", dataset_dir), folds=folds, fold=fold, **SPLIT)
    return {"fold": fold, "folds": folds, **fit_split(split, network, epochs, batch_size, lr, val_interval, width,
                                                      seed, intensity_norm)}


def fit_split(split: dict, network: str = "unet", epochs: int = 30, batch_size: int = 8, lr: float = 1e-3,
              val_interval: int = 2, width: int = 16, seed: int = 0, intensity_norm: str = "fixed") -> dict:
    """The plain loop on given ``train`` / ``val`` / ``test`` case lists (slices, in patient and slice order)."""
    (x, y), (vx, vy) = _load(split["train"], intensity_norm), _load(split["val"], intensity_norm)
    loop = PlainLoop(network, _flipped(x, y), len(x), batch_size=batch_size, width=width, lr=lr, seed=seed)

    def validate(net):
        return float(np.mean(list(_volume_dice(split["val"], _predict(net, vx, batch_size), vy).values())))

    fitted = loop.fit(epochs, validate, val_interval, "val_volume_dice")
    tx, ty = _load(split["test"], intensity_norm)

    def score(net):
        pred = _predict(net, tx, batch_size)
        records = [case_record(p, t, hd95=False) for p, t in zip(pred, ty)]
        return {"volume_dice": _volume_dice(split["test"], pred, ty), **slice_summaries(records)}

    return {"network": network, "epochs": epochs, "intensity_norm": intensity_norm,
            **fitted, "test_patients": sorted({c["group"] for c in split["test"]}), **loop.last_and_best(score)}


def compare(results: list[dict], study_dir: Path | None, which: str = "best") -> dict:
    """Pooled per-patient volume Dice of the plain loop, and, for each network of a study's evaluated runs, the
    recipe's mean minus the plain loop's on the same patients with a paired bootstrap 95% CI. The study's runs are
    pooled over folds and keyed by their other grid values (``network=unet``)."""
    plain = {p: d for r in results for p, d in r[which]["volume_dice"].items()}
    empty = [r[which]["empty_slices"] for r in results]
    out = {"plain": {"n_patients": len(plain), **summarize(list(plain.values())),
                     "ci": bootstrap_ci(list(plain.values())),
                     "empty_slices_predicted_empty": sum(e["predicted_empty"] for e in empty)
                     / max(1, sum(e["n"] for e in empty))},
           "recipe": {}}
    if study_dir is None:
        return out
    runs: dict[str, dict[str, float]] = {}
    for eval_dir in sorted(Path(study_dir).glob("*/eval-test")):
        if not (eval_dir / "per_group.csv").is_file():
            continue
        # the study's runs pooled over folds: keyed by their other grid values (network=unet, intensity_norm=...)
        label = ",".join(kv for kv in eval_dir.parent.name.split(",") if not kv.startswith("fold=")) or "all"
        runs.setdefault(label, {}).update(unit_scores(eval_dir)[1]["dice"])
    for label, scores in runs.items():
        d = paired_difference(scores, plain)
        if d["n"]:
            out["recipe"][label] = {"n_patients": d["n"], **summarize([scores[p] for p in d["units"]]),
                                    "minus_plain": d["mean"], "minus_plain_ci": d["ci"], "patients_better": d["better"]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", default="../shared/data/lgg/kaggle_3m")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30, help="the study's epochs (configs/studies/lgg.yaml)")
    ap.add_argument("--network", default="unet")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--intensity_norm", choices=["fixed", "patient"], default="fixed",
                    help="the plain loop's intensity scale: 0..255 to 0..1, or the bundle's per-patient scale")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_lgg"))
    ap.add_argument("--study", type=Path, default=Path("runs/studies/lgg"),
                    help="a study folder with evaluated runs to compare with (skipped if absent)")
    args = ap.parse_args(argv)
    if not Path(args.dataset_dir).is_dir():
        raise SystemExit(f"LGG kaggle_3m not found at {args.dataset_dir}: pass --dataset_dir")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for fold in range(args.folds):
        params = {"network": args.network, "epochs": args.epochs, "folds": args.folds,
                  "intensity_norm": args.intensity_norm}
        res = reuse_or_run(args.out / f"fold{fold}.json", params, defaults={"intensity_norm": "fixed"},
                           run=lambda: {**train_fold(args.dataset_dir, fold, args.folds, args.network, args.epochs,
                                                     lr=args.lr, intensity_norm=args.intensity_norm), "lr": args.lr})
        results.append(res)
        print(f"fold {fold}: {res['train_s']:.0f}s, best epoch {res['best_epoch']} (val volume Dice "
              f"{res['val_volume_dice']:.3f}), test volume Dice best "
              f"{np.mean(list(res['best']['volume_dice'].values())):.3f} / last "
              f"{np.mean(list(res['last']['volume_dice'].values())):.3f}", flush=True)
    summary = {which: compare(results, args.study if args.study.is_dir() else None, which)
               for which in ("best", "last")}
    for which, s in summary.items():
        p = s["plain"]
        print(f"plain loop ({which} epoch), {p['n_patients']} patients: volume Dice mean {p['mean']:.3f} "
              f"[{p['ci'][0]:.3f}, {p['ci'][1]:.3f}], median {p['median']:.3f}; empty slices predicted empty "
              f"{p['empty_slices_predicted_empty']:.0%}")
        for label, r in s["recipe"].items():
            print(f"  recipe {label} ({r['n_patients']} patients): mean {r['mean']:.3f}, median {r['median']:.3f}; "
                  f"minus plain {r['minus_plain']:+.3f} [{r['minus_plain_ci'][0]:+.3f}, {r['minus_plain_ci'][1]:+.3f}]"
                  f", better on {r['patients_better']} of {r['n_patients']} patients")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
