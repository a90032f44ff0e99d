#!/usr/bin/env bash
# Regenerate every table and figure README.md and docs/ publish, at HEAD, from the shared data. Not a test: on the
# 2-core CPU machine it takes about 41 hours (sections below give their share). Every step resumes or skips what is
# done (studies and cross-validations skip finished runs and folds), so the script can be stopped and started again.
#
#   bash docs/regenerate.sh [SECTION ...]     sections: results cv curves new_cases studies recipes performance gallery (default: all)
#
# Threads: the figures were made with torch's default of one thread per core on 2-core VMs (OMP_NUM_THREADS=2),
# except where a doc says one thread; the float summation order, and so the last digits of a score, depend on it.
# Results reproduce on one machine; another CPU moves scores by about 0.01 (README, Results), which is the noise to
# allow when comparing with the published figures (some VMs give identical figures: docs/accuracy.md's DSB2018
# section came back to the last digit on a fourth VM), except LGG: one cross-validation moved by 0.017 between two
# VMs (docs/lgg_recipe.md) and the single 5-patient test split by 0.1 (README, LGG): allow 0.02 for LGG's
# cross-validations and compare LGG recipes on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PH2=../shared/data/ph2/PH2Dataset
LGG=../shared/data/lgg/kaggle_3m
DSB=../shared/data/dsb2018/stage1_train
sections=${*:-results cv curves new_cases studies recipes performance gallery}

train_and_test() {  # bundle, dataset, run folder[, training overrides]: README's single training and its test-split evaluation
    [ -f "$3/metrics.json" ] && grep -q '"completed": true' "$3/metrics.json" || \
        python -m monai.bundle run training --config_file "bundles/$1.json" --dataset_dir "$2" "${@:4}" --output_dir "$3"
    python -m monai.bundle run evaluate --config_file "bundles/$1.json" --dataset_dir "$2" \
        --ckpt "$3/models/best.pt" --output_dir "$3/eval-test"
}

