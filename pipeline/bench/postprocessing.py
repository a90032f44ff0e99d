"""``python -m pipeline.bench.postprocessing``: hole filling, the project's ``FillBinaryHolesd`` against MONAI's
``FillHolesd``, on a 768x560 lesion mask with 2% pinholes (PH2's size): median milliseconds of each, interleaved so
that a busy machine slows both alike, and whether their pixels agree. A measurement, not a test (tests hold no
clocks)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from pipeline.bench.timing import median_time


def lesion_with_pinholes(height: int = 560, width: int = 768, seed: int = 0) -> torch.Tensor:
    yy, xx = np.mgrid[:height, :width]
    blob = (yy - height / 2) ** 2 / (0.36 * height) ** 2 + (xx - width / 2) ** 2 / (0.33 * width) ** 2 < 1
    mask = blob & (np.random.default_rng(seed).random((height, width)) > 0.02)
    return torch.from_numpy(mask[None]).float()


def measure(repeats: int = 7) -> dict:
    from monai.transforms import FillHolesd

    from pipeline.transforms import FillBinaryHolesd

    pred = lesion_with_pinholes()
    ours, monai = FillBinaryHolesd("pred"), FillHolesd("pred")
    same = torch.equal(ours({"pred": pred.clone()})["pred"], monai({"pred": pred.clone()})["pred"])
    rounds = {"ours": [], "monai": []}
    for _ in range(repeats):
        for name, t in (("ours", ours), ("monai", monai)):
            rounds[name].append(median_time(lambda: t({"pred": pred.clone()}), repeats=1, warmup=0))
    ms = {k: 1000 * float(np.median(v)) for k, v in rounds.items()}
    return {"shape": list(pred.shape[1:]), "repeats": repeats, "ours_ms": ms["ours"], "monai_ms": ms["monai"],
            "speedup": ms["monai"] / ms["ours"], "same_pixels": bool(same), "threads": torch.get_num_threads()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    res = measure(ap.parse_args(argv).repeats)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
