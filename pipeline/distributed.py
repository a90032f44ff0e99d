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
- ``shard_indices`` / ``shard_sampler``: each rank caches and draws from its own share of the training
  cases (memory per process falls as processes are added).

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


def shard_indices(n: int, seed: int = 0) -> list[int]:
    """This rank's share of ``n`` training cases: MONAI ``partition_dataset`` of the shuffled indices (the same
    shuffle on every rank, fixed by ``seed``), padded by repeating cases so every rank holds
    ``ceil(n / world_size)`` and runs the same number of iterations. One process: every index, in order."""
    if world_size() <= 1:
        return list(range(n))
    from monai.data import partition_dataset

    if n < world_size():
        raise ValueError(f"the training set has {n} case(s), fewer than the {world_size()} processes")
    return [int(i) for i in partition_dataset(list(range(n)), num_partitions=world_size(), shuffle=True, seed=seed,
                                              even_divisible=True)[rank()]]


def take(cases: list, indices: list[int]) -> list:
    return [cases[i] for i in indices]


def shard_sampler(dataset, indices: list[int], sampler=None, seed: int = 0):
    """The sampler of one rank over its own cached shard (``dataset``: the cases at ``indices`` of the training
    list, :func:`shard_indices`), so each process decodes and holds only its share of the training set.

    - None (shuffled epochs): a ``DistributedSampler`` over the shard alone (``num_replicas=1``): a new shuffle of
      the shard each epoch (the trainer calls ``set_epoch``), reproducible on resume.
    - ``WeightedRandomSampler`` (LGG: tumour-weighted draws, with replacement): MONAI
      ``DistributedWeightedRandomSampler`` over the shard with the shard's weights, ``ceil(num_samples /
      world_size)`` draws a rank, so an epoch draws as many cases as in one process.

    Each rank draws from its own shard for the whole run (MONAI's partitioned caching; cases do not move between
    ranks), the price of holding 1/world_size of the data each.
    """
    from monai.data import DistributedSampler, DistributedWeightedRandomSampler
    from torch.utils.data import WeightedRandomSampler

    if len(dataset) != len(indices):
        raise ValueError(f"the shard holds {len(dataset)} cases but {len(indices)} indices were given")
    if sampler is None:
        return DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed + rank())
    if isinstance(sampler, WeightedRandomSampler):
        if not sampler.replacement:
            raise ValueError("distributed training supports a WeightedRandomSampler with replacement=True only")
        weights = torch.as_tensor(sampler.weights).tolist()
        return DistributedWeightedRandomSampler(
            dataset, weights=[weights[i] for i in indices],
            num_samples_per_rank=math.ceil(sampler.num_samples / world_size()), num_replicas=1, rank=0,
            generator=torch.Generator().manual_seed(seed + rank()), shuffle=True, seed=seed + rank())
    raise TypeError(f"distributed training does not know how to split a {type(sampler).__name__} across ranks; "
                    "use train_sampler null (shuffled epochs) or a torch WeightedRandomSampler")


def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in one process."""
    if world_size() <= 1:
        return [obj]
    seen = [None] * world_size()
    dist.all_gather_object(seen, obj)
    return seen


_RANKS: list[dict] = []


def gather_ranks() -> list[dict]:
    """Every rank's global rank, node (torchrun's ``GROUP_RANK``), local rank, host and pid, gathered on all ranks
    (a collective: ``configs/distributed.json`` calls it in ``initialize``); the run record lists them."""
    import os
    import socket

    me = {"rank": rank(), "node": int(os.environ.get("GROUP_RANK", 0)),
          "local_rank": int(os.environ.get("LOCAL_RANK", 0)), "host": socket.gethostname(), "pid": os.getpid()}
    _RANKS[:] = all_gather(me)
    return list(_RANKS)


def gathered_ranks() -> list[dict]:
    return list(_RANKS)


def shutdown() -> None:
    """End distributed training: every rank waits at a barrier until all have finished (rank 0 writes the run's
    last files after the others are done training), then the process group is destroyed. A rank tearing gloo down
    while a peer is still at work aborted at exit now and then ("terminate called without an active exception")."""
    if not is_distributed():
        return
    dist.barrier()
    dist.destroy_process_group()


def val_sampler(dataset):
    """The validation sampler of one rank: MONAI ``DistributedSampler(shuffle=False, even_divisible=False)``, each
    case on exactly one rank (shares differ by at most one case; nothing is repeated, so the all-gathered metric is
    the mean over the validation set). Every rank needs at least one case."""
    from monai.data import DistributedSampler

    if len(dataset) < world_size():
        raise ValueError(f"the validation set has {len(dataset)} case(s), fewer than the {world_size()} processes: "
                         "each process needs at least one (raise --val_fraction, or use fewer processes)")
    return DistributedSampler(dataset, shuffle=False, even_divisible=False)
