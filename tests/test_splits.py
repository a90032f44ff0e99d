import pytest

from pipeline.data import splits


def make(n, prefix="C", per_group=1):
    return [{"case_id": f"{prefix}{i:04d}_{k}", "group": f"{prefix}{i:04d}"} for i in range(n) for k in range(per_group)]


def ids(split):
    return {s: sorted(c["case_id"] for c in split[s]) for s in splits.SPLITS}


def test_disjoint_and_complete():
    cases = make(200)
    out = splits.assign(cases, val_fraction=0.15, test_fraction=0.2, seed=0)
    all_ids = [c["case_id"] for s in splits.SPLITS for c in out[s]]
    assert sorted(all_ids) == sorted(c["case_id"] for c in cases)
    assert len(set(all_ids)) == len(all_ids)


def test_fractions_roughly_respected():
    out = splits.assign(make(2000), val_fraction=0.15, test_fraction=0.2, seed=1)
    assert abs(len(out["test"]) / 2000 - 0.2) < 0.03
    assert abs(len(out["val"]) / 2000 - 0.15) < 0.03


def test_stable_when_cases_are_added_or_removed():
    base = make(100)
    before = splits.assign(base, seed=7)
    after = splits.assign(base[::2] + make(50, prefix="N"), seed=7)
    side = {c["case_id"]: s for s in splits.SPLITS for c in before[s]}
    for s in splits.SPLITS:
        for c in after[s]:
            if c["case_id"] in side:
                assert side[c["case_id"]] == s


def test_seeded_and_deterministic():
    cases = make(100)
    assert ids(splits.assign(cases, seed=3)) == ids(splits.assign(list(reversed(cases)), seed=3))
    assert ids(splits.assign(cases, seed=3)) != ids(splits.assign(cases, seed=4))


def test_groups_never_straddle_splits():
    out = splits.assign(make(40, per_group=5), seed=0)
    groups = {s: {c["group"] for c in out[s]} for s in splits.SPLITS}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])


@pytest.mark.parametrize("n", [3, 4, 6, 10])
def test_tiny_sets_keep_val_and_test_non_empty(n):
    for seed in range(20):
        out = splits.assign(make(n), seed=seed)
        assert out["val"] and out["test"] and out["train"], (n, seed)
        assert sum(len(v) for v in out.values()) == n


def test_select_and_errors(tmp_path):
    cases = make(30)
    assert splits.select(cases, "all") == cases
    assert splits.select(cases, "test", seed=2) == splits.assign(cases, seed=2)["test"]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        splits.select(cases, "dev")
    with pytest.raises(ValueError, match="bad split fractions"):
        splits.assign(cases, val_fraction=0.6, test_fraction=0.5)
    splits.save(splits.assign(cases), tmp_path / "splits.json", seed=0)
    import json

    doc = json.loads((tmp_path / "splits.json").read_text())
    assert doc["params"] == {"seed": 0} and sum(len(doc[s]) for s in splits.SPLITS) == 30


def test_select_for_checkpoint_uses_the_runs_splits(tmp_path):
    cases = make(40)
    (tmp_path / "run" / "models").mkdir(parents=True)
    ckpt = tmp_path / "run" / "models" / "best.pt"
    saved = splits.assign(cases, seed=0)
    splits.save(saved, tmp_path / "run" / "splits.json", seed=0)
    # other split settings now: the run's own test cases are still the ones evaluated
    assert splits.select_for_checkpoint(cases, "test", str(ckpt), seed=5) == saved["test"]
    assert splits.select_for_checkpoint(cases, "test", None, seed=5) == splits.assign(cases, seed=5)["test"]
    assert splits.select_for_checkpoint(cases, "all", str(ckpt)) == cases
    with pytest.raises(ValueError, match="none of the .* test cases listed"):
        splits.select_for_checkpoint(make(5, prefix="X"), "test", str(ckpt))


def test_cross_validation_folds_test_every_group_once():
    cases = [{"case_id": f"p{i}_{j}", "group": f"p{i}"} for i in range(16) for j in range(3)]
    tested = []
    for fold in range(4):
        s = splits.assign(cases, val_fraction=0.2, seed=3, folds=4, fold=fold)
        groups = {k: {c["group"] for c in v} for k, v in s.items()}
        assert len(groups["test"]) == 4 and len(groups["val"]) == 2 and len(groups["train"]) == 10
        assert not (groups["test"] & groups["val"]) and not (groups["train"] & (groups["test"] | groups["val"]))
        tested += groups["test"]
    assert sorted(tested) == sorted({c["group"] for c in cases})  # each patient tested exactly once
    assert splits.assign(cases, seed=3, folds=4, fold=1) == splits.assign(cases, seed=3, folds=4, fold=1)
    assert splits.assign(cases, seed=4, folds=4, fold=1)["test"] != splits.assign(cases, seed=3, folds=4, fold=1)["test"]


@pytest.mark.parametrize("folds, fold", [(1, 0), (4, 4), (4, -1)])
def test_bad_fold_settings(folds, fold):
    cases = [{"case_id": f"c{i}"} for i in range(20)]
    with pytest.raises(ValueError, match="folds"):
        splits.assign(cases, folds=folds, fold=fold)


@pytest.mark.parametrize("folds", [0, 5])
def test_train_fraction_keeps_nested_whole_groups_and_moves_no_other_side(folds):
    cases = make(60, per_group=3)
    full = splits.assign(cases, seed=2, folds=folds, fold=1 if folds else 0)
    groups = {f: {c["group"] for c in splits.assign(cases, seed=2, folds=folds, fold=1 if folds else 0,
                                                       train_fraction=f)["train"]} for f in (0.25, 0.5, 1.0)}
    n = len({c["group"] for c in full["train"]})
    assert [len(groups[f]) for f in (0.25, 0.5, 1.0)] == [round(0.25 * n), round(0.5 * n), n]
    assert groups[0.25] < groups[0.5] < groups[1.0]  # nested, so a learning curve only ever adds cases
    for f in (0.25, 0.5):
        part = splits.assign(cases, seed=2, folds=folds, fold=1 if folds else 0, train_fraction=f)
        assert part["val"] == full["val"] and part["test"] == full["test"]
        assert all(sum(c["group"] == g for c in part["train"]) == 3 for g in groups[f])  # whole patients
    assert len(splits.assign(cases, seed=2, train_fraction=0.001)["train"]) == 3  # at least one group
    with pytest.raises(ValueError, match="train_fraction"):
        splits.assign(cases, train_fraction=0)
