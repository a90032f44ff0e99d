"""The training run's record: one line per epoch, TensorBoard scalars and ``metrics.json``."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..distributed import all_reduce_sum, is_main
from ..runs import Timer, update_json

logger = logging.getLogger(__name__)


class RunRecorder:
    """One readable line per epoch, TensorBoard scalars and ``metrics.json`` for a training run.

    Attach to the trainer *after* ``ValidationHandler`` so that the epoch's validation metrics are available.
    Writes ``train/loss`` (epoch mean), ``train/lr``, ``train/epoch_s`` and ``val/<metric>`` to ``summary_writer``:
    two tag groups, which TensorBoard's Time Series dashboard opens by default (it opens the first two, in
    alphabetical order; a third group, such as a former ``time/``, pushed the validation curves out of view)
    and keeps ``history``, ``best`` and ``extra`` (e.g. the dataset and its skipped cases) in
    ``<output_dir>/metrics.json`` after every epoch.

    Distributed training: the loss is the mean over the iterations of all ranks; only rank 0 writes and logs (give
    the other ranks ``summary_writer=None``).
    """

    def __init__(self, output_dir: str, validator: Engine | None = None, optimizer=None, summary_writer=None,
                 key_metric: str = "val_iou", extra: dict | None = None, hparams: dict | None = None):
        self.path, self.extra = Path(output_dir) / "metrics.json", extra or {}
        self.hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                        for k, v in (hparams or {}).items() if k in HPARAMS and v is not None}
        self.validator, self.optimizer, self.writer, self.key = validator, optimizer, summary_writer, key_metric
        self.history: list[dict] = []
        self.best: dict = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.run_timer = Timer()
        self.start_epoch = engine.state.epoch  # above 0 when resumed: the ETA counts this session's epochs
        if self.path.is_file():  # resumed run: keep the history written so far
            import json

            doc = json.loads(self.path.read_text())
            self.history = [h for h in doc.get("history", []) if h["epoch"] <= engine.state.epoch]
            self.best = doc.get("best", {}) or {}

    def _epoch_started(self, engine: Engine) -> None:
        self.epoch_timer = Timer()
        self.loss_sum, self.n = 0.0, 0
        self.lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else math.nan

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        loss = out[0]["loss"] if isinstance(out, list) else out["loss"]
        # MONAI's decollation already made the loss a Python float
        loss = float(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss}) at epoch {engine.state.epoch}, iteration {engine.state.iteration}: "
                "stopping; the checkpoints of the last completed epoch are kept (models/last.pt, models/best.pt)")
        self.loss_sum += loss
        self.n += 1

    def _epoch_completed(self, engine: Engine) -> None:
        epoch, max_epochs = engine.state.epoch, engine.state.max_epochs
        loss_sum, n = all_reduce_sum([self.loss_sum, self.n])
        loss = float(loss_sum) / max(n, 1)
        rec = {"epoch": epoch, "train_loss": loss, "lr": self.lr, "epoch_s": round(self.epoch_timer(), 3),
               "elapsed_s": round(self.run_timer(), 2)}
        if self.validator is not None and self.validator.state.epoch == epoch and self.validator.state.metrics:
            rec.update({k: float(v) for k, v in self.validator.state.metrics.items()})
        self.history.append(rec)
        if self.key in rec and (not self.best or rec[self.key] > self.best[self.key]):
            self.best = {"epoch": epoch, "key_metric": self.key,
                         **{k: v for k, v in rec.items() if k.startswith("val_")}}
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, epoch)
            self.writer.add_scalar("train/lr", self.lr, epoch)
            self.writer.add_scalar("train/epoch_s", rec["epoch_s"], epoch)
            for k, v in rec.items():
                if k.startswith("val_"):
                    self.writer.add_scalar(f"val/{k[4:]}", v, epoch)
            self.writer.flush()
        if not is_main():
            return
        vals = "  ".join(f"{k[4:]} {v:.4f}" for k, v in rec.items() if k.startswith("val_"))
        best = f"  (best {self.key[4:]} {self.best[self.key]:.4f} @ {self.best['epoch']})" if self.best else ""
        done = max(epoch - self.start_epoch, 1)
        eta = rec["elapsed_s"] / done * (max_epochs - epoch)
        logger.info("epoch %d/%d  loss %.4f  lr %.2e  %.1fs  elapsed %s  eta %s%s%s", epoch, max_epochs, loss,
                    self.lr, rec["epoch_s"], clock(rec["elapsed_s"]), clock(eta), f"  val {vals}" if vals else "",
                    best)
        update_json(self.path, **self.extra, history=self.history, best=self.best, epochs_done=epoch,
                    max_epochs=max_epochs)

    def _completed(self, engine: Engine) -> None:
        from ..distributed import all_gather, rank

        loader = getattr(engine.state, "dataloader", None)
        cases = len(loader.dataset) if loader is not None and hasattr(loader.dataset, "__len__") else None
        # a collective, every rank takes part: what each process held (its cached training cases) and its peak memory
        processes = all_gather({"rank": rank(), "train_cases_cached": cases, **peak_memory()})
        if not is_main():
            return
        if self.writer is not None and self.best:
            self._write_hparams()
        update_json(self.path, train_seconds=round(self.run_timer(), 1), completed=True, **peak_memory(),
                    processes=processes)

    def _write_hparams(self) -> None:
        """The run's settings and best validation scores as a TensorBoard HParams entry, in the run's own event
        stream (``SummaryWriter.add_hparams`` would open a second one in a subfolder), so a single run shows in
        the HParams tab and runs side by side compare there."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"val/best_{k[4:]}": float(v) for k, v in self.best.items() if k.startswith("val_")}
        for summary in hparams(self.hparams, metrics):
            self.writer._get_file_writer().add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, self.best["epoch"])
        self.writer.flush()


# the settings a run's TensorBoard HParams entry shows (those that tell runs of a study apart)
HPARAMS = ("bundle_name", "network", "width", "loss", "lr", "weight_decay", "batch_size", "epochs", "image_size",
           "zoom", "roi_size", "seed", "split_seed", "fold", "folds", "intensity_norm", "hair_prob", "affine_prob",
           "flip_tta", "rot90_tta", "threshold", "key_metric")


def clock(seconds: float) -> str:
    """``seconds`` as ``m:ss``, or ``h:mm:ss`` from an hour on."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def peak_memory() -> dict:
    """Peak resident memory of this process (``peak_rss_gb``) and, on CUDA, peak allocated GPU memory
    (``peak_cuda_gb``), in GiB."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out
