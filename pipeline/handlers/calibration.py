"""How far the foreground probabilities can be taken at their word: expected calibration error and the reliability
diagram over every pixel of a split (validation during training, the evaluated split in ``evaluate``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..distributed import all_reduce_sum, is_main
from ..runs import write_json
from .cases import case_items

logger = logging.getLogger(__name__)


def pooled_bins(prob: torch.Tensor, truth: torch.Tensor, num_bins: int) -> np.ndarray:
    """(3, num_bins): pixel count, summed probability and summed truth per equal-width probability bin, from MONAI's
    ``calibration_binning`` (its per-bin means times counts, so that images pool by pixels)."""
    from monai.metrics.calibration import calibration_binning

    mean_p, mean_t, counts = calibration_binning(prob.float()[None], truth.float()[None], num_bins=num_bins)
    counts = counts[0, 0].double()
    return torch.stack([counts, torch.nan_to_num(mean_p[0, 0].double()) * counts,
                        torch.nan_to_num(mean_t[0, 0].double()) * counts]).cpu().numpy()


def summarize(bins: np.ndarray) -> dict:
    """ECE (sum over bins of n_b / N * |mean truth_b - mean probability_b|), the largest gap (MCE) and the bins."""
    n, sp, st = bins
    filled = n > 0
    conf, acc = np.where(filled, sp / np.maximum(n, 1), np.nan), np.where(filled, st / np.maximum(n, 1), np.nan)
    gaps = np.abs(acc - conf)
    total = n.sum()
    return {"ece": float(np.nansum(gaps * n) / total) if total else float("nan"),
            "mce": float(np.nanmax(gaps)) if filled.any() else float("nan"), "pixels": int(total),
            "bins": [{"low": i / len(n), "high": (i + 1) / len(n), "pixels": int(c),
                      "mean_probability": None if not f else float(p), "foreground_fraction": None if not f else float(a)}
                     for i, (c, p, a, f) in enumerate(zip(n, conf, acc, filled))]}


def reliability_figure(summary: dict, title: str):
    """Matplotlib figure: foreground fraction against mean probability per bin (the diagonal is perfect
    calibration), over the share of pixels per bin on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = summary["bins"]
    mid = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    filled = [b for b in bins if b["pixels"]]
    top.bar([(b["low"] + b["high"]) / 2 for b in filled], [b["foreground_fraction"] for b in filled],
            width=width * 0.9, color="tab:blue", alpha=0.8, label="foreground fraction")
    top.plot([b["mean_probability"] for b in filled], [b["foreground_fraction"] for b in filled], "o", color="tab:red",
             markersize=3, label="bin mean probability")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction of pixels that are foreground",
            title=f"{title}\nECE {summary['ece']:.4f}  MCE {summary['mce']:.3f}  ({summary['pixels']:,} pixels)")
    top.legend(loc="upper left", fontsize=7)
    share = np.array([b["pixels"] for b in bins], dtype=float) / max(summary["pixels"], 1)
    bottom.bar(mid, np.where(share > 0, share, np.nan), width=width * 0.9, color="0.4")
    bottom.set(yscale="log", xlabel="predicted foreground probability", ylabel="share")
    fig.subplots_adjust(left=0.2, right=0.97, top=0.88, bottom=0.1, hspace=0.08)  # tight_layout: 0.1 s a call
    return fig


def render(fig, dpi: int = 110) -> np.ndarray:
    """The figure drawn once as an RGB uint8 array (for the PNG and the TensorBoard image alike)."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class Calibration:
    """Reliability of the foreground probability (the engine's ``probability``: after resampling to the source
    size, before the threshold) against the label, pooled over every pixel the engine sees in a run.

    At the end of each run it sets ``engine.state.metrics[name]`` (the ECE; the training run's history and
    TensorBoard scalars pick it up as ``val_ece``), ``engine.state.calibration`` (the summary, which ``evaluate``'s
    metrics.json includes), and writes ``<output_dir>/calibration.png`` and ``calibration.json``, and the diagram
    as a TensorBoard figure (``val/reliability`` for the validator, at the engine's epoch) to ``summary_writer``. Distributed validation:
    the bin counts are summed over ranks; rank 0 writes.

    Args:
        output_dir: where to write the PNG and JSON (None: not written).
        summary_writer: a TensorBoard ``SummaryWriter`` (None: none).
        num_bins: equal-width probability bins.
        name: the metric name.
    """

    def __init__(self, output_dir: str | None = None, summary_writer=None, num_bins: int = 20, name: str = "val_ece",
                 title: str = "validation"):
        self.out = Path(output_dir) if output_dir else None
        self.writer, self.num_bins, self.name, self.title = summary_writer, int(num_bins), name, title
        self.bins = np.zeros((3, self.num_bins))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._completed)

    def _reset(self, engine: Engine) -> None:
        self.bins = np.zeros((3, self.num_bins))

    def _iteration(self, engine: Engine) -> None:
        for case_id, _, o in case_items(engine):
            if "probability" not in o or "label" not in o:
                raise KeyError(f"{case_id}: calibration needs the kept probability and the label")
            prob, truth = torch.as_tensor(o["probability"]), torch.as_tensor(o["label"])
            self.bins += pooled_bins(prob.reshape(1, -1), (truth.reshape(1, -1) > 0.5), self.num_bins)

    def _completed(self, engine: Engine) -> None:
        bins = np.asarray(all_reduce_sum([float(x) for x in self.bins.ravel()])).reshape(3, self.num_bins)
        summary = summarize(bins)
        engine.state.metrics[self.name] = summary["ece"]
        engine.state.calibration = summary
        if not is_main() or (self.out is None and self.writer is None):
            return
        import matplotlib.pyplot as plt

        fig = reliability_figure(summary, f"{self.title}, epoch {engine.state.epoch}" if self.writer else self.title)
        image = render(fig)  # drawn once, at every validation: the PNG and TensorBoard share it
        plt.close(fig)
        if self.out is not None:
            from PIL import Image

            self.out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(self.out / "calibration.png")
            write_json(self.out / "calibration.json", {"split": self.title, "epoch": engine.state.epoch, **summary,
                                                        "definition": "pipeline.handlers.calibration.summarize"})
        if self.writer is not None:
            tag = "val/reliability" if self.name.startswith("val_") else "reliability"
            self.writer.add_image(tag, image, global_step=engine.state.epoch, dataformats="HWC")
