"""Network weights in and out: loading with a clear error, and the training run's best / last checkpoints."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

logger = logging.getLogger(__name__)


def load_network_weights(network: torch.nn.Module, path: str, map_location="cpu") -> dict:
    """Load ``path`` (a ``best.pt`` state dict or a ``last.pt`` training checkpoint) into ``network`` with
    ``torch.load(weights_only=True)``. A checkpoint made for another network, width or channel count fails with a
    message saying which parameters differ, not a stack of key errors. Returns the loaded checkpoint."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"cannot read checkpoint {path}: {e}") from e
    state = ckpt.get("network", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} holds no network weights (expected a state dict, or a dict with 'network')")
    own = network.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        problems = []
        if missing or unexpected:
            problems.append(f"{len(missing)} parameters of the network are not in the checkpoint (e.g. "
                            f"{missing[:2]}) and {len(unexpected)} in the checkpoint are not in the network (e.g. "
                            f"{unexpected[:2]})")
        if shapes:
            problems.append(f"{len(shapes)} differ in shape (e.g. {shapes[0]})")
        raise RuntimeError(f"checkpoint {path} does not fit the configured network {type(network).__name__}: "
                           + "; ".join(problems) + ". Pass the --network, --width, --network_kwargs and channel "
                           "settings it was trained with (see its run's config.json).")
    network.load_state_dict(state)
    return ckpt


class WeightsLoader:
    """Loads network weights when attached (before the engine runs), with :func:`load_network_weights`."""

    def __init__(self, load_path: str, network: torch.nn.Module, map_location="cpu"):
        self.path, self.network, self.map_location = load_path, network, map_location

    def attach(self, engine: Engine) -> None:
        if isinstance(self.network, torch.jit.ScriptModule):  # an exported .ts file: the weights came with it
            logger.info("using the exported TorchScript network %s", self.path)
            return
        from ..networks.ensemble import FoldEnsemble

        if isinstance(self.network, FoldEnsemble):  # a cross-validation folder: each fold's weights are loaded
            logger.info("using the ensemble of the %d fold models of %s", len(self.network.members), self.path)
            return
        load_network_weights(self.network, self.path, self.map_location)
        logger.info("loaded network weights from %s", self.path)


class _ReplacingDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` for a checkpoint that keeps one fixed file name: ``Checkpoint`` removes the file
    it replaces *before* writing the new one, which would leave no ``last.pt`` (or ``best.pt``) to a run killed in
    between; the atomic write (temporary file, then ``os.replace``) replaces it instead."""

    def remove(self, filename: str) -> None:
        pass


class Checkpoints:
    """``models/last.pt`` after every epoch (network, optimizer, scheduler, trainer state and the best-checkpoint
    state) and ``models/best.pt`` (network weights) whenever the validator's ``key_metric`` improves: two Ignite
    ``Checkpoint`` handlers writing through ``DiskSaver(atomic=True)``, so a killed run never leaves a corrupt
    checkpoint.

    With ``resume`` the trainer continues from ``last.pt`` in ``save_dir`` to its planned ``max_epochs``: weights,
    optimizer, scheduler and epoch count are restored, and ``best.pt`` is only replaced by a better score than the
    one recorded before the interruption. A larger (or smaller) ``--epochs`` than the checkpoint's plan extends (or
    shortens) the run, and a cosine learning-rate schedule is continued on the new length from the resumed epoch.

    Distributed training: every rank keeps the best score (the validation metric is the same on all ranks) and
    resumes from ``last.pt`` (the run folder must be readable from every node); only rank 0 writes (``DiskSaver``).

    Args:
        save_dir: the run's ``models`` folder.
        objects: name -> object with ``state_dict``/``load_state_dict``; must include ``network``.
        validator: the evaluator whose ``key_metric`` picks ``best.pt`` (None: no best checkpoint).
        key_metric: the validator metric to maximise.
        resume: continue from ``save_dir/last.pt`` (an error if it does not exist).
    """

    def __init__(self, save_dir: str, objects: dict, validator: Engine | None = None, key_metric: str = "val_iou",
                 resume: bool = False):
        self.dir, self.objects, self.validator, self.key = Path(save_dir), objects, validator, key_metric
        self.resume = resume
        saver = _ReplacingDiskSaver(self.dir, atomic=True, require_empty=False)
        self.best = Checkpoint({"network": objects["network"]}, saver, filename_pattern="best.{ext}",
                               score_function=self._score, n_saved=1) if validator is not None else None
        extra = {"best_checkpoint": self.best} if self.best is not None else {}
        self.last = Checkpoint({**objects, **extra}, saver, filename_pattern="last.{ext}", n_saved=1,
                               global_step_transform=lambda engine, _: engine.state.epoch)

    @property
    def best_score(self) -> float:
        """The key metric of the weights in ``best.pt`` (-inf before the first validation)."""
        saved = self.best._saved if self.best is not None else []
        return float(saved[-1].priority) if saved else -math.inf

    def attach(self, trainer: Engine) -> None:
        if self.resume:
            self._load(trainer)
        if self.best is not None:  # first, so that last.pt records the best score of its own epoch
            self.validator.add_event_handler(Events.EPOCH_COMPLETED, self.best)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self.last)

    def _score(self, validator: Engine) -> float:
        if self.key not in validator.state.metrics:
            raise KeyError(f"--key_metric {self.key!r} is not a validation metric of this bundle; it has: "
                           f"{', '.join(sorted(validator.state.metrics))}")
        return float(validator.state.metrics[self.key])

    def _load(self, trainer: Engine) -> None:
        path = self.dir / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {path}")
        ckpt = load_network_weights(self.objects["network"], str(path))
        max_epochs = trainer.state.max_epochs
        others = {k: v for k, v in self.last.to_save.items() if k != "network"}
        if "best" in ckpt and "best_checkpoint" not in ckpt:  # written before 0.8.0 by the project's own saver
            score = ckpt.pop("best").get("metric", -math.inf)
            ckpt["best_checkpoint"] = {"_saved": [(score, "best.pt")] if math.isfinite(score) else []}
        missing = sorted(set(others) - set(ckpt))
        if missing:
            raise RuntimeError(f"--resume: {path} lacks {missing} (it was not written by this version's training)")
        Checkpoint.load_objects(others, ckpt)
        if trainer.state.epoch >= max_epochs:
            raise ValueError(f"--resume: {path} already completed {trainer.state.epoch} epochs; the planned "
                             f"--epochs is {max_epochs}")
        trainer.state.max_epochs = max_epochs  # the plan of this run, not the one stored in the checkpoint
        self._stretch_cosine(max_epochs)
        logger.info("resuming from %s at epoch %d of %d", path, trainer.state.epoch, max_epochs)

    def _stretch_cosine(self, max_epochs: int) -> None:
        """A cosine schedule loaded from a checkpoint planned for another ``--epochs`` would keep the old length and
        raise the learning rate again after it: continue it on the new length instead, from the same epoch (the
        closed-form value there, from which PyTorch's recursive steps go on consistently)."""
        sched = self.objects.get("lr_scheduler")
        if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.T_max == max_epochs:
            return
        t, old = sched.last_epoch, sched.T_max
        lrs = [sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * t / max_epochs)) / 2
               for base in sched.base_lrs]
        logger.warning("--resume with --epochs %d where the checkpoint planned %d: the cosine learning-rate schedule "
                       "now ends at epoch %d; learning rate at epoch %d: %.3g -> %.3g", max_epochs, old, max_epochs,
                       t, sched.get_last_lr()[0], lrs[0])
        sched.T_max = max_epochs
        for group, lr in zip(sched.optimizer.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = lrs
