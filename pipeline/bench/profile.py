"""Parameters, FLOPs, CPU training throughput and inference latency of every registered network.

    python -m pipeline.bench.profile [--width 16] [--out docs/networks.md]

FLOPs are counted by ``torch.utils.flop_counter`` for one forward pass of one 3-channel 256x256 image (a
multiply-add counts as 2). Throughput: images/s of forward + backward + AdamW step on batches of 8 random 256x256
crops; latency: median seconds of one eval-mode forward (``torch.inference_mode``) of one image at 256x256 and at
768x560 (PH2 size). Timings use the machine's default torch thread count and are medians over repeats after warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.bench.timing import median_time
from pipeline.networks import NETWORKS, build_network


def profile(name: str, width: int = 16, batch: int = 8, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    net = build_network(name, in_channels=3, out_channels=1, width=width)
    params = sum(p.numel() for p in net.parameters())
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, 256, 256))
    flops = counter.get_total_flops()

    net.train()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x, y = torch.rand(batch, 3, 256, 256), (torch.rand(batch, 1, 256, 256) > 0.5).float()

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out[0] if isinstance(out, tuple) else out, y)
        loss.backward()
        opt.step()

    train_s = median_time(step, repeats)
    net.eval()
    latency = {}
    for h, w in ((256, 256), (560, 768)):
        img = torch.rand(1, 3, h, w)
        with torch.inference_mode():
            latency[f"{w}x{h}"] = median_time(lambda: net(img), repeats)
    return {"network": name, "width": width, "params": params, "gflops_256": flops / 1e9,
            "train_img_per_s_256": batch / train_s, "latency_s": latency}


def to_markdown(rows: list[dict]) -> str:
    lines = ["| network | params (M) | GFLOPs @256² | train img/s @256² (batch 8) | latency @256² (s) | latency @768x560 (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| `{r['network']}` | {r['params'] / 1e6:.2f} | {r['gflops_256']:.2f} | "
                     f"{r['train_img_per_s_256']:.1f} | {r['latency_s']['256x256']:.3f} | "
                     f"{r['latency_s']['768x560']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--networks", nargs="*", default=sorted(NETWORKS))
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    rows = []
    for name in args.networks:
        rows.append(profile(name, args.width, repeats=args.repeats))
        print(f"{name}: {rows[-1]}", flush=True)
    header = (f"Measured {date.today()} with `python -m pipeline.bench.profile --width {args.width}` on "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
              f"torch {torch.__version__}.")
    print("\n" + header + "\n\n" + to_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
