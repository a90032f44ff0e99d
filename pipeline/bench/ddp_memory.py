"""Memory per process of distributed training: 1, 2, 4 CPU processes (torchrun, gloo) on the same data, each
caching only its shard of the training cases, against every process caching all of them (the layout before).

    python -m pipeline.bench.ddp_memory --dataset_dir ../shared/data/ph2/PH2Dataset --out runs/bench_ddp_memory

Each configuration trains one epoch (and validates once) at the bundle's settings with ``--image_size 0`` by
default, so the cache holds the images at their source resolution (PH2: 768 x 560), which is where the training set
dominates a process's memory. Peak resident memory per process comes from the run's ``metrics.json``
(``processes``: each rank's ``ru_maxrss`` and how many training cases it cached). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(nproc: int, out: Path, dataset_dir: str, sharded: bool, extra: list[str]) -> dict:
    folder = out / f"{'sharded' if sharded else 'full'}-{nproc}"
    metrics = folder / "metrics.json"
    if not (metrics.is_file() and json.loads(metrics.read_text()).get("completed")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "monai.bundle", "run", "training", "--config_file",
               "['bundles/ph2.json','configs/distributed.json']", "--dataset_dir", dataset_dir, "--epochs", "1",
               "--output_dir", str(folder), *extra]
        if not sharded:  # as before sharding: every process caches the whole split and samples its share of it
            cmd += ["--train_cases", "$@data#splits['train']",
                    "--train_loader_sampler", "$monai.data.DistributedSampler(@train#dataset, shuffle=True, seed=@seed)"]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        (folder / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    doc = json.loads(metrics.read_text())
    procs = doc["processes"]
    return {"nproc": nproc, "sharded": sharded, "rss": [p["peak_rss_gb"] for p in procs],
            "cached": [p["train_cases_cached"] for p in procs],
            "wall_s": float((folder / "wall_s.txt").read_text()) if (folder / "wall_s.txt").is_file() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.ddp_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset_dir", default="../shared/data/ph2/PH2Dataset")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--image_size", type=int, default=0, help="working resolution (0: source resolution)")
    ap.add_argument("--out", default="runs/bench_ddp_memory")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    extra = ["--image_size", str(args.image_size), "--val_fraction", "0.15"]
    rows = [run(n, out, args.dataset_dir, sharded, extra) for n in args.processes for sharded in (True, False)
            if sharded or n > 1]
    lines = ["| processes | training cases cached per process | peak RSS per process (GiB) | all processes (GiB) "
             "| wall (s) |", "| ---: | --- | --- | ---: | ---: |"]
    for r in rows:
        kind = "" if r["nproc"] == 1 else " (shards)" if r["sharded"] else " (every process all)"
        lines.append(f"| {r['nproc']}{kind} | {', '.join(str(c) for c in r['cached'])} | "
                     f"{', '.join(f'{x:.2f}' for x in r['rss'])} | {sum(r['rss']):.2f} | "
                     f"{r['wall_s'] if r['wall_s'] is not None else ''} |")
    print("\n".join(lines))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
