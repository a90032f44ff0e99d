"""Keep freed host memory in the process so that every training step does not page-fault its tensors in afresh.

glibc's ``malloc`` serves large blocks (above a threshold that grows to at most 32 MB) with a fresh ``mmap`` and
returns them with ``munmap`` when freed. PyTorch's CPU allocator has no cache of its own, so the activations and
gradients of each training step (a 16-channel 256x256 batch of 8 is 33.5 MB) come back as new pages that the kernel
must fault in and zero, page by page, at every step. On a virtual machine each fault is expensive; a plain PyTorch
loop pays the same, and this switch is one of the levers the engine has over it (``python -m
pipeline.bench.speed --levers`` measures it; figures in docs/performance.md).

:func:`retain_freed_memory` tells glibc to serve every block from its heap (``M_MMAP_MAX = 0``) and not to give the
heap's free top back to the system (``M_TRIM_THRESHOLD`` at its maximum): after the first step the same memory is
reused and no page is faulted in again. The cost: the process keeps its peak footprint until it exits, and the
heap can hold some fragmentation on top of it (peak RSS of the PH2, LGG and DSB2018 bundles within 3-10%
either way, docs/performance.md). Results are bit-identical: only where buffers live changes. No effect (and a
logged note) where the C library is not glibc. The same as starting Python with
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``, but set by the bundle itself (in
``initialize``) so that ``python -m monai.bundle run`` gets it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def retain_freed_memory(enabled: bool = True) -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); returns whether the setting is in force.

    Process-wide and one-way: once set it stays for the life of the process (``enabled=False`` does nothing, so a
    bundle can turn the switch off without undoing another caller's choice).
    """
    global _applied
    if not enabled or _applied:
        return _applied
    libc = _libc()
    if libc is None:
        logger.info("retain_freed_memory: not a glibc system (%s), host allocator left as it is", platform.system())
        return False
    if libc.mallopt(M_MMAP_MAX, 0) != 1 or libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX) != 1:
        logger.warning("retain_freed_memory: glibc refused mallopt; host allocator left as it is")
        return False
    _applied = True
    logger.info("host memory: freed blocks kept for reuse (glibc mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=%d)", _INT_MAX)
    return True