for section in $sections; do
    echo "=== $section ($(date))"
    case $section in
    results)  # README, Results (16 min on the 2026-12-06 VM; up to 1 h on slower ones)
        train_and_test ph2 "$PH2" runs/final/ph2
        train_and_test dsb2018 "$DSB" runs/final/dsb2018 --invert_bright_background False  # published with bundle 0.10
        OMP_NUM_THREADS=1 train_and_test lgg "$LGG" runs/final/lgg  # published with one thread
        ;;
    cv)  # docs/accuracy.md and README's cross-validation paragraphs (about 20.5 h: 41 cross-validations, the plain loop on 10 of them)
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --dataset_dir "$PH2" --output_dir runs/cv/ph2-unet-5fold
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --dataset_dir "$PH2" --seed 1 --output_dir runs/cv/ph2-unet-5fold-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/ph2-unet-5fold runs/cv/ph2-unet-5fold-seed1 --out docs/accuracy.md
        python -m pipeline.bench.accuracy --pooled --cv runs/cv/ph2-unet-5fold runs/cv/ph2-unet-5fold-seed1  # README, Cross-validation: ten fold models
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 3 --dataset_dir "$PH2" --output_dir runs/cv/ph2-unet-3fold
        python -m pipeline.bench.accuracy --cv runs/cv/ph2-unet-5fold --against runs/cv/ph2-unet-3fold
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --dataset_dir "$PH2" --hair_prob 0.5 --output_dir runs/cv/ph2-unet-5fold-hair05
        python -m pipeline.bench.accuracy --cv runs/cv/ph2-unet-5fold-hair05 --against runs/cv/ph2-unet-5fold  # README, Cross-validation: hair augmentation (one run per arm)
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --dataset_dir "$PH2" --affine_prob 0.5 --output_dir runs/cv/ph2-unet-5fold-affine05
        python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --dataset_dir "$PH2" --affine_prob 0.5 --seed 1 --output_dir runs/cv/ph2-unet-5fold-affine05-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/ph2-unet-5fold-affine05 runs/cv/ph2-unet-5fold-affine05-seed1 --against runs/cv/ph2-unet-5fold runs/cv/ph2-unet-5fold-seed1  # docs/ph2_recipe.md: rotation and scale augmentation
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background False --output_dir runs/cv/dsb2018-unet-5fold
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --seed 1 --invert_bright_background False --output_dir runs/cv/dsb2018-unet-5fold-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold runs/cv/dsb2018-unet-5fold-seed1  # bundle 0.10 (docs/dsb2018_recipe.md)
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --output_dir runs/cv/dsb2018-unet-5fold-invert
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-invert-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1 --against runs/cv/dsb2018-unet-5fold runs/cv/dsb2018-unet-5fold-seed1
        python -m pipeline.bench.accuracy --pooled --cv runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # README, Cross-validation: ten fold models
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --seed 2 --output_dir runs/cv/dsb2018-unet-5fold-invert-seed2
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1 runs/cv/dsb2018-unet-5fold-invert-seed2 --out docs/accuracy.md
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --bright_background_fraction 0.35 --output_dir runs/cv/dsb2018-unet-5fold-bb035
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --bright_background_fraction 0.35 --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-bb035-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-bb035 runs/cv/dsb2018-unet-5fold-bb035-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: oversampling bright-background images
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --roi_size [384,384] --output_dir runs/cv/dsb2018-unet-5fold-roi384
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --roi_size [384,384] --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-roi384-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-roi384 runs/cv/dsb2018-unet-5fold-roi384-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: larger crops
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --loss dicece_boundary --output_dir runs/cv/dsb2018-unet-5fold-boundary
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --loss dicece_boundary --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-boundary-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-boundary runs/cv/dsb2018-unet-5fold-boundary-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: U-Net's border weights
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --inverted_median_to_zero true --output_dir runs/cv/dsb2018-unet-5fold-median0
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --inverted_median_to_zero true --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-median0-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-median0 runs/cv/dsb2018-unet-5fold-median0-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: black background for inverted images
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --width 32 --output_dir runs/cv/dsb2018-unet-5fold-w32
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --width 32 --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-w32-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-w32 runs/cv/dsb2018-unet-5fold-w32-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: twice the network width
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --zoom 2 --seed 0 --output_dir runs/cv/dsb2018-unet-5fold-zoom2
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --zoom 2 --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-zoom2-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-zoom2 runs/cv/dsb2018-unet-5fold-zoom2-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: twice the resolution
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --affine_prob 0.5 --seed 0 --output_dir runs/cv/dsb2018-unet-5fold-affine05
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --affine_prob 0.5 --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-affine05-seed1
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-affine05 runs/cv/dsb2018-unet-5fold-affine05-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: rotation and scale augmentation
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --epochs 200 --seed 0 --output_dir runs/cv/dsb2018-unet-5fold-e200
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --epochs 200 --seed 1 --output_dir runs/cv/dsb2018-unet-5fold-e200-seed1
        python -m monai.bundle run cross_validation --config_file bundles/dsb2018.json --folds 5 --dataset_dir "$DSB" --invert_bright_background true --epochs 200 --seed 2 --output_dir runs/cv/dsb2018-unet-5fold-e200-seed2
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-e200 runs/cv/dsb2018-unet-5fold-e200-seed1 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1  # docs/dsb2018_recipe.md: twice the epochs, two seeds
        python -m pipeline.bench.accuracy --cv runs/cv/dsb2018-unet-5fold-e200 runs/cv/dsb2018-unet-5fold-e200-seed1 runs/cv/dsb2018-unet-5fold-e200-seed2 --against runs/cv/dsb2018-unet-5fold-invert runs/cv/dsb2018-unet-5fold-invert-seed1 runs/cv/dsb2018-unet-5fold-invert-seed2  # docs/dsb2018_recipe.md: twice the epochs, three seeds
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --output_dir runs/cv/lgg-unet-5fold
        # docs/lgg_recipe.md, out-of-fold levers: the thread count. Seed 1 at one thread (0.742 on the 2026-12-05 VM) against two (runs/cv/lgg-unet-5fold-seed1-2threads, 0.733)
        OMP_NUM_THREADS=1 python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --seed 1 --output_dir runs/cv/lgg-unet-5fold-seed1
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --seed 1 --output_dir runs/cv/lgg-unet-5fold-seed1-2threads  # seed 1 at this script's two threads
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --seed 2 --output_dir runs/cv/lgg-unet-5fold-seed2  # seed 2
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold runs/cv/lgg-unet-5fold-seed1-2threads runs/cv/lgg-unet-5fold-seed2 --out docs/accuracy.md
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --epochs 120 --output_dir runs/cv/lgg-unet-5fold-e120
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold-e120 --against runs/cv/lgg-unet-5fold  # docs/lgg_recipe.md, out-of-fold levers: twice the epochs (one run per arm)
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --epochs 120 --seed 1 --output_dir runs/cv/lgg-unet-5fold-e120-seed1  # its second seed
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold-e120-seed1 --against runs/cv/lgg-unet-5fold-seed1-2threads  # docs/lgg_recipe.md, out-of-fold levers: the second seed (one run per arm)
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold-e120 runs/cv/lgg-unet-5fold-e120-seed1 --against runs/cv/lgg-unet-5fold runs/cv/lgg-unet-5fold-seed1-2threads  # docs/lgg_recipe.md, out-of-fold levers: 120 against 60 epochs, two seeds per arm, all four on one VM
        python -m monai.bundle run cross_validation --config_file bundles/lgg.json --folds 5 --dataset_dir "$LGG" --epochs 120 --seed 2 --output_dir runs/cv/lgg-unet-5fold-e120-seed2  # its third seed
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold-e120-seed2 --against runs/cv/lgg-unet-5fold-seed2  # docs/lgg_recipe.md, out-of-fold levers: the third seed (one run per arm)
        python -m pipeline.bench.accuracy --cv runs/cv/lgg-unet-5fold-e120 runs/cv/lgg-unet-5fold-e120-seed1 runs/cv/lgg-unet-5fold-e120-seed2 --against runs/cv/lgg-unet-5fold runs/cv/lgg-unet-5fold-seed1-2threads runs/cv/lgg-unet-5fold-seed2  # docs/lgg_recipe.md, out-of-fold levers: three seeds per arm
        python -m pipeline.bench.accuracy --pooled --cv runs/cv/lgg-unet-5fold runs/cv/lgg-unet-5fold-seed1-2threads  # README, Cross-validation: ten fold models
        # README, NIfTI: kaggle_3m's FLAIR channel as an MSD NIfTI set (outside the project), single slice against 2.5D, one thread each
        [ -d /tmp/lgg_flair_nifti ] || python -m pipeline.bench.lgg_as_nifti --output_dir /tmp/lgg_flair_nifti
        for c in 0 1; do
            OMP_NUM_THREADS=1 python -m monai.bundle run cross_validation --config_file bundles/nifti.json --dataset_dir /tmp/lgg_flair_nifti --context_slices $c --output_dir runs/cv/nifti-lgg-flair-c$c
            for s in 1 2; do
                OMP_NUM_THREADS=1 python -m monai.bundle run cross_validation --config_file bundles/nifti.json --dataset_dir /tmp/lgg_flair_nifti --context_slices $c --seed $s --output_dir runs/cv/nifti-lgg-flair-c$c-seed$s
            done
        done
        python -m pipeline.bench.accuracy --cv runs/cv/nifti-lgg-flair-c1 runs/cv/nifti-lgg-flair-c1-seed1 runs/cv/nifti-lgg-flair-c1-seed2 --against runs/cv/nifti-lgg-flair-c0 runs/cv/nifti-lgg-flair-c0-seed1 runs/cv/nifti-lgg-flair-c0-seed2
        ;;
    curves)  # docs/learning_curve.md and its figures (about 2 h; needs cv: the full points are its folders)
        python -m pipeline.bench.learning_curve --config_file bundles/dsb2018.json --dataset_dir "$DSB" --full runs/cv/dsb2018-unet-5fold-invert --fractions 0.25 0.5 --target 0.86 --out docs/learning_curve.md --invert_bright_background true
        python -m pipeline.bench.learning_curve --config_file bundles/ph2.json --dataset_dir "$PH2" --full runs/cv/ph2-unet-5fold --fractions 0.5 --target 0.88 --out docs/learning_curve.md
        python -m pipeline.bench.learning_curve --config_file bundles/lgg.json --dataset_dir "$LGG" --full runs/cv/lgg-unet-5fold --fractions 0.5 --target 0.78 --out docs/learning_curve.md
        ;;
    new_cases)  # docs/new_cases.md and README's paragraph on new cases (about 75 min for DSB2018, 2 h for PH2, 4 h for LGG on 2 cores)
        python -m pipeline.bench.new_cases --config_file bundles/dsb2018.json --dataset_dir "$DSB" --output_dir runs/new_cases/dsb2018 --out docs/new_cases.md
        python -m pipeline.bench.new_cases --config_file bundles/ph2.json --dataset_dir "$PH2" --output_dir runs/new_cases/ph2 --out docs/new_cases.md
        python -m pipeline.bench.new_cases --config_file bundles/lgg.json --dataset_dir "$LGG" --output_dir runs/new_cases/lgg --out docs/new_cases.md
        ;;
    studies)  # docs/studies/*.md and the README paragraphs that quote them (about 9 h)
        python -m pipeline.bench.study configs/studies/ph2.yaml
        python -m pipeline.bench.study configs/studies/dsb2018.yaml
        python -m pipeline.bench.study configs/studies/dsb2018_seeds.yaml
        python -m pipeline.bench.dsb2018
        python -m pipeline.bench.study configs/studies/lgg.yaml
        python -m pipeline.bench.lgg
        python -m pipeline.bench.study configs/studies/lgg_intensity.yaml
        python -m pipeline.bench.lgg --study runs/studies/lgg_intensity
        python -m pipeline.bench.lgg --intensity_norm patient --out runs/bench_lgg_patient --study runs/studies/lgg_intensity
        ;;
    recipes)  # docs/ph2_recipe.md and docs/lgg_recipe.md's post-processing table (about 2 h; needs studies)
        bash docs/ph2_recipe.sh unet150_s256 --image_size 256 --epochs 150
        bash docs/ph2_recipe.sh unet150_s256_hairs --image_size 256 --epochs 150 --hair_prob 0.5
        bash docs/ph2_recipe.sh unet150_full --image_size 0 --epochs 150
        bash docs/ph2_recipe.sh resunet120 --image_size 384 --network resunet --epochs 120
        python -m monai.bundle run evaluate --config_file bundles/ph2.json --dataset_dir "$PH2" --ckpt runs/recipe/resunet120/models/best.pt \
            --split val --flip_tta true --override_recorded true --output_dir runs/recipe/resunet120/val_flip_tta  # its "+ flip TTA" row
        bash docs/ph2_recipe.sh unet150 --image_size 384 --epochs 150
        bash docs/ph2_recipe.sh unet60 --image_size 384 --epochs 60
        bash docs/lgg_postprocessing.sh val
        bash docs/lgg_postprocessing.sh test
        ;;
    performance)  # docs/performance.md, docs/networks.md and README, Performance (about 2 h; needs results)
        python -m pipeline.bench.speed --rounds 3 --epochs 5 --networks unet segnet --ckpt runs/final/ph2/models/best.pt
        python -m pipeline.bench.speed --rounds 5 --epochs 5 --networks unet --json runs/bench_unet_rounds.json  # the second run
        python -m pipeline.bench.speed --rounds 1 --epochs 2 --networks unet --json runs/bench_faults.json  # faults_per_image
        python -m monai.bundle run training --config_file bundles/ph2.json --dataset_dir "$PH2" --retain_freed_memory false \
            --output_dir runs/final/ph2-default-allocator  # the switch on README's PH2 run (its wall time against runs/final/ph2's)
        rm -rf data/synthetic && time python -m monai.bundle run training --config_file bundles/ph2.json \
            --output_dir runs/synthetic-first-run  # README: the synthetic first run, sample generation included
        python -m pipeline.bench.speed --interleaved --epochs 10 --networks unet segnet --json runs/bench_interleaved.json
        python -m pipeline.bench.speed --only_time_to_quality --rounds 2 --networks unet --json runs/bench_ttq_rounds.json
        python -m pipeline.bench.speed --levers --networks unet segnet
        python -m pipeline.bench.speed --epochs 3 --networks unet segnet --engine_overrides '{"channels_last": true}' --json runs/bench_channels_last.json
        python -m pipeline.bench.speed --scaling --networks unet --json runs/bench_scaling.json
        python -m pipeline.bench.profile --width 16
        OMP_NUM_THREADS=1 python -m pipeline.bench.postprocessing
        python -m pipeline.bench.ddp_memory --dataset_dir "$PH2" --out runs/bench_ddp_memory
        ;;
    gallery)  # README's failure-gallery screenshot, docs/gallery.jpg (about 2 min; needs apt chromium + pip playwright)
        python -m monai.bundle run training --config_file bundles/ph2.json --dataset_dir "$PH2" --epochs 20 \
            --image_size 128 --roi_size [128,128] --output_dir runs/gallery/ph2
        python -m monai.bundle run evaluate --config_file bundles/ph2.json --ckpt runs/gallery/ph2/models/best.pt \
            --gallery_cases 6 --output_dir runs/gallery/ph2/eval-test
        python -m pipeline.gallery runs/gallery/ph2/eval-test/gallery/index.html --screenshot runs/gallery/ph2.png
        python -c "from PIL import Image; Image.open('runs/gallery/ph2.png').convert('RGB').save('docs/gallery.jpg', quality=85, optimize=True)"
        ;;
    *) echo "unknown section $section (results cv curves new_cases studies recipes performance gallery)" >&2; exit 2 ;;
    esac
done
