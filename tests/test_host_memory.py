"""``retain_freed_memory``: after it, a large tensor freed and allocated again costs no new page faults; the bundles
turn it on in ``initialize`` unless told not to. Each case runs in a fresh interpreter: the setting is process-wide."""

import json
import platform
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the switch acts on glibc's malloc only (elsewhere it is a logged no-op)")

FAULTS = """
import json, resource, sys, torch
def faults_per_alloc():
    out = []
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.ones(16 * 2**20)  # 64 MB, written: every page is touched
        del t
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(out[-4:])  # glibc settles on a reusable hole after a few rounds
"""


def _run(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", FAULTS + code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_without_page_faults():
    out = _run("""
from pipeline.host_memory import retain_freed_memory
default = faults_per_alloc()
applied = retain_freed_memory(True)
print(json.dumps({"default": default, "applied": applied, "retained": faults_per_alloc(),
                  "again": retain_freed_memory(True)}))
""")
    assert out["applied"] and out["again"]
    assert out["default"] > 10_000  # 64 MB of 4 KiB pages, faulted in afresh at every allocation
    assert out["retained"] < out["default"] / 20


def test_disabled_switch_changes_nothing():
    out = _run("""
from pipeline.host_memory import retain_freed_memory
applied = retain_freed_memory(False)
print(json.dumps({"applied": applied, "faults": faults_per_alloc()}))
""")
    assert not out["applied"] and out["faults"] > 10_000


@pytest.mark.parametrize("value, applied", [(None, True), ("false", False)])
def test_bundle_initialize_applies_the_switch(value, applied, tmp_path):
    override = "" if value is None else f", retain_freed_memory={value!r}"
    out = _run(f"""
from monai.bundle import ConfigWorkflow
import pipeline.host_memory as hm
wf = ConfigWorkflow(config_file="bundles/ph2.json", workflow_type=None, run_id="training", logging_file=False,
                    output_dir={str(tmp_path / 'run')!r}{override})
wf.initialize()
print(json.dumps({{"applied": hm._applied}}))
""")
    assert out["applied"] is applied


def test_bundle_rejects_a_non_boolean(tmp_path):
    res = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundles/ph2.json",
                          "--retain_freed_memory", "sometimes", "--output_dir", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "--retain_freed_memory must be true or false, got 'sometimes'" in res.stderr
    assert not (tmp_path / "run").exists()
