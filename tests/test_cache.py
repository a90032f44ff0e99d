"""Where cases are cached: memory, disk (keyed by case and transform parameters), or nowhere."""

import json

import pytest
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, ScaleIntensityd

from pipeline.data.cache import cached_dataset

from conftest import run_in_process


def data():
    return [{"image": torch.arange(16.0).reshape(1, 4, 4) * (i + 1)} for i in range(3)]


def test_kinds():
    t = Compose([ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)])
    assert type(cached_dataset(data(), t, "memory", progress=False)) is CacheDataset
    assert type(cached_dataset(data(), t, "none")) is Dataset
    with pytest.raises(ValueError, match="--cache must be one of memory, disk, none"):
        cached_dataset(data(), t, "ram")


def test_disk_cache_is_keyed_by_transform_parameters(tmp_path):
    a = cached_dataset(data(), Compose([ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)]), "disk", str(tmp_path))
    assert isinstance(a, PersistentDataset)
    first = a[1]["image"].clone()
    files = set(tmp_path.glob("*.pt"))
    assert len(files) == 1
    b = cached_dataset(data(), Compose([ScaleIntensityd(keys="image", minv=0.0, maxv=2.0)]), "disk", str(tmp_path))
    assert not torch.equal(b[1]["image"], first)  # a changed parameter is not served the old file
    assert len(set(tmp_path.glob("*.pt"))) == 2


def test_bundle_trains_with_a_disk_cache(tmp_path):
    cache = tmp_path / "cache"
    args = dict(epochs=1, batch_size=2, width=8, image_size=64, roi_size=[64, 64], dataset_dir=tmp_path / "PH2Dataset",
                default_dataset_dir=tmp_path / "PH2Dataset", synthetic_dir=tmp_path / "syn" / "PH2Dataset",
                synthetic_cases=8, cache="disk", cache_dir=cache, split_seed=4)  # 6 / 1 / 1 of these 8 ids
    run_in_process("training", output_dir=tmp_path / "run1", **args)
    files = sorted(cache.glob("*.pt"))
    sizes = json.loads((tmp_path / "run1" / "config.json").read_text())["split_sizes"]
    assert len(files) == sizes["train"] + sizes["val"]  # every case read (batch 2 divides 6), each stored once
    stamps = [f.stat().st_mtime_ns for f in files]
    run_in_process("training", output_dir=tmp_path / "run2", **args)
    assert sorted(cache.glob("*.pt")) == files  # the second run reads them back
    assert [f.stat().st_mtime_ns for f in files] == stamps  # without rewriting them
    val = [json.loads((tmp_path / r / "metrics.json").read_text())["history"][-1]["val_iou"] for r in ("run1", "run2")]
    assert val[0] == val[1]  # what was read back is what was computed (validation inverts the resize from it)
