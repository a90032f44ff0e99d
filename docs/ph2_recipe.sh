#!/usr/bin/env bash
# Train one PH2 recipe and score its best checkpoint on the validation split with and without the lesion
# post-processing (largest component + fill holes). Used to choose the bundle's defaults (docs/ph2_recipe.md).
#
#   bash docs/ph2_recipe.sh NAME [bundle overrides ...]
#   e.g. bash docs/ph2_recipe.sh unet150 --epochs 150
#
# PH2 is read from $PH2 (default ../shared/data/ph2/PH2Dataset); runs go to runs/recipe/NAME.
set -euo pipefail
name=$1; shift
data=${PH2:-../shared/data/ph2/PH2Dataset}
out=runs/recipe/$name
mkdir -p runs/recipe
start=$(date +%s)
python -m monai.bundle run training --config_file bundles/ph2.json --dataset_dir "$data" --output_dir "$out" "$@" \
    > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
train_s=$(( $(date +%s) - start ))
for pp in false true; do
    python -m monai.bundle run evaluate --config_file bundles/ph2.json --dataset_dir "$data" \
        --ckpt "$out/models/best.pt" --split val --keep_largest_component $pp --fill_holes $pp --override_recorded true \
        --output_dir "$out/val_postprocess_$pp" "$@" > /dev/null 2>&1
    python - "$out/val_postprocess_$pp/metrics.json" "$name" "$pp" "$train_s" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["summary"]
print(f"{sys.argv[2]}\tpostprocess={sys.argv[3]}\ttrain_s={sys.argv[4]}\tval IoU mean {m['iou']['mean']:.4f} "
      f"median {m['iou']['median']:.4f}\tDice mean {m['dice']['mean']:.4f} (n={m['iou']['n']})")
PY
done
