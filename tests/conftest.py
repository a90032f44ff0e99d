import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL_PH2 = SHARED / "ph2" / "PH2Dataset"


def needs(path: Path):
    """Skip a test when real data is absent, saying where it was looked for."""
    return pytest.mark.skipif(not path.is_dir(), reason=f"real data not found at {path} (see data/README.md)")


def run_bundle(*args, check=True, timeout=600):
    """Run ``python -m monai.bundle ...`` from the repository root, as users do."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"monai.bundle {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def bundle_loader(bundle: str, **overrides):
    """The bundle's own image + mask loading and checks (its ``load_pair``) as one transform; ``overrides`` set
    bundle ids as ``--id value`` would."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / f"{bundle}.json")
    for key, value in overrides.items():
        parser[key] = value
    return Compose(parser.get_parsed_content("load_pair"))


def run_in_process(run_id: str, config_file: str = "bundles/ph2.json", **overrides):
    """Run a bundle's ``run_id`` (training, evaluate, inference) in this process, as ``python -m monai.bundle run``
    does but without a new interpreter (whose imports cost about 10 s); for tests whose subject is not the command
    line itself. Each user-facing command keeps at least one test through :func:`run_bundle`."""
    from monai.bundle import ConfigWorkflow

    cwd = os.getcwd()
    os.chdir(ROOT)  # the bundles pull configs/ by relative path, as from the repository root
    try:
        wf = ConfigWorkflow(config_file=config_file, workflow_type=None, run_id=run_id, logging_file=False,
                            **{k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
        wf.initialize()
        wf.run()
        wf.finalize()
    finally:
        os.chdir(cwd)
    return wf


def error_chain(exc: BaseException) -> str:
    """The messages of an exception and of those it was raised from (MONAI wraps config expression errors)."""
    messages = []
    while exc is not None:
        messages.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(messages)
