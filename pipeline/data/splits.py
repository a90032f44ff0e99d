"""Train / validation / test splits that are fixed per case (or per patient) and stable as a dataset grows.

Each group id is hashed with the seed to a number ``u`` in [0, 1); ``u < test`` goes to test, ``u < test + val`` to
validation, the rest to training. A group's side therefore depends only on its own id and the seed: adding or
removing other cases never moves it, and all slices of a patient (one group) stay on one side.

Cross-validation (``folds`` >= 2): the groups, ordered by ``u``, are dealt round-robin into ``folds`` folds of
near-equal size; fold ``fold`` is the test side, and ``val_fraction`` of the remaining groups (those first in a second
seeded order) the validation side. Every group is tested exactly once over the folds (``test_fraction`` is unused).

``train_fraction`` < 1 keeps only that fraction of the training groups (those first in a third seeded order; at least
one) and leaves the rest out of every side: the validation and test sides do not move, so runs with several fractions
are scored on the same cases (a learning curve, ``python -m pipeline.bench.learning_curve``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SPLITS = ("train", "val", "test")


def group_u(group: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(cases: list[dict], val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0, folds: int = 0,
           fold: int = 0, train_fraction: float = 1.0) -> dict:
    """Split ``cases`` (dicts with ``group``, else ``case_id``) into ``{"train": [...], "val": [...], "test": [...]}``.

    With three or more groups no side is left empty: a tiny set whose hashes leave one empty moves there the group of
    the largest side whose ``u`` lies nearest the empty side's interval (deterministic, and irrelevant for sets of
    realistic size).
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val={val_fraction}, test={test_fraction} (each in [0, 1), sum < 1)")
    if not 0 < float(train_fraction) <= 1:
        raise ValueError(f"bad train_fraction {train_fraction}: the share of the training side to keep, in (0, 1]")
    groups = sorted({str(c.get("group", c["case_id"])) for c in cases})
    u = {g: group_u(g, seed) for g in groups}
    if folds:
        side = _fold_sides(groups, u, val_fraction, seed, folds, fold)
    else:
        side = _sides(groups, u, val_fraction, test_fraction)
    if float(train_fraction) < 1:
        train = sorted((g for g in groups if side[g] == "train"), key=lambda g: group_u(g, seed + 2))
        for g in train[max(1, round(float(train_fraction) * len(train))):]:
            side[g] = "unused"
    return _by_side(cases, side)


def _sides(groups: list[str], u: dict, val_fraction: float, test_fraction: float) -> dict:
    side = {g: "test" if u[g] < test_fraction else "val" if u[g] < test_fraction + val_fraction else "train"
            for g in groups}
    if len(groups) >= 3:
        centres = {"test": test_fraction / 2, "val": test_fraction + val_fraction / 2,
                   "train": (1 + test_fraction + val_fraction) / 2}
        for name in ("train", "test", "val"):
            if (name == "train" or centres[name] > 0) and name not in side.values():
                sizes = {k: sum(v == k for v in side.values()) for k in centres}
                donor = max(sizes, key=sizes.get)
                side[min((g for g in groups if side[g] == donor), key=lambda g: abs(u[g] - centres[name]))] = name
    return side


def _fold_sides(groups: list[str], u: dict, val_fraction: float, seed: int, folds: int, fold: int) -> dict:
    if not isinstance(folds, int) or folds < 2 or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"cross-validation needs folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
    if len(groups) < folds + 2:
        raise ValueError(f"{len(groups)} groups are too few for {folds} folds with a validation side")
    ranked = sorted(groups, key=u.get)
    test = set(ranked[fold::folds])
    rest = sorted((g for g in groups if g not in test), key=lambda g: group_u(g, seed + 1))
    val = set(rest[:max(1, round(val_fraction * len(rest)))])
    return {g: "test" if g in test else "val" if g in val else "train" for g in groups}


def _by_side(cases: list[dict], side: dict) -> dict:
    out: dict[str, list] = {s: [] for s in SPLITS}
    for c in cases:
        name = side[str(c.get("group", c["case_id"]))]
        if name in out:
            out[name].append(c)
    return out


def select(cases: list[dict], split: str, **kwargs) -> list[dict]:
    """The cases of one split (``train``, ``val``, ``test``), or all of them with ``split="all"``."""
    if split == "all":
        return list(cases)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {[*SPLITS, 'all']}")
    return assign(cases, **kwargs)[split]


def save(splits: dict, path: str | Path, **params) -> None:
    """Write the case ids and groups of each split (and the parameters that made them) to ``path`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"params": params, **{s: sorted(c["case_id"] for c in splits[s]) for s in SPLITS},
           "groups": {s: sorted({str(c.get("group", c["case_id"])) for c in splits[s]}) for s in SPLITS}}
    path.write_text(json.dumps(doc, indent=1))


def select_for_checkpoint(cases: list[dict], split: str, ckpt: str | None = None, **kwargs) -> list[dict]:
    """The cases of ``split`` as the checkpoint's own training run saw them: when ``ckpt`` sits in a run folder
    (``<run>/models/*.pt``) with a ``splits.json``, its case ids are used (so changed split settings cannot move a
    training case into the evaluated split); otherwise the split is rebuilt from ``kwargs`` as in :func:`assign`."""
    import logging

    from .. import crossval

    log = logging.getLogger(__name__)
    if crossval.is_ensemble(ckpt) and not crossval.is_folder(ckpt):
        seen = crossval.seen_cases(ckpt)
        chosen = select(cases, split, **kwargs)
        if seen is None:
            log.warning("--ckpt %s: a member has no splits.json; the %s split is rebuilt from the settings and may "
                        "hold cases a member trained on", ckpt, split)
            return chosen
        kept = [c for c in chosen if c["case_id"] not in seen]
        log.info("%s split: %d cases, %d of them left out because an ensemble member trained or validated on them",
                 split, len(kept), len(chosen) - len(kept))
        if not kept:
            raise ValueError(f"every {split} case was seen in training by a member of --ckpt {ckpt}; evaluate the "
                             "ensemble on other data (--dataset_dir) with --split all")
        return kept
    if ckpt and Path(ckpt).is_dir():
        log.warning("--ckpt %s is a cross-validation folder: its fold models together trained on every case of the "
                    "data they were cross-validated on; score the ensemble on other cases only (its honest score on "
                    "those is the out-of-fold one in crossval.json)", ckpt)
        return select(cases, split, **kwargs)
    saved = Path(ckpt).resolve().parent.parent / "splits.json" if ckpt else None
    if split == "all" or saved is None or not saved.is_file():
        return select(cases, split, **kwargs)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {[*SPLITS, 'all']}")
    doc = json.loads(saved.read_text())
    # by group (patient, volume) where recorded: a split is made of groups, and case ids of slices depend on how a
    # volume is sliced
    key, ids = ("group", set(doc["groups"][split])) if "groups" in doc else ("case_id", set(doc[split]))
    chosen = [c for c in cases if str(c.get(key, c["case_id"])) in ids]
    missing = len(ids - {str(c.get(key, c["case_id"])) for c in chosen})
    unit = "patients / volumes" if key == "group" else "cases"
    log.info("%s split: %d cases from %s%s", split, len(chosen), saved,
             f" ({missing} of its {unit} are not in this dataset)" if missing else "")
    if not chosen:
        raise ValueError(f"none of the {len(ids)} {split} cases listed in {saved} is in this dataset; "
                         "pass --split all to score every case of it")
    return chosen
