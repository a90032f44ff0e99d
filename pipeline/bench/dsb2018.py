"""The DSB2018 bundle's recipe against a plain PyTorch loop on the same split (a benchmark, not a test).

    python -m pipeline.bench.study configs/studies/dsb2018_seeds.yaml  # the recipe, seeds 0-2 (evaluated on test)
    python -m pipeline.bench.dsb2018 [--dataset_dir ../shared/data/dsb2018/stage1_train] [--seeds 0 1 2]
                                     [--out runs/bench_dsb2018] [--study runs/studies/dsb2018_seeds]

The issue's reference (a plain UNet loop at about 0.82 mean per-image IoU) was trained on all 82 images and tested
on other DSB images, which this data set does not hold. Here the plain loop trains on the bundle's split (seed 0:
54 train, 11 validation, 17 test images) with the same network and width, epochs (100), batch size (8), 256x256
random crops at source resolution, checkpoint choice (validation IoU every 5 epochs) and scoring
(``pipeline.metrics``: IoU of the thresholded mask per image at full resolution). It does what a plain loop does
(``pipeline.bench.plain_loop``):
pixels divided by 255, random crops with flips, per-image BCE + Dice, Adam at a fixed 1e-3, whole-image forward
(padded to a multiple of 16) for validation and test. The recipe differs in percentile intensity scaling, rot90 and
intensity augmentation, AdamW with a cosine schedule from 2e-3 and its sliding-window inference.

Each seed's result goes to ``OUT/seed<k>.json`` and is reused by a rerun. Both sides train with several seeds
because 17 test images and one training run are too few to tell recipes apart; per image the seeds' IoUs are
averaged and the recipe's mean minus the plain loop's is bootstrapped over the test images (paired).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.bench.plain_loop import PlainLoop, random_crop, random_flips, read_image, reuse_or_run, stacked
from pipeline.bench.stats import paired_difference, summarize, unit_scores
from pipeline.metrics import case_record

SPLIT = {"val_fraction": 0.15, "test_fraction": 0.2, "seed": 0}  # bundles/dsb2018.json: fractions, split_seed


def _load(cases: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(image over 255, union of the nucleus masks) per case, read once (a plain loop's cache)."""
    from pipeline.transforms import LoadMaskUniond

    return [(read_image(c["image"]), LoadMaskUniond.union(c["label"]).as_tensor()) for c in cases]


def _crop(x: torch.Tensor, y: torch.Tensor, roi: int, g: torch.Generator):
    """A random ``roi`` crop (zero-padded at the bottom and right where smaller) with random flips."""
    x, y = random_crop(x, y, roi, g)
    return random_flips(x, y, torch.rand(2, generator=g))


