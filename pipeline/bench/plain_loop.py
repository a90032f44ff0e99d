"""The plain PyTorch training loop every benchmark measures the bundles against: one loop, no framework.

What a careful hand-written loop does: the data decoded once into memory (by the benchmark), each epoch the training
cases shuffled with a generator seeded once and cut into batches, each batch built on the main thread by the
benchmark's own function (its augmentation, written with torch ops), DiceCE (per-sample BCE + Dice on the sigmoid)
and one optimiser step per batch; validation every ``val_interval`` epochs and at the last, keeping the weights of the
best score (the bundles' checkpoint choice), then the test cases scored with the last and the best weights.

What truly differs per data set is passed in: how a batch is built from case indices (augmentation, intensity scale;
:func:`stacked` for cases kept as (image, mask) pairs), the validation score (per image or per patient volume), the
test scoring, and the optimiser (Adam at a fixed rate, or the bundle's AdamW with a cosine schedule). Used by
``pipeline.bench.speed`` (PH2: the bundle's training as a plain loop, and the earlier projects' recipe),
``pipeline.bench.lgg`` and ``pipeline.bench.dsb2018``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.bench.timing import minor_faults

Batch = Callable[[list[int], torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class PlainLoop:
    """One network trained by hand on ``n_cases`` training cases; ``batch(indices, generator)`` builds a batch of
    images and masks from case indices (drawing its augmentation from ``generator``). Batches of ``batch_size``,
    the last partial one dropped with ``drop_last``. ``cosine_epochs`` 0: Adam at a fixed ``lr`` (what a plain loop
    does); otherwise the bundle's optimiser, AdamW (weight decay 1e-4) with a cosine schedule over that many epochs.
    ``seed`` seeds the network's initial weights and the loop's generator."""

    def __init__(self, network: str, batch: Batch, n_cases: int, *, batch_size: int = 8, drop_last: bool = False,
                 width: int = 16, lr: float = 1e-3, cosine_epochs: int = 0, seed: int = 0):
        from monai.losses import DiceCELoss

        from pipeline.networks import build_network

        torch.manual_seed(seed)
        self.net = build_network(network, in_channels=3, out_channels=1, width=width)
        if cosine_epochs:
            self.opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=1e-4)
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, cosine_epochs)
        else:
            self.opt, self.sched = torch.optim.Adam(self.net.parameters(), lr=lr), None
        self.loss_fn, self.g = DiceCELoss(sigmoid=True), torch.Generator().manual_seed(seed)
        self.batch, self.n_cases, self.batch_size, self.drop_last = batch, n_cases, batch_size, drop_last
        self.best_state = None

    def epoch(self) -> dict:
        """Train one epoch; its wall time, images, training-step times (forward to optimiser step) and page faults."""
        t0, n, f0, steps = time.perf_counter(), 0, minor_faults(), []
        order = torch.randperm(self.n_cases, generator=self.g).tolist()
        stop = self.n_cases - self.batch_size + 1 if self.drop_last else self.n_cases
        self.net.train()
        for i in range(0, stop, self.batch_size):
            x, y = self.batch(order[i:i + self.batch_size], self.g)
            t_step = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            self.loss_fn(self.net(x), y).backward()
            self.opt.step()
            steps.append(time.perf_counter() - t_step)
            n += len(x)
        if self.sched is not None:
            self.sched.step()
        return {"s": time.perf_counter() - t0, "images": n, "step_s": steps, "faults": minor_faults() - f0}

    def fit(self, epochs: int, validate: Callable[[torch.nn.Module], float], val_interval: int, key: str,
            digits: int = 1) -> dict:
        """Train ``epochs`` epochs, scoring ``validate(net)`` every ``val_interval`` epochs and at the last and keeping
        the weights of the best score. Returns the training seconds, the best epoch, the best score (as ``key``) and
        the validation curve (``elapsed_s`` since the first epoch, rounded to ``digits``, validation included)."""
        best, best_epoch, curve, t0 = -1.0, 0, [], time.perf_counter()
        for epoch in range(1, epochs + 1):
            self.epoch()
            if epoch % val_interval == 0 or epoch == epochs:
                score = validate(self.net)
                curve.append({"epoch": epoch, "elapsed_s": round(time.perf_counter() - t0, digits), key: score})
                if score > best:
                    best, best_epoch = score, epoch
                    self.best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
        return {"train_s": round(time.perf_counter() - t0, 1), "best_epoch": best_epoch, key: best, "curve": curve}

    def last_and_best(self, score: Callable[[torch.nn.Module], object]) -> dict:
        """``score(net)`` with the last epoch's weights, then with the best validation epoch's (loaded for good)."""
        out = {"last": score(self.net)}
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        out["best"] = score(self.net)
        return out


def stacked(data: list[tuple[torch.Tensor, torch.Tensor]], augment) -> Batch:
    """A batch function for cases kept as (image, mask) pairs: each case of the batch through
    ``augment(image, mask, generator)`` on its own, then stacked."""

    def batch(indices: list[int], g: torch.Generator):
        pairs = [augment(*data[j], g) for j in indices]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    return batch


def read_image(path: str, rgb: bool = True) -> torch.Tensor:
    """An image file as a (C, H, W) float tensor, pixels over 255: three colour channels, or one grey one."""
    from PIL import Image

    with Image.open(path) as im:
        a = torch.from_numpy(np.asarray(im.convert("RGB" if rgb else "L"), dtype=np.float32))
    return (a.permute(2, 0, 1) if rgb else a[None]) / 255.0


def random_crop(img: torch.Tensor, lab: torch.Tensor, roi: int, g: torch.Generator, centred: bool = False):
    """A random ``roi`` x ``roi`` crop of an image and its mask, zero-padded first where smaller: on both sides
    (``centred``, as MONAI's ``SpatialPadd``) or at the bottom and right."""
    h, w = img.shape[1:]
    ph, pw = max(roi - h, 0), max(roi - w, 0)
    if ph or pw:
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2) if centred else (0, pw, 0, ph)
        img, lab = F.pad(img, pad), F.pad(lab, pad)
        h, w = img.shape[1:]
    y, x = int(torch.randint(0, h - roi + 1, (1,), generator=g)), int(torch.randint(0, w - roi + 1, (1,), generator=g))
    return img[:, y:y + roi, x:x + roi], lab[:, y:y + roi, x:x + roi]


def random_flips(img: torch.Tensor, lab: torch.Tensor, u) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip image and mask vertically where ``u[0] < 0.5`` and horizontally where ``u[1] < 0.5`` (two uniform draws)."""
    for dim, draw in zip((1, 2), u):
        if draw < 0.5:
            img, lab = img.flip(dim), lab.flip(dim)
    return img, lab


def reuse_or_run(path: Path, params: dict, run: Callable[[], dict], defaults: dict | None = None) -> dict:
    """The result saved at ``path`` when it was made with ``params`` (``defaults`` stand for keys older results do
    not record), else ``run()``'s, saved there: a stopped benchmark resumes at its next fold or seed."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if all({**(defaults or {}), **saved}.get(k) == v for k, v in params.items()):
            return saved
    res = run()
    path.write_text(json.dumps(res, indent=1))
    return res
