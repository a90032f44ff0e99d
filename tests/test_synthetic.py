import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.data import dsb2018, folder, lgg, marker, nifti, ph2
from pipeline.data import synthetic as S

from conftest import ROOT


def test_dermoscopy_image_is_plausible_and_mask_exact():
    rng = np.random.default_rng(0)
    img, mask = S.dermoscopy_image(rng, 560, 768)
    assert img.shape == (560, 768, 3) and img.dtype == np.uint8 and mask.shape == (560, 768)
    assert 0.03 < mask.mean() < 0.5
    centre = (slice(140, 420), slice(190, 580))
    lesion = img[centre][mask[centre]].mean(0)
    skin = img[centre][~mask[centre]].mean(0)
    assert lesion.sum() < skin.sum() - 100  # pigmented lesion darker than skin
    assert skin[0] > skin[2]  # skin-toned: more red than blue
    assert img[:20, :20].mean() < img[centre].mean()  # vignetted corners


def test_write_ph2_layout_and_quirks(tmp_path):
    root = S.write_ph2(tmp_path / "PH2Dataset", n_cases=4, seed=1)
    cases = ph2.find_cases(root)
    assert [c["case_id"] for c in cases] == ["IMD901", "IMD902", "IMD903", "IMD904"]
    modes = [Image.open(c["label"]).mode for c in cases]
    assert modes[0] == "RGB" and set(modes[1:]) == {"1"}
    for c in cases:
        w, h = Image.open(c["image"]).size
        assert 761 <= w <= 769 and 553 <= h <= 577
        assert Image.open(c["label"]).size == (w, h)
        assert any((root / ph2.IMAGES_DIR / c["case_id"] / f"{c['case_id']}_roi").iterdir())
    assert S.is_synthetic(root) and S.is_synthetic(root / ph2.IMAGES_DIR)


def test_write_ph2_is_deterministic(tmp_path):
    a = S.write_ph2(tmp_path / "a", n_cases=2, seed=5)
    b = S.write_ph2(tmp_path / "b", n_cases=2, seed=5)
    for ca, cb in zip(ph2.find_cases(a), ph2.find_cases(b)):
        assert np.array_equal(np.asarray(Image.open(ca["image"])), np.asarray(Image.open(cb["image"])))


def test_resolve_dataset_dir(tmp_path, caplog):
    default, synth = str(tmp_path / "data" / "PH2Dataset"), str(tmp_path / "synthetic" / "PH2Dataset")
    with caplog.at_level("WARNING"):
        got = S.resolve_dataset_dir(default, default, "ph2", synth, n_cases=3)
    assert got == synth and len(ph2.find_cases(got)) == 3
    assert "SYNTHETIC DATA" in caplog.text and default in caplog.text
    # reused as is, regenerated when its parameters change
    mtime = (tmp_path / "synthetic" / "PH2Dataset" / S.MARKER).stat().st_mtime_ns
    S.resolve_dataset_dir(default, default, "ph2", synth, n_cases=3)
    assert (tmp_path / "synthetic" / "PH2Dataset" / S.MARKER).stat().st_mtime_ns == mtime
    S.resolve_dataset_dir(default, default, "ph2", synth, n_cases=5)
    assert len(ph2.find_cases(synth)) == 5
    # a path the user gave that does not exist is an error, never a fallback
    with pytest.raises(FileNotFoundError, match="dataset_dir does not exist: .*typo"):
        S.resolve_dataset_dir(str(tmp_path / "typo"), default, "ph2", synth)
    # a real folder is used as it is
    real = tmp_path / "real"
    real.mkdir()
    assert S.resolve_dataset_dir(str(real), default, "ph2", synth) == str(real)


def test_readers_only_read():
    """Readers import the marker, never the synthetic package (whose writers import the readers' layout names), so
    the package has no import cycle; the writers live in pipeline.data.synthetic only."""
    code = ("import sys\n"
            "from pipeline.data import dsb2018, folder, lgg, marker, nifti, ph2\n"
            "print(sorted(m for m in sys.modules if m.startswith('pipeline.data.synthetic')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
    for reader in (dsb2018, folder, lgg, nifti, ph2):
        assert not [name for name in vars(reader) if name.startswith("write_")], reader.__name__
    assert S.MARKER is marker.MARKER and S.is_synthetic is marker.is_synthetic
    assert sorted(S.WRITERS) == ["dsb2018", "lgg", "nifti", "ph2"]
    assert [S.WRITERS[k].__module__ for k in ("ph2", "lgg", "dsb2018", "nifti")] == [
        "pipeline.data.synthetic.ph2", "pipeline.data.synthetic.lgg", "pipeline.data.synthetic.dsb2018",
        "pipeline.data.synthetic.nifti"]
