"""Cross-validation as a workflow: k fold models over all the data, their out-of-fold predictions, the inference
choices made on those predictions, and a folder that ``evaluate`` and ``inference`` take as one ensemble model.

    python -m monai.bundle run cross_validation --config_file bundles/ph2.json --folds 5 --output_dir runs/ph2-cv
    python -m monai.bundle run inference --config_file bundles/ph2.json --ckpt runs/ph2-cv --input_dir new/

Every case is in the test side of exactly one fold (case-level folds; patient-level where cases have a group: LGG,
NIfTI; :func:`pipeline.data.splits.assign`); each fold trains on the rest, validating on ``val_fraction`` of its own
training side. A fold is an ordinary training run in ``<cv>/fold_<k>/`` (``python -m monai.bundle run training
--folds K --fold k``, a subprocess, its log in ``train.log``), so a rerun with the same ``--output_dir`` skips the
finished folds and resumes a killed one from its ``last.pt``.

Each fold model then predicts its own test fold (out-of-fold) with ``best.pt`` and ``last.pt``, flip test-time
augmentation off and on (then 90-degree rotations on top of the chosen pair), keeping the foreground probability
(``<cv>/fold_<k>/oof-<ckpt>-tta<0|1>[-rot90]/probabilities``). On these out-of-fold probabilities, one setting at a
time and in this order, each choice is kept only where it raises the out-of-fold mean of the bundle's key metric
(per image IoU; per patient volume Dice with ``group_metrics``) by more than ``MIN_GAIN``: the checkpoint
(``best.pt`` unless ``last.pt`` scores higher), flip TTA, rot90 TTA, the threshold, the minimum object size,
keeping the largest component, filling holes, and for volumes keeping the largest 3D component of each patient
(``volume_largest_component``). Post-processing is the engines' own
(:func:`pipeline.transforms.lesion_postprocessing`). ``<cv>/crossval.json`` records the folds, every trial (mean,
paired bootstrap CI of the change, kept or not), the chosen settings and the out-of-fold score with the chosen
settings (mean, median, n and bootstrap CI); ensemble inference applies the chosen settings without flags.
``<cv>/oof/`` holds the out-of-fold probability and mask of every case under the chosen settings.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CV_FILE = "crossval.json"
DEFAULT_FOLDS = 5
# what a fold run must not inherit from the cross-validation command (the driver sets or controls them)
NOT_FORWARDED = ("folds", "fold", "ckpt", "split", "input_dir", "resume", "override_recorded", "save_probabilities",
                 "output_dir")
# recorded settings that change neither what a fold learns nor how it is scored
NOT_COMPARED = (*NOT_FORWARDED, "bundle_file", "bundle_name", "default_dataset_dir", "synthetic_dir", "cache",
                "cache_dir", "cache_workers", "retain_freed_memory", "gallery_cases")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (0, 16, 64, 256, 1024)
# the settings cross-validation chooses and ensemble inference applies, and where the choices start (what "none
# chosen" means): no TTA, threshold 0.5, no post-processing; the volume's largest component only for grouped data
# (patients)
START = {"checkpoint": "best.pt", "flip_tta": False, "rot90_tta": False, "threshold": 0.5, "min_lesion_size": 0,
         "keep_largest_component": False, "fill_holes": False, "volume_largest_component": False}
POSTPROCESSING = ("threshold", "min_lesion_size", "keep_largest_component", "fill_holes", "volume_largest_component")
# A smaller rise of the out-of-fold mean is a tie, and a tie keeps the setting in place: one LGG cross-validation kept
# the largest 3D component for +0.0000075 while it moved single patients by up to 0.3 either way (paired CI
# -0.06..+0.04); a choice should not turn on the last digits. Every other setting kept in this project's
# cross-validations rose by more than 1e-4.
MIN_GAIN = 1e-4


def is_folder(path) -> bool:
    return path is not None and str(path) != "" and Path(str(path)).is_dir() and (Path(str(path)) / CV_FILE).is_file()


def read(folder) -> dict:
    return json.loads((Path(folder) / CV_FILE).read_text())


def members(ckpt) -> list[Path] | None:
    """The checkpoints an ensemble ``--ckpt`` names: a cross-validation folder (its folds' chosen checkpoints), or a
    list of checkpoint files (a Python list, or paths separated by commas: ``--ckpt a/models/best.pt,b/models/best.pt``).
    None for one checkpoint (or none)."""
    if is_folder(ckpt):
        return fold_checkpoints(ckpt)
    if isinstance(ckpt, (list, tuple)):
        paths = [str(p) for p in ckpt]
    elif isinstance(ckpt, str) and "," in ckpt:
        paths = [p.strip() for p in ckpt.split(",") if p.strip()]
    else:
        return None
    missing = [p for p in paths if not Path(p).is_file()]
    if missing or not paths:
        raise SystemExit(f"error: --ckpt {ckpt}: an ensemble of checkpoint files, but no such file: {missing}")
    return [Path(p) for p in paths]


def is_ensemble(ckpt) -> bool:
    return members(ckpt) is not None


def fold_checkpoints(folder) -> list[Path]:
    """The chosen checkpoint of every fold of a finished cross-validation folder."""
    doc = read(folder)
    if "chosen" not in doc:
        raise SystemExit(f"error: {Path(folder) / CV_FILE}: the cross-validation has not finished (no chosen "
                         "settings yet); run it again with the same --output_dir to complete it")
    paths = [Path(folder) / f"fold_{k}" / "models" / doc["chosen"]["checkpoint"] for k in range(doc["folds"])]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"error: {folder}: missing fold checkpoints {missing}")
    return paths


def record(folder) -> tuple[Path, dict]:
    """The training record of fold 0 (every fold was trained with the same settings) and the settings chosen
    out-of-fold, for :func:`pipeline.runs.resolve`; for a list of checkpoints, the first one's training record,
    after checking that every member was trained with the same model settings."""
    if not is_folder(folder):
        return _list_record(members(folder))
    doc = read(folder)
    chosen = {k: v for k, v in doc.get("chosen", {}).items() if k != "checkpoint"}
    path = Path(folder) / "fold_0" / "config.json"
    hyper = json.loads(path.read_text()).get("hyperparameters") or {}
    return Path(folder) / CV_FILE, {**hyper, **chosen}


def _list_record(paths: list[Path]) -> tuple[Path, dict]:
    from .runs import MODEL_SETTINGS, find_record

    records = []
    for p in paths:
        rec = find_record(p)
        if rec is None:
            raise SystemExit(f"error: --ckpt member {p} is not inside a training run folder (no config.json beside "
                             "it): an ensemble needs each member's run record to know how it was trained")
        records.append((rec, json.loads(rec.read_text()).get("hyperparameters") or {}))
    first, hyper = records[0]
    for rec, other in records[1:]:
        differ = [k for k in MODEL_SETTINGS if hyper.get(k) != other.get(k)]
        if differ:
            raise SystemExit(f"error: --ckpt members {first} and {rec} were trained with different model settings "
                             f"({', '.join(f'{k}: {hyper.get(k)!r} vs {other.get(k)!r}' for k in differ)}); an "
                             "ensemble averages models that read and post-process images the same way")
    return first, hyper


def seen_cases(ckpt) -> set[str] | None:
    """Case ids any member of a list-of-checkpoints ensemble trained or validated on (from each run's
    ``splits.json``); None when a member's run has none."""
    seen: set[str] = set()
    for p in members(ckpt) or []:
        saved = Path(p).resolve().parent.parent / "splits.json"
        if not saved.is_file():
            return None
        doc = json.loads(saved.read_text())
        seen |= set(doc["train"]) | set(doc["val"])
    return seen


# ---------------------------------------------------------------------------------------------------- the workflow

def run(bundle_file: str, settings: dict, output_dir: str) -> dict:
    """Train the folds that are not finished, predict out-of-fold, choose and record. Returns the record."""
    from .runs import _overrides

    folds = int(settings.get("folds") or 0) or DEFAULT_FOLDS
    if folds < 2:
        raise SystemExit(f"error: --folds {folds}: cross-validation needs at least 2 folds")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {k: v for k, v in _overrides(settings, bundle_file).items() if k not in NOT_FORWARDED}
    doc = read(out) if (out / CV_FILE).is_file() else {}
    if doc:
        check_resumable(out, doc, folds, overrides, settings)
    previous = doc.get("chosen")
    doc = {"bundle_file": bundle_file, "folds": folds, "overrides": _jsonable(overrides), "fold_runs": {}}
    _write(out, doc)
    for k in range(folds):
        doc["fold_runs"][str(k)] = _train_fold(bundle_file, out / f"fold_{k}", folds, k, overrides)
        _write(out, doc)
    key, grouped = settings.get("key_metric", "val_iou"), bool(_as_bool(settings.get("group_metrics", False)))

    def variant(ckpt: str, flip: bool, rot90: bool) -> list[Path]:
        return [_predict_oof(bundle_file, out / f"fold_{k}", ckpt, flip, rot90) for k in range(folds)]

    doc.update(choose(variant, grouped=grouped, key_metric=key))
    if previous and previous != doc["chosen"]:  # the same predictions, another rule (MIN_GAIN) or a changed fold
        logger.warning("%s: the choices differ from the folder's earlier record: %s", out, ", ".join(
            f"{k} {previous.get(k)} -> {v}" for k, v in doc["chosen"].items() if previous.get(k) != v))
    c = doc["chosen"]
    _write_oof(out, variant(c["checkpoint"], c["flip_tta"], c["rot90_tta"]), c)
    _write(out, doc)
    s = doc["oof_score"]
    logger.info("cross-validation %s: out-of-fold %s mean %.4f median %.4f (n %d, 95%% CI %.4f..%.4f); chosen %s",
                out, s["metric"], s["mean"], s["median"], s["n"], s["ci"][0], s["ci"][1], doc["chosen"])
    logger.info("ensemble inference: python -m monai.bundle run inference --config_file %s --ckpt %s --input_dir "
                "<images>", bundle_file, out)
    return doc


def settings_differ(recorded: dict, settings: dict, ignore=()) -> list[str]:
    """The settings both hold whose values differ, leaving out :data:`NOT_COMPARED` and ``ignore``."""
    from .runs import _same

    return sorted(k for k in settings.keys() & recorded.keys()
                  if k not in NOT_COMPARED and k not in ignore and not _same(settings[k], recorded[k]))


def check_resumable(out: Path, doc: dict, folds: int, overrides: dict, settings: dict) -> None:
    """A folder is continued only with the settings its folds were trained with, compared as values with fold 0's
    record where there is one: a default changed in the bundle file since is refused unless the command pins the
    old value, and pinning it continues the folder (its overrides are then restated against today's file)."""
    record = out / "fold_0" / "config.json"
    if doc.get("folds") != folds:
        detail = f"folds={doc.get('folds')}; this command asks for folds={folds}"
    elif record.is_file():
        hyper = json.loads(record.read_text()).get("hyperparameters", {})
        differ = settings_differ(hyper, settings)
        if not differ:
            return
        detail = "settings " + ", ".join(f"{k}={hyper[k]!r} (this command: {settings[k]!r})" for k in differ)
    elif doc.get("overrides") == _jsonable(overrides):
        return
    else:
        detail = f"overrides {doc.get('overrides')}; this command asks for {_jsonable(overrides)}"
    raise SystemExit(f"error: {out} holds a cross-validation with {detail}. Give another --output_dir, or the same "
                     "settings to continue it")


def _as_bool(v) -> bool:
    from .runs import as_bool

    return as_bool(v, "group_metrics")


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _write(out: Path, doc: dict) -> None:
    from .runs import write_json

    write_json(out / CV_FILE, doc)


def cli_args(overrides: dict) -> list[str]:
    """``--key value`` pairs as ``python -m monai.bundle`` (fire) parses them back into the same Python values."""
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return args


def _train_fold(bundle_file: str, folder: Path, folds: int, fold: int, overrides: dict) -> str:
    """Bring one fold's training run to completion: skipped when finished, resumed from ``last.pt`` when killed,
    started again when killed before its first checkpoint."""
    metrics = folder / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("completed") is True:
        return "done"
    resume = (folder / "models" / "last.pt").is_file()
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", bundle_file, "--folds",
           str(folds), "--fold", str(fold), "--output_dir", str(folder), *cli_args(overrides),
           *(["--resume", "true"] if resume else [])]
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("fold %d of %d: training (%s), log %s", fold, folds, "resuming" if resume else "new",
                folder / "train.log")
    with open(folder / "train.log", "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ}).returncode
    if rc != 0:
        tail = "".join((folder / "train.log").read_text().splitlines(keepends=True)[-5:])
        raise SystemExit(f"error: fold {fold} training failed (exit {rc}); see {folder / 'train.log'}:\n{tail}")
    return "trained"


def oof_name(ckpt: str, flip: bool, rot90: bool = False) -> str:
    """The folder, in ``fold_<k>/``, of one prediction variant's out-of-fold probabilities."""
    return f"oof-{Path(ckpt).stem}-tta{int(flip)}{'-rot90' if rot90 else ''}"


def _predict_oof(bundle_file: str, fold_dir: Path, ckpt: str, flip: bool, rot90: bool = False) -> Path:
    """The fold model's probabilities on its own test fold (in process: one evaluation is seconds of work next to
    the interpreter start of a subprocess)."""
    out = fold_dir / oof_name(ckpt, flip, rot90)
    if (out / "metrics.json").is_file() and (out / "probabilities" / "index.csv").is_file():
        return out
    from monai.bundle import ConfigWorkflow

    logger.info("%s: out-of-fold predictions with %s, flip TTA %s, rot90 TTA %s", fold_dir.name, ckpt,
                "on" if flip else "off", "on" if rot90 else "off")
    wf = ConfigWorkflow(config_file=bundle_file, workflow_type=None, run_id="evaluate", logging_file=False,
                        ckpt=str(fold_dir / "models" / ckpt), split="test", output_dir=str(out),
                        save_probabilities=True)
    wf.initialize()
    # TTA set on the inferer itself: --flip_tta on the command line would be checked against the fold's record
    wf.parser["validate#inferer#enabled"] = flip
    wf.parser["validate#inferer#rot90"] = rot90
    wf.run()
    wf.finalize()
    return out


# ------------------------------------------------------------------------------------------------------ the choices

def load_predictions(folders: list[Path]) -> list[dict]:
    """Every case of evaluation folders written with ``--save_probabilities true``: its 8-bit probability, truth,
    group and slice."""
    from PIL import Image

    cases = []
    for folder in folders:
        for row in _rows(folder):
            cid = row["case_id"]
            cases.append({"case_id": cid, "group": row["group"], "slice": row["slice"], "folder": folder,
                          "prob": np.asarray(Image.open(folder / "probabilities" / f"{cid}.png")),
                          "truth": np.asarray(Image.open(folder / "truth" / f"{cid}.png")) > 0})
    return cases


def apply(prob_u8: np.ndarray, threshold: float, min_lesion_size: int = 0, keep_largest_component: bool = False,
          fill_holes: bool = False) -> np.ndarray:
    """The engines' threshold and post-processing on an 8-bit probability (``AsDiscreted``: ``p >= threshold``)."""
    import torch

    from .transforms import lesion_postprocessing

    mask = torch.from_numpy((prob_u8.astype(np.float32) / 255.0 >= threshold)[None].astype(np.float32))
    d = {"pred": mask}
    for t in lesion_postprocessing(min_lesion_size, keep_largest_component, fill_holes):
        d = t(d)
    p = d["pred"]
    return (p.numpy() if hasattr(p, "numpy") else np.asarray(p))[0] > 0


def _largest_in_volume(cases: list[dict], masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each patient's slice masks stacked in slice order, only the largest 3D component kept (the engines' own
    :func:`pipeline.handlers.volumes.largest_in_volumes`)."""
    from .handlers.volumes import largest_in_volumes

    items = [{"i": i, "group": c["group"], "slice": int(c["slice"]) if str(c["slice"]).strip() else None, "mask": m}
             for i, (c, m) in enumerate(zip(cases, masks))]
    out = list(masks)
    for item in largest_in_volumes(items):
        out[item["i"]] = item["mask"]
    return out


def post_masks(cases: list[dict], settings: dict) -> list[np.ndarray]:
    """The masks of saved probabilities (:func:`load_predictions`) after the threshold and post-processing of
    ``settings`` (the keys of :data:`START` but the checkpoint and TTA), as the engines apply them."""
    masks = [apply(c["prob"], settings["threshold"], settings["min_lesion_size"], settings["keep_largest_component"],
                   settings["fill_holes"]) for c in cases]
    return _largest_in_volume(cases, masks) if settings.get("volume_largest_component") else masks


def post_scores(cases: list[dict], settings: dict, grouped: bool) -> dict[str, float]:
    """Per-unit scores of :func:`post_masks` (per image, or per group volume when ``grouped``)."""
    return _scores(cases, post_masks(cases, settings), grouped)


def _scores(cases: list[dict], masks: list[np.ndarray], grouped: bool) -> dict[str, float]:
    """Per unit: IoU per image (empty vs empty = 1), or Dice per group volume (:func:`pipeline.metrics`)."""
    from . import metrics as M

    if not grouped:
        out = {}
        for c, m in zip(cases, masks):
            inter, union = np.count_nonzero(m & c["truth"]), np.count_nonzero(m | c["truth"])
            out[c["case_id"]] = 1.0 if union == 0 else inter / union
        return out
    counts: dict[str, np.ndarray] = {}
    for c, m in zip(cases, masks):
        counts.setdefault(c["group"], np.zeros(3))[:] += (np.count_nonzero(m & c["truth"]), np.count_nonzero(m),
                                                          np.count_nonzero(c["truth"]))
    return {g: float(M.dice_from_counts(*v)) for g, v in counts.items()}


def choose(variants, grouped: bool, key_metric: str = "val_iou") -> dict:
    """The choices, one setting at a time, each kept only where it raises the out-of-fold mean by more than
    ``MIN_GAIN`` (over the setting in place and over the other values tried for it).

    ``variants(checkpoint, flip_tta, rot90_tta)`` gives the out-of-fold folders of that prediction (called only for
    the variants a choice needs: rot90 TTA is tried on the chosen checkpoint and flip setting); a mapping from those
    triples works too, a missing one skipping its trial."""
    from .bench.stats import bootstrap_ci, paired_difference

    get = variants if callable(variants) else (lambda *key: variants.get(key))
    loaded: dict[tuple, list[dict] | None] = {}

    def cases_of(s: dict) -> list[dict] | None:
        key = (s["checkpoint"], s["flip_tta"], s["rot90_tta"])
        if key not in loaded:
            folders = get(*key)
            loaded[key] = None if folders is None else load_predictions(folders)
        return loaded[key]

    current = dict(START) if grouped else {k: v for k, v in START.items() if k != "volume_largest_component"}

    def score(s: dict) -> dict[str, float] | None:
        cases = cases_of(s)
        return None if cases is None else post_scores(cases, s, grouped)

    candidates = [("checkpoint", ["last.pt"]), ("flip_tta", [True]), ("rot90_tta", [True]), ("threshold", [t for t in THRESHOLDS if t != 0.5]),
                  ("min_lesion_size", [m for m in MIN_SIZES if m]), ("keep_largest_component", [True]),
                  ("fill_holes", [True])] + ([("volume_largest_component", [True])] if grouped else [])
    base = score(current)
    trials = []
    for name, values in candidates:
        best_value, best_scores = None, base
        for value in values:
            s = score({**current, name: value})
            if s is None:
                continue
            diff = paired_difference(s, base)
            kept = float(np.mean(list(s.values()))) > float(np.mean(list(best_scores.values()))) + MIN_GAIN
            trials.append({"setting": name, "value": value, "from": current[name],
                           "oof_mean": float(np.mean(list(s.values()))), "change": diff["mean"],
                           "change_ci": diff["ci"], "better_units": diff["better"], "n": diff["n"]})
            if kept:
                best_value, best_scores = value, s
        if best_value is not None:
            current[name], base = best_value, best_scores
        for t in trials:
            if t["setting"] == name:
                t["kept"] = best_value is not None and t["value"] == best_value
    values = list(base.values())
    metric = "volume_dice" if grouped else "iou"
    return {"chosen": current, "trials": trials, "key_metric": key_metric, "min_gain": MIN_GAIN,
            "oof_score": {"metric": metric, "unit": "patient" if grouped else "image", "n": len(values),
                          "mean": float(np.mean(values)), "median": float(np.median(values)),
                          "ci": list(bootstrap_ci(values)), "per_unit": dict(sorted(base.items()))}}


def _write_oof(out: Path, folders: list[Path], chosen: dict) -> None:
    """``<cv>/oof/probabilities/<case>.png`` and ``<cv>/oof/masks/<case>.png`` of every case, with the chosen
    settings (the masks are what the out-of-fold score counts)."""
    import shutil

    from PIL import Image

    for sub in ("probabilities", "masks"):
        (out / "oof" / sub).mkdir(parents=True, exist_ok=True)
    cases = load_predictions(folders)
    for c, mask in zip(cases, post_masks(cases, chosen)):
        shutil.copyfile(c["folder"] / "probabilities" / f"{c['case_id']}.png",
                        out / "oof" / "probabilities" / f"{c['case_id']}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "oof" / "masks" / f"{c['case_id']}.png")


def _rows(folder: Path) -> list[dict]:
    return list(csv.DictReader(open(folder / "probabilities" / "index.csv")))
