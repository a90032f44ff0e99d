"""The mutation check (``python -m pipeline.bench.mutations``) stays runnable: every mutation still finds its text,
and a mutation is judged by whether the tests fail in the mutated copy, not in this checkout."""

from pipeline.bench import mutations


def test_every_mutation_still_applies():
    assert mutations.check_applicable() == []


def test_a_mutation_the_tests_see_is_caught_and_one_they_do_not_survives(tmp_path, monkeypatch):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import json, pathlib\n\ndef test_threshold():\n"
                     "    assert json.loads(pathlib.Path('configs/defaults.json').read_text())['threshold'] == 0.5\n")
    assert mutations.run_one("threshold_near_0", [str(probe)])[0] == "caught"
    assert mutations.run_one("flipped_labels", [str(probe)])[0] == "survived"
    monkeypatch.setitem(mutations.MUTATIONS, "gone", ("configs/defaults.json", "no such text", "", ""))
    assert mutations.run_one("gone", [str(probe)])[0] == "stale"
    assert mutations.check_applicable() == ["gone"]
