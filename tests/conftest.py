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


def bundle_loader(bundle: str):
    """The bundle's own image + mask loading and checks (its ``load_pair``) as one transform."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / f"{bundle}.json")
    return Compose(parser.get_parsed_content("load_pair"))
