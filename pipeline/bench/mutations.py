"""Mutation check of the test suite: break the pipeline on purpose, in a scratch copy of the repository, and confirm
the tests turn red. Not a test itself (each mutation costs a known-answer training, about a minute on 2 cores).

    python -m pipeline.bench.mutations                 # every mutation below, against tests/test_known_answer.py
    python -m pipeline.bench.mutations --only flipped_labels --tests tests/test_known_answer.py tests/test_metrics.py

Each mutation replaces every occurrence of one exact text in one file of the working tree (copied with
``git ls-files``, so uncommitted edits are checked too). A mutation whose text is no longer in its file is reported
as stale, not as caught: ``tests/test_mutations.py`` keeps that from happening silently. Exit status 1 when any
mutation survives.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name: (file, text, replacement, what it breaks)
MUTATIONS = {
    "threshold_near_0": ("configs/defaults.json", '"threshold": 0.5', '"threshold": 0.01',
                         "the probability threshold of every bundle's masks moved to 0.01"),
    "flipped_labels": ("configs/engine.json", "monai.transforms.AsDiscreted(keys='label', threshold=0.5)]\",",
                       "monai.transforms.AsDiscreted(keys='label', threshold=0.5), "
                       "monai.transforms.Lambdad(keys='label', func=lambda x: 1 - x)]\",",
                       "training and validation read every label mask inverted"),
    "lesion_postprocessing_dropped": ("configs/engine.json", " + @lesion_postprocessing\"", "\"",
                                      "evaluation and inference skip the largest component, hole filling and "
                                      "minimum size"),
}
DEFAULT_TESTS = ["tests/test_known_answer.py"]


def check_applicable(root: Path = ROOT) -> list[str]:
    """Names of the mutations whose text is no longer in their file (stale entries)."""
    return [name for name, (file, text, _, _) in MUTATIONS.items() if text not in (root / file).read_text()]


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def run_one(name: str, tests: list[str]) -> tuple[str, float]:
    """'caught', 'survived' or 'stale', and the seconds the tests took."""
    file, text, replacement, _ = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"mutation_{name}_") as tmp:
        clone = Path(tmp)
        copy_tree(clone)
        source = (clone / file).read_text()
        if text not in source:
            return "stale", 0.0
        (clone / file).write_text(source.replace(text, replacement))
        env = {**os.environ, "PYTHONPATH": str(clone)}
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=clone,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        return ("caught" if rc != 0 else "survived"), time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(MUTATIONS), default=sorted(MUTATIONS))
    ap.add_argument("--tests", nargs="+", default=DEFAULT_TESTS, help="pytest targets run against each mutation")
    args = ap.parse_args(argv)
    survived = []
    for name in args.only:
        verdict, seconds = run_one(name, args.tests)
        print(f"{name:32s} {verdict:8s} {seconds:6.0f} s  ({MUTATIONS[name][3]})", flush=True)
        if verdict != "caught":
            survived.append(name)
    if survived:
        raise SystemExit(f"error: not caught by {' '.join(args.tests)}: {', '.join(survived)}")


if __name__ == "__main__":
    main()
