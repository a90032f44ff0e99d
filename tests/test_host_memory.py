"""``retain_freed_memory``: after it, a large tensor freed and allocated again costs no new page faults; the bundles
turn it on in ``initialize`` unless told not to. The switch's effect is measured in fresh interpreters (the setting
is process-wide); the bundle's use of it in process, with the switch replaced."""

import json
import platform
import subprocess
import sys

import pytest

from conftest import ROOT, error_chain

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


def _initialize(tmp_path, **overrides):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=str(ROOT / "bundles" / "ph2.json"), workflow_type=None, run_id="training",
                        logging_file=False, output_dir=str(tmp_path / "run"), **overrides)
    wf.initialize()


@pytest.mark.parametrize("value, enabled", [(None, True), ("false", False)])
def test_bundle_initialize_applies_the_switch(value, enabled, tmp_path, monkeypatch):
    """In process, with the switch itself replaced (its effect is measured in fresh interpreters above)."""
    import pipeline.host_memory as hm

    calls = []
    monkeypatch.setattr(hm, "retain_freed_memory", lambda on=True: calls.append(on) or on)
    _initialize(tmp_path, **({} if value is None else {"retain_freed_memory": value}))
    assert calls == [enabled]


def test_bundle_rejects_a_non_boolean(tmp_path, monkeypatch):
    import pipeline.host_memory as hm

    monkeypatch.setattr(hm, "retain_freed_memory", lambda on=True: pytest.fail("the switch was called"))
    with pytest.raises(Exception) as err:
        _initialize(tmp_path, retain_freed_memory="sometimes")
    assert "--retain_freed_memory must be true or false, got 'sometimes'" in error_chain(err.value)
    assert not (tmp_path / "run").exists()
