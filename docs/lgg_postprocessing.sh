#!/usr/bin/env bash
# Choose LGG's post-processing and checkpoint on the *validation* patients of the cross-validation runs
# (configs/studies/lgg.yaml), then score the choices on their test patients. Used for docs/lgg_recipe.md.
#
#   bash docs/lgg_postprocessing.sh [SPLIT] [MIN_SIZES]     e.g. bash docs/lgg_postprocessing.sh val "0 50 150 400"
#
# For every finished run under runs/studies/lgg and every checkpoint (best.pt, last.pt) and --min_lesion_size, the
# bundle's own evaluation writes <run>/post/<split>-<ckpt>-min<size>/; the table pools the patients of the four folds
# per network (mean / median volume Dice, empty slices predicted empty). Each evaluation restores its run's settings.
set -euo pipefail
split=${1:-val}
sizes=${2:-0 50 150 400}
study=runs/studies/lgg
for run in "$study"/network=*; do
    [ -f "$run/eval-test/metrics.json" ] || { echo "skip $run: not finished" >&2; continue; }
    for ckpt in best last; do
        for size in $sizes; do
            out=$run/post/$split-$ckpt-min$size
            [ -f "$out/metrics.json" ] && continue
            mkdir -p "$run/post"
            # network, preprocessing, dataset and fold come from the run's record; the blob size is the variant
            python -m monai.bundle run evaluate --config_file bundles/lgg.json \
                --ckpt "$run/models/$ckpt.pt" --split "$split" --min_lesion_size "$size" --override_recorded true \
                --output_dir "$out" \
                > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
        done
    done
done
python - "$study" "$split" <<'PY'
import csv, json, sys
from pathlib import Path
import numpy as np

study, split = Path(sys.argv[1]), sys.argv[2]
rows = {}
for m in sorted(study.glob(f"network=*/post/{split}-*/metrics.json")):
    run, variant = m.parent.parent.parent.name, m.parent.name[len(split) + 1:]
    net = run.split(",")[0].split("=")[1]
    doc = json.loads(m.read_text())
    r = rows.setdefault((net, variant), {"dice": [], "empty": [0, 0], "runs": 0})
    r["dice"] += [float(g["dice_volume"]) for g in csv.DictReader(open(m.parent / "per_group.csv"))]
    r["empty"][0] += doc["empty_slices"]["predicted_empty"]
    r["empty"][1] += doc["empty_slices"]["n"]
    r["runs"] += 1
print(f"{split} split, patients pooled over the folds")
print("network  variant          runs  patients  volume Dice mean  median  empty slices predicted empty")
for (net, variant), r in sorted(rows.items()):
    d = np.array(r["dice"])
    print(f"{net:8s} {variant:16s} {r['runs']:4d}  {d.size:8d}  {d.mean():16.3f}  {np.median(d):6.3f}  "
          f"{r['empty'][0] / max(r['empty'][1], 1):.1%} of {r['empty'][1]}")
PY
