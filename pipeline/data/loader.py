"""MONAI's ``ThreadDataLoader`` with the loading thread's errors raised where the batches are consumed.

MONAI's ``ThreadBuffer`` iterates the ``DataLoader`` in a background thread; when loading a case fails there, the
thread prints its traceback and dies, and the consuming loop ends as if the data had run out. Ignite then starts
the loader again to fill the epoch, so an evaluation or inference with one unreadable image finished with exit code
0, fewer cases than it was given and the earlier ones written twice (seen on a folder with one corrupt png).
"""

from __future__ import annotations

from monai.data import DataLoader, ThreadBuffer
from monai.data import ThreadDataLoader as _MonaiThreadDataLoader


class _RaisingThreadBuffer(ThreadBuffer):
    """``ThreadBuffer`` that keeps the source's exception and raises it after the batches loaded before it."""

    error: BaseException | None = None

    def enqueue_values(self):
        try:
            super().enqueue_values()
        except BaseException as e:  # noqa: BLE001 - re-raised in the consuming thread by __iter__
            self.error = e

    def __iter__(self):
        self.error = None
        yield from super().__iter__()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class ThreadDataLoader(_MonaiThreadDataLoader):
    """``monai.data.ThreadDataLoader`` (same arguments) whose loading errors reach the engine: see the module doc."""

    def __iter__(self):
        buffer = _RaisingThreadBuffer(DataLoader.__iter__(self), self.buffer_size, self.buffer_timeout)
        for batch in buffer:
            for _ in range(self.repeats):
                yield batch
