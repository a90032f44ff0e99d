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


def run_bundle(*args, check=True, timeout=600, env=None):
    """Run ``python -m monai.bundle ...`` from the repository root, as users do (``env``: extra variables)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
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


def balance_output(net, x):
    """Make ``net`` a hand-set model whose masks on ``x`` hold both classes, about half of each, with logits far
    from 0 at most pixels: batch-norm statistics taken from ``x`` (an untrained network's eval-mode output is
    nearly constant), then the output convolution (its last one-channel conv) shifted and scaled so that the
    logits on ``x`` have median 0 and spread 1. Export and layout checks compare the masks of such a model, which
    an untrained network (all one class, or all on the threshold) would pass blindly. Returns ``net`` in eval mode."""
    import torch

    out = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
           and m.out_channels == 1 and m.bias is not None][-1]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a plain average over the calibration passes
        net.train()
        net(x)
        net.eval()
        y = net(x)
        out.bias -= y.median()
        scale = 1.0 / (y - y.median()).abs().median().clamp_min(1e-12)
        out.weight *= scale
        out.bias *= scale
    return net


def smooth_image(height: int, width: int, seed: int = 0):
    """A (1, 3, H, W) float image in [0, 1] with structure at several scales (sums of random sinusoids), on which a
    network's output has regions rather than noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    chans = []
    for _ in range(3):
        f, phase = torch.rand(2, generator=g) * 6 + 1, torch.rand(2, generator=g) * 6.28
        chans.append(0.5 + 0.25 * torch.sin(f[0] * 6.28 * yy + phase[0]) + 0.25 * torch.cos(f[1] * 6.28 * xx + phase[1]))
    return torch.stack(chans)[None]


class ScriptedValidation:
    """A validation handler that replaces the key metric with the next of ``scores`` (after the real metrics are
    computed, before the best checkpoint reads them) and keeps a copy of the weights it validated in the class's
    ``weights``, keyed by the 1-based validation count: a run whose validation improves and then worsens on cue.
    (A class attribute: the bundle parser copies what a config holds.) Tests only."""

    weights: dict = {}

    def __init__(self, scores, key: str = "val_iou"):
        self.scores, self.key = list(scores), key
        ScriptedValidation.weights = {}

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        n = len(self.weights)
        engine.state.metrics[self.key] = self.scores[n]
        self.weights[n + 1] = {k: v.detach().clone() for k, v in engine.network.state_dict().items()}
