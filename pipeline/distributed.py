"""Distributed data-parallel training (``configs/distributed.json``, launched with ``torchrun``).

Everything here is a no-op in a single process (no process group initialized), so the shared engine and the
handlers call these helpers unconditionally:

- ``rank`` / ``world_size`` / ``is_main``: who writes. Run folders, checkpoints, ``metrics.json``, TensorBoard and
  the run's log lines come from rank 0 only; every rank reads (``--resume``).
- ``main_process_first``: rank 0 does a step (writing the synthetic sample) before the others repeat it.
- ``broadcast_object`` / ``check_same``: one run folder for all ranks (the default name holds a timestamp).
- ``broadcast_state``: before each validation every rank takes rank 0's weights and batch-norm statistics (those
  ``best.pt`` holds; DDP keeps weights equal, but each rank's last training batch moved its own BN running stats).
- ``all_reduce_sum``: the epoch's training loss over all ranks, and the per-patient voxel counts of
  ``pipeline.handlers.VolumeDice``.
- ``train_sampler``: the bundle's training sampler, split across ranks.

Validation otherwise needs nothing here: MONAI's cumulative metrics (``IgniteMetricHandler`` over ``MeanIoU`` /
``DiceMetric``) all-gather the per-case scores of every rank before reducing, so each rank gets the mean over the
whole validation set, the same number as a single-process evaluation.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from itertools import chain

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in rank 0 and in a process that is not distributed: the one that writes."""
    return rank() == 0


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def main_process_first():
    """Rank 0 runs the block first; the other ranks wait for it, then run it too (finding its result on disk)."""
    if world_size() > 1 and not is_main():
        dist.barrier()
    try:
        yield
    finally:
        if world_size() > 1 and is_main():
            dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (a picklable object)."""
    if world_size() <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_same(name: str, value):
    """``value`` if every rank holds the same one, else an error listing them (e.g. the run folder)."""
    if world_size() <= 1:
        return value
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"the ranks disagree on {name}: {values}")
    return value


def broadcast_state(module: torch.nn.Module | None, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (batch-norm statistics) into ``module`` on every rank."""
    if module is None or world_size() <= 1:
        return
    with torch.no_grad():
        for t in chain(module.parameters(), module.buffers()):
            dist.broadcast(t.data, src=src)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if world_size() <= 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def quiet_other_ranks() -> None:
    """Ranks other than 0 log warnings and errors only: one log per run."""
    if not is_main():
        logging.disable(logging.INFO)


def train_sampler(dataset, sampler=None, seed: int = 0):
    """The training sampler of one rank: ``sampler`` (the bundle's ``train_sampler``) split across ranks.

    - None (shuffled epochs): MONAI ``DistributedSampler``, a different shuffle each epoch (the trainer calls
      ``set_epoch``), the same permutation on every rank, each rank its own share; shares are padded to equal
      length (a few cases repeat in an epoch) so that every rank runs the same number of iterations.
    - ``WeightedRandomSampler`` (LGG: tumour-weighted draws, with replacement): MONAI
      ``DistributedWeightedRandomSampler``: each epoch every rank draws, with the same weights, from its own share of
      the cases, ``ceil(num_samples / world_size)`` draws, so an epoch draws as many cases as in one process and
      the tumour share of the draws is kept in expectation (up to how the tumour slices fall into the shares).
    """
    from monai.data import DistributedSampler, DistributedWeightedRandomSampler
    from torch.utils.data import WeightedRandomSampler

    if sampler is None:
        return DistributedSampler(dataset, shuffle=True, seed=seed)
    if isinstance(sampler, WeightedRandomSampler):
        if not sampler.replacement:
            raise ValueError("distributed training supports a WeightedRandomSampler with replacement=True only")
        return DistributedWeightedRandomSampler(
            dataset, weights=torch.as_tensor(sampler.weights).tolist(),
            num_samples_per_rank=math.ceil(sampler.num_samples / world_size()),
            generator=torch.Generator().manual_seed(seed + rank()), shuffle=True, seed=seed)
    raise TypeError(f"distributed training does not know how to split a {type(sampler).__name__} across ranks; "
                    "use train_sampler null (shuffled epochs) or a torch WeightedRandomSampler")


def val_sampler(dataset):
    """The validation sampler of one rank: MONAI ``DistributedSampler(shuffle=False, even_divisible=False)``, each
    case on exactly one rank (shares differ by at most one case; nothing is repeated, so the all-gathered metric is
    the mean over the validation set). Every rank needs at least one case."""
    from monai.data import DistributedSampler

    if len(dataset) < world_size():
        raise ValueError(f"the validation set has {len(dataset)} case(s), fewer than the {world_size()} processes: "
                         "each process needs at least one (raise --val_fraction, or use fewer processes)")
    return DistributedSampler(dataset, shuffle=False, even_divisible=False)
