"""The speed benchmark's own pieces that decide its verdicts (the benchmark itself is not a test: it takes minutes)."""

from pipeline.bench import speed as bench
from pipeline.data.synthetic import write_ph2


def test_first_time_a_curve_reaches_a_level():
    curve = [{"elapsed_s": 10, "val_iou": 0.80}, {"elapsed_s": 20, "val_iou": 0.86}, {"elapsed_s": 30, "val_iou": 0.84}]
    assert bench._first_time(curve, 0.85) == 20
    assert bench._first_time(curve, 0.80) == 10
    assert bench._first_time(curve, 0.90) is None


def test_plain_time_to_quality_loop_validates_at_source_resolution(tmp_path):
    root = write_ph2(tmp_path / "PH2Dataset", n_cases=10)
    res = bench.plain_time_to_quality(str(root), "unet", epochs=3, size=64, batch_size=4, val_interval=2)
    assert [c["epoch"] for c in res["curve"]] == [2, 3]  # every val_interval epochs and at the last
    assert all(0 <= c["val_iou"] <= 1 for c in res["curve"])
    assert res["curve"][0]["elapsed_s"] < res["curve"][1]["elapsed_s"] == res["total_s"]


def test_cache_bytes_counts_the_cached_tensors():
    import torch
    from monai.data import CacheDataset

    data = [{"image": torch.zeros(3, 10, 10), "label": torch.zeros(1, 10, 10, dtype=torch.uint8)} for _ in range(4)]
    ds = CacheDataset(data, transform=None, progress=False)
    assert bench._cache_bytes(ds) == 4 * (3 * 100 * 4 + 100)


def test_interleaved_engine_and_plain_loop_alternate_epochs(tmp_path):
    root = write_ph2(tmp_path / "PH2Dataset", n_cases=10)
    res = bench.interleaved_train(str(root), "unet", epochs=2, image_size=64, roi_size=[64, 64], batch_size=2)
    assert res["epochs"] == 2 and len(res["pairs"]) == 2  # 2 + warm-up pair; the validating last epoch untimed
    for p in res["pairs"]:
        assert p["engine_images_per_s"] > 0 and p["plain_images_per_s"] > 0
    ratios = sorted(p["engine_images_per_s"] / p["plain_images_per_s"] for p in res["pairs"])
    assert res["ratio_min"] == ratios[0] and res["ratio_max"] == ratios[-1]


def test_plain_loop_epoch_sees_every_full_batch(tmp_path):
    root = write_ph2(tmp_path / "PH2Dataset", n_cases=10)
    loop = bench.ph2_loop(str(root), "unet", epochs=1, batch_size=2, image_size=64, roi=64)
    out = loop.epoch()
    assert out["images"] == loop.n_cases // 2 * 2 and len(out["step_s"]) == loop.n_cases // 2
