"""Network weights in and out: loading with a clear error, and the training run's best / last checkpoints."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
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


class RandomStates:
    """The training run's random streams, saved in ``last.pt`` beside the weights so that a resumed run draws the
    same crops, flips and batches as one that was never stopped: the global torch (and CUDA), numpy and Python
    generators, the own ``RandomState`` of every MONAI random transform in the loader's dataset chain, and the
    sampler's generator where it has one (LGG's tumour-weighted sampler).

    Why: without it a resume restarts every stream from ``--seed``, so the epochs after it repeat the first epochs'
    draws and the finished model differs from the uninterrupted run's; a regenerated figure then depends on whether
    the run was interrupted. Exact for the inline loader (``num_workers`` 0, every machine below 8 cores); worker
    processes draw from their own per-worker seeds, and a distributed rank from its own streams, which a single
    ``last.pt`` written by rank 0 does not hold: there the resumed draws are new ones (same distribution), and the
    log says so.

    Args:
        loader: the training ``DataLoader``.
    """

    def __init__(self, loader):
        self.loader = loader

    def _transforms(self) -> list:
        """Every random MONAI transform of the loader's dataset chain, inner ones included: a dictionary transform
        draws from its array transform's own generator (``RandSpatialCropd.cropper``, ``RandAffined.rand_affine``)."""
        from monai.transforms import Randomizable, Transform

        found, todo, seen = [], [getattr(getattr(self.loader, "dataset", None), "transform", None)], set()
        while todo:
            obj = todo.pop(0)
            if id(obj) in seen or not isinstance(obj, (Transform, Randomizable)):
                continue
            seen.add(id(obj))
            if isinstance(obj, Randomizable):
                found.append(obj)
            for value in vars(obj).values():
                todo.extend(value if isinstance(value, (list, tuple)) else [value])
        return found

    def _exact(self) -> bool:
        from ..distributed import world_size

        return not getattr(self.loader, "num_workers", 0) and world_size() <= 1

    def _sampler_generator(self):
        return getattr(getattr(self.loader, "sampler", None), "generator", None)

    def state_dict(self) -> dict:
        sampler_gen = self._sampler_generator()
        version, internal, gauss = random.getstate()
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": _numpy_state_out(np.random.get_state()),
                "python": [version, list(internal), gauss],
                "transforms": [_numpy_state_out(t.R.get_state()) for t in self._transforms()],
                "sampler": sampler_gen.get_state() if sampler_gen is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if not self._exact():
            logger.warning("resuming with worker processes or several ranks: the augmentation and sampling draws "
                           "after the resume are new ones, not those of an uninterrupted run")
            return
        transforms = self._transforms()
        if len(state["transforms"]) != len(transforms):
            raise RuntimeError(f"--resume: the checkpoint holds the random states of {len(state['transforms'])} "
                               f"random transforms, this training chain has {len(transforms)}: resume with the "
                               "settings the run was started with (see its config.json)")
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_state_in(state["numpy"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        for t, saved in zip(transforms, state["transforms"]):
            t.R.set_state(_numpy_state_in(saved))
        sampler_gen = self._sampler_generator()
        if state["sampler"] is not None and sampler_gen is not None:
            sampler_gen.set_state(state["sampler"])


def _numpy_state_out(state: tuple) -> list:
    """A numpy ``RandomState`` state as tensors and numbers: ``last.pt`` is read with ``weights_only=True``."""
    kind, key, *rest = state
    return [kind, torch.from_numpy(key.astype(np.int64)), *rest]


def _numpy_state_in(state: list) -> tuple:
    kind, key, *rest = state
    return (kind, key.numpy().astype(np.uint32), *rest)


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
    ``objects`` may hold a :class:`RandomStates`: ``last.pt`` then carries the random streams too, and a resumed run
    trains exactly as an uninterrupted one (tests/test_resume.py).

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
        if "random_states" in others and "random_states" not in ckpt:  # written before bundle 0.13
            others.pop("random_states")
            logger.warning("--resume: %s holds no random states (written before they were saved): the draws after "
                           "the resume restart from --seed instead of continuing", path)
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
