"""The DSB2018 bundle's recipe against a plain PyTorch loop on the same split (a benchmark, not a test).

    python -m pipeline.study configs/studies/dsb2018_seeds.yaml        # the recipe, seeds 0-2 (evaluated on test)
    python -m pipeline.bench_dsb2018 [--dataset_dir ../shared/data/dsb2018/stage1_train] [--seeds 0 1 2]
                                     [--out runs/bench_dsb2018] [--study runs/studies/dsb2018_seeds]

The issue's reference (a plain UNet loop at about 0.82 mean per-image IoU) was trained on all 82 images and tested
on other DSB images, which this data set does not hold. Here the plain loop trains on the bundle's split (seed 0:
54 train, 11 validation, 17 test images) with the same network and width, epochs (100), batch size (8), 256x256
random crops at source resolution, checkpoint choice (validation IoU every 5 epochs) and scoring
(``pipeline.metrics``: IoU of the thresholded mask per image at full resolution). It does what a plain loop does:
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
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.metrics import case_record, summarize

SPLIT = {"val_fraction": 0.15, "test_fraction": 0.2, "seed": 0}  # bundles/dsb2018.json: fractions, split_seed


def _load(cases: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from PIL import Image

    from pipeline.transforms import LoadMaskUniond

    out = []
    for c in cases:
        with Image.open(c["image"]) as im:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1) / 255.0
        out.append((x, LoadMaskUniond.union(c["label"]).as_tensor()))
    return out


def _crop(x: torch.Tensor, y: torch.Tensor, roi: int, g: torch.Generator):
    h, w = x.shape[1:]
    ph, pw = max(roi - h, 0), max(roi - w, 0)
    if ph or pw:
        x, y = F.pad(x, (0, pw, 0, ph)), F.pad(y, (0, pw, 0, ph))
        h, w = x.shape[1:]
    i, j = int(torch.randint(0, h - roi + 1, (1,), generator=g)), int(torch.randint(0, w - roi + 1, (1,), generator=g))
    x, y = x[:, i:i + roi, j:j + roi], y[:, i:i + roi, j:j + roi]
    flips = torch.rand(2, generator=g) < 0.5
    for dim, f in zip((1, 2), flips):
        if f:
            x, y = x.flip(dim), y.flip(dim)
    return x, y


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
    from monai.losses import DiceCELoss

    from pipeline.data import find_cases, splits
    from pipeline.networks import build_network

    torch.manual_seed(seed)
    split = splits.assign(find_cases("dsb2018", dataset_dir), **SPLIT)
    train, val = _load(split["train"]), _load(split["val"])
    net = build_network(network, in_channels=3, out_channels=1, width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn, g = DiceCELoss(sigmoid=True), torch.Generator().manual_seed(seed)
    best, best_epoch, best_state, curve, t0 = -1.0, 0, None, [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(order), batch_size):
            pairs = [_crop(*train[j], roi, g) for j in order[i:i + batch_size]]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(torch.stack([p[0] for p in pairs])), torch.stack([p[1] for p in pairs])).backward()
            opt.step()
        if epoch % val_interval == 0 or epoch == epochs:
            score = float(np.mean(_ious(net, val)))
            curve.append({"epoch": epoch, "elapsed_s": round(time.perf_counter() - t0, 1), "val_iou": score})
            if score > best:
                best, best_epoch = score, epoch
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
    out = {"seed": seed, "network": network, "epochs": epochs, "lr": lr, "train_s": round(time.perf_counter() - t0, 1),
           "best_epoch": best_epoch, "val_iou": best, "curve": curve}
    test = _load(split["test"])
    ids = [c["case_id"] for c in split["test"]]
    out["last"] = dict(zip(ids, _ious(net, test)))
    net.load_state_dict(best_state)
    out["best"] = dict(zip(ids, _ious(net, test)))
    return out


def _seed_means(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per image, the mean IoU over the runs that scored it."""
    ids = sorted({i for r in runs for i in r})
    return {i: float(np.mean([r[i] for r in runs if i in r])) for i in ids}


def compare(results: list[dict], study_dir: Path | None, which: str = "best") -> dict:
    """The plain loop's per-image IoU (averaged over its seeds), and the recipe's from a study's evaluated runs
    (averaged over theirs), paired by image."""
    from pipeline.study import _scores, bootstrap_ci

    plain = _seed_means([r[which] for r in results])
    out = {"plain": {"runs": len(results), "per_run_mean": [float(np.mean(list(r[which].values()))) for r in results],
                     **summarize(list(plain.values()))}}
    runs = [_scores(d)[1]["iou"] for d in sorted(Path(study_dir).glob("*/eval-test")) if (d / "per_case.csv").is_file()
            ] if study_dir else []
    if runs:
        recipe = _seed_means(runs)
        common = sorted(set(recipe) & set(plain))
        diff = [recipe[i] - plain[i] for i in common]
        out["recipe"] = {"runs": len(runs), "per_run_mean": [float(np.mean(list(r.values()))) for r in runs],
                         **summarize([recipe[i] for i in common]), "n_images": len(common),
                         "minus_plain": float(np.mean(diff)), "minus_plain_ci": bootstrap_ci(diff),
                         "images_better": int(sum(d > 0 for d in diff))}
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
        path = args.out / f"seed{seed}.json"
        params = {"network": args.network, "epochs": args.epochs}
        if path.is_file() and all(json.loads(path.read_text()).get(k) == v for k, v in params.items()):
            res = json.loads(path.read_text())
        else:
            res = train_seed(args.dataset_dir, seed, args.network, args.epochs)
            path.write_text(json.dumps(res, indent=1))
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