@torch.inference_mode()
def _ious(net: torch.nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Per-image IoU of a whole-image forward, the image padded to a multiple of 16 and the logits cropped back."""
    net.eval()
    out = []
    for x, y in data:
        h, w = x.shape[1:]
        logits = net(F.pad(x[None], (0, -w % 16, 0, -h % 16)))[0, :, :h, :w]
        out.append(case_record(logits > 0, y, hd95=False)["iou"])
    return out


def train_seed(dataset_dir: str, seed: int, network: str = "unet", epochs: int = 100, batch_size: int = 8,
               roi: int = 256, lr: float = 1e-3, val_interval: int = 5, width: int = 16) -> dict:
    """Train the plain loop once, keep the epoch with the best mean validation IoU, score the test images with it
    and with the last epoch."""
    from pipeline.data import find_cases, splits

    split = splits.assign(find_cases("dsb2018", dataset_dir), **SPLIT)
    return fit_split(split, seed, network, epochs, batch_size, roi, lr, val_interval, width)


def fit_split(split: dict, seed: int = 0, network: str = "unet", epochs: int = 100, batch_size: int = 8,
              roi: int = 256, lr: float = 1e-3, val_interval: int = 5, width: int = 16) -> dict:
    """The plain loop on given ``train`` / ``val`` / ``test`` case lists."""
    train, val = _load(split["train"]), _load(split["val"])
    loop = PlainLoop(network, stacked(train, lambda x, y, g: _crop(x, y, roi, g)), len(train), batch_size=batch_size,
                     width=width, lr=lr, seed=seed)
    out = {"seed": seed, "network": network, "epochs": epochs, "lr": lr,
           **loop.fit(epochs, lambda net: float(np.mean(_ious(net, val))), val_interval, "val_iou")}
    test = _load(split["test"])
    ids = [c["case_id"] for c in split["test"]]
    return {**out, **loop.last_and_best(lambda net: dict(zip(ids, _ious(net, test))))}


def _seed_means(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per image, the mean IoU over the runs that scored it."""
    ids = sorted({i for r in runs for i in r})
    return {i: float(np.mean([r[i] for r in runs if i in r])) for i in ids}


def compare(results: list[dict], study_dir: Path | None, which: str = "best") -> dict:
    """The plain loop's per-image IoU (averaged over its seeds), and the recipe's from a study's evaluated runs
    (averaged over theirs), paired by image."""
    plain = _seed_means([r[which] for r in results])
    out = {"plain": {"runs": len(results), "per_run_mean": [float(np.mean(list(r[which].values()))) for r in results],
                     **summarize(list(plain.values()))}}
    evaluated = sorted(Path(study_dir).glob("*/eval-test")) if study_dir else []
    runs = [unit_scores(d)[1]["iou"] for d in evaluated if (d / "per_case.csv").is_file()]
    if runs:
        recipe = _seed_means(runs)
        d = paired_difference(recipe, plain)
        out["recipe"] = {"runs": len(runs), "per_run_mean": [float(np.mean(list(r.values()))) for r in runs],
                         **summarize([recipe[i] for i in d["units"]]), "n_images": d["n"],
                         "minus_plain": d["mean"], "minus_plain_ci": d["ci"], "images_better": d["better"]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", default="../shared/data/dsb2018/stage1_train")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=100, help="the bundle's epochs (bundles/dsb2018.json)")
    ap.add_argument("--network", default="unet")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_dsb2018"))
    ap.add_argument("--study", type=Path, default=Path("runs/studies/dsb2018_seeds"),
                    help="a study folder with the recipe's evaluated runs (configs/studies/dsb2018_seeds.yaml)")
    args = ap.parse_args(argv)
    if not Path(args.dataset_dir).is_dir():
        raise SystemExit(f"DSB2018 stage1_train not found at {args.dataset_dir}: pass --dataset_dir")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        res = reuse_or_run(args.out / f"seed{seed}.json", {"network": args.network, "epochs": args.epochs},
                           run=lambda: train_seed(args.dataset_dir, seed, args.network, args.epochs))
        results.append(res)
        print(f"seed {seed}: {res['train_s']:.0f}s, best epoch {res['best_epoch']} (val IoU {res['val_iou']:.3f}), "
              f"test IoU best {np.mean(list(res['best'].values())):.3f} / last "
              f"{np.mean(list(res['last'].values())):.3f}", flush=True)
    summary = {w: compare(results, args.study if args.study.is_dir() else None, w) for w in ("best", "last")}
    for which, s in summary.items():
        p = s["plain"]
        print(f"plain loop ({which} epoch, {p['runs']} seeds averaged per image): IoU mean {p['mean']:.3f}, median "
              f"{p['median']:.3f} over {p['n']} test images; per seed "
              + ", ".join(f"{m:.3f}" for m in p["per_run_mean"]))
        if "recipe" in s:
            r = s["recipe"]
            print(f"  recipe ({r['runs']} runs): IoU mean {r['mean']:.3f}, median {r['median']:.3f}; per run "
                  + ", ".join(f"{m:.3f}" for m in r["per_run_mean"])
                  + f"; minus plain {r['minus_plain']:+.3f} [{r['minus_plain_ci'][0]:+.3f}, "
                    f"{r['minus_plain_ci'][1]:+.3f}], better on {r['images_better']} of {r['n_images']} images")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
