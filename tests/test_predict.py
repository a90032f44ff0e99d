"""The Python API (:class:`pipeline.Segmenter`): masks identical to the ``inference`` command's on the same images,
from paths, arrays, tensors and batches, for every bundle; probabilities; a TorchScript file; bad input.

Each bundle trains one epoch on a small synthetic sample, then its best.pt is replaced by a hand-set model
(:func:`conftest.balance_output` on a preprocessed image) whose masks hold both classes, so that equal masks mean
something: an untrained network's all-foreground (or all-background) masks would agree blindly.
"""

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import pipeline
from pipeline.data.synthetic import WRITERS
from pipeline.predict import PredictError

from conftest import balance_output, run_bundle, run_in_process

# bundle: synthetic cases, training overrides (one epoch, small)
SETUP = {
    "ph2": (6, {"image_size": 64, "roi_size": [64, 64]}),
    "dsb2018": (6, {"roi_size": [64, 64]}),
    "lgg": (3, {"image_size": 64, "roi_size": [64, 64], "val_fraction": 0.34, "test_fraction": 0.34}),
    "nifti": (3, {"roi_size": [64, 64], "val_fraction": 0.34, "test_fraction": 0.34, "context_slices": 1}),  # 2.5D
}


def read_mask(path):
    return np.asarray(Image.open(path)) > 0


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """(bundle, dataset folder, run folder, inference folder of the command line) with a hand-set best.pt."""
    bundle = request.param
    n_cases, overrides = SETUP[bundle]
    tmp = tmp_path_factory.mktemp(bundle)
    data = WRITERS[bundle](tmp / "data", n_cases=n_cases, seed=5)
    run = tmp / "run"
    config = f"bundles/{bundle}.json"
    run_in_process("training", config, dataset_dir=data, output_dir=run, epochs=1, width=4, batch_size=2,
                   val_interval=1, **overrides)
    seg = pipeline.Segmenter.from_run(run, device="cpu")
    first = seg._cases(next(iter(_inputs(bundle, data).values())), 0)[0]
    x = seg._preprocess(first[len(first) // 2], "calibration")["image"].as_tensor()[None]
    torch.manual_seed(0)
    torch.save(balance_output(seg.network, x).state_dict(), run / "models" / "best.pt")
    out = tmp / "cli"
    if bundle == "ph2":  # the command itself once; the other bundles through the same workflow in process
        run_bundle("run", "inference", "--config_file", config, "--ckpt", run / "models" / "best.pt",
                   "--input_dir", data, "--output_dir", out)
    else:
        run_in_process("inference", config, ckpt=run / "models" / "best.pt", input_dir=data, output_dir=out)
    return bundle, data, run, out


def _inputs(bundle, data):
    """The image files the command line read, by case id."""
    if bundle == "ph2":
        files = data.rglob("*_Dermoscopic_Image/*.bmp")
    elif bundle == "dsb2018":
        files = data.glob("*/images/*.png")
    elif bundle == "lgg":
        files = (p for p in data.glob("*/*.tif") if not p.stem.endswith("_mask"))
    else:
        files = (data / "imagesTr").glob("*.nii.gz")
    return {p.name.split(".")[0] if bundle == "nifti" else p.stem: p for p in sorted(files)}


@pytest.mark.parametrize("trained", list(SETUP), indirect=True)
def test_masks_equal_the_command_lines(trained):
    bundle, data, run, out = trained
    seg = pipeline.Segmenter.from_run(run, device="cpu")
    inputs = _inputs(bundle, data)
    if bundle == "nifti":
        for case, path in inputs.items():
            want = np.asarray(nib.load(out / "volumes" / f"{case}.nii.gz").dataobj) > 0
            assert 0.02 < want.mean() < 0.98, (case, want.mean())  # both classes
            np.testing.assert_array_equal(seg.predict(path), want)
            np.testing.assert_array_equal(seg.predict(np.asarray(nib.load(path).dataobj)), want)  # a 3D array
        return
    cases = sorted(inputs)[:4]
    wants = [read_mask(out / "masks" / f"{c}.png") for c in cases]
    assert 0.02 < np.mean([w.mean() for w in wants]) < 0.98  # both classes, over the cases compared
    got = seg.predict([inputs[c] for c in cases])  # a list of paths
    for c, g, w in zip(cases, got, wants):
        assert g.dtype == bool and g.shape == w.shape, (c, g.shape, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=c)
    if bundle == "lgg":  # per-patient scaling: arrays are refused (test_bad_input_is_named)
        return
    for c, w in zip(cases, wants):
        array = np.asarray(Image.open(inputs[c]).convert("RGB"))  # (H, W, 3) as read
        np.testing.assert_array_equal(seg.predict(array), w, err_msg=f"{c} numpy")
        np.testing.assert_array_equal(seg.predict(torch.from_numpy(array.copy()).permute(2, 0, 1)), w,
                                      err_msg=f"{c} torch (C, H, W)")


@pytest.mark.parametrize("trained", ["dsb2018"], indirect=True)  # no lesion post-processing: mask = p >= threshold
def test_probabilities_are_what_the_mask_thresholds(trained):
    bundle, data, run, _ = trained
    seg = pipeline.Segmenter.from_run(run, device="cpu")
    path = next(iter(_inputs(bundle, data).values()))
    mask, prob = seg.predict(path, probabilities=True)
    assert prob.dtype == np.float32 and prob.shape == mask.shape == Image.open(path).size[::-1]
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    np.testing.assert_array_equal(mask, prob >= seg.settings["threshold"])
    assert 0.02 < mask.mean() < 0.98


@pytest.mark.parametrize("trained", ["ph2"], indirect=True)  # the .ts path differs only in how the net is loaded
def test_torchscript_file_predicts_the_same_masks(trained):
    bundle, data, run, out = trained
    seg = pipeline.Segmenter.from_run(run, device="cpu")
    torch.jit.script(seg.network).save(run / "models" / "model.ts")  # beside best.pt: its run record is found
    ts = pipeline.Segmenter.from_run(run / "models" / "model.ts", device="cpu")
    assert isinstance(ts.network, torch.jit.ScriptModule)
    path = next(iter(_inputs(bundle, data).values()))
    np.testing.assert_array_equal(ts.predict(path), seg.predict(path))


@pytest.mark.parametrize("trained", ["ph2", "lgg"], indirect=True)  # an RGB model; a per-patient scaled one
def test_bad_input_is_named(trained, tmp_path):
    bundle, data, run, _ = trained
    seg = pipeline.Segmenter.from_run(run, device="cpu")
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(PredictError, match="nothing.png: no such file"):
        seg.predict(tmp_path / "nothing.png")
    if bundle == "lgg":
        with pytest.raises(PredictError, match="input 0: .*patient.*give paths"):
            seg.predict(np.zeros((64, 64, 3), np.uint8))
        return
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(PredictError, match="broken.png: cannot be read"):
        seg.predict(broken)
    with pytest.raises(PredictError, match=r"input 0: shape \(64, 64, 4\); this model takes 2D images with 3"):
        seg.predict(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(PredictError, match=r"input 1: shape \(5, 64, 64, 3\)|input 0: shape \(5, 64, 64\)"):
        seg.predict(np.zeros((5, 64, 64), np.uint8))  # a volume given to a 2D model
    with pytest.raises(PredictError, match="input 0: a dict"):
        seg.predict({"image": "x.png"})
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("trained", ["ph2", "nifti"], indirect=True)
def test_inference_writes_probabilities_and_uncertainty(trained, tmp_path):
    """``--save_probabilities true`` with flip TTA: the masks do not change; the probability and the disagreement
    of the passes are written (8-bit PNG for images, float32 NIfTI with the source's affine for volumes) and equal
    what the Python API returns."""
    bundle, data, run, _ = trained
    config = f"bundles/{bundle}.json"
    common = {"ckpt": run / "models" / "best.pt", "input_dir": data, "flip_tta": True, "override_recorded": True}
    run_in_process("inference", config, output_dir=tmp_path / "p", save_probabilities=True, **common)
    run_in_process("inference", config, output_dir=tmp_path / "m", **common)
    seg = pipeline.Segmenter.from_run(run, device="cpu", flip_tta=True, override_recorded=True)
    inputs = _inputs(bundle, data)
    if bundle == "nifti":
        for case, path in inputs.items():
            want = [np.asarray(nib.load(tmp_path / d / "volumes" / f"{case}.nii.gz").dataobj) for d in ("p", "m")]
            np.testing.assert_array_equal(*want)
            mask, prob, sd = seg.predict(path, probabilities=True, uncertainty=True)
            for folder, expected in (("probabilities", prob), ("uncertainty", sd)):
                img = nib.load(tmp_path / "p" / folder / f"{case}.nii.gz")
                np.testing.assert_allclose(img.affine, nib.load(path).affine, atol=1e-5)
                assert img.get_data_dtype() == np.float32 and img.shape == mask.shape
                np.testing.assert_allclose(np.asarray(img.dataobj), expected, atol=1e-6)
            assert sd.max() > 0.01 and 0.02 < mask.mean() < 0.98
        return
    for case, path in list(inputs.items())[:3]:
        np.testing.assert_array_equal(read_mask(tmp_path / "p" / "masks" / f"{case}.png"),
                                      read_mask(tmp_path / "m" / "masks" / f"{case}.png"))
        mask, prob, sd = seg.predict(path, probabilities=True, uncertainty=True)
        np.testing.assert_array_equal(mask, read_mask(tmp_path / "p" / "masks" / f"{case}.png"))
        p8 = np.asarray(Image.open(tmp_path / "p" / "probabilities" / f"{case}.png")).astype(float)
        u8 = np.asarray(Image.open(tmp_path / "p" / "uncertainty" / f"{case}.png")).astype(float)
        assert p8.shape == u8.shape == mask.shape
        np.testing.assert_allclose(p8, np.rint(prob * 255), atol=1)
        np.testing.assert_allclose(u8, np.rint(np.clip(sd * 510, 0, 255)), atol=1)
        assert sd.max() > 0.01  # the flipped passes of this hand-set model disagree somewhere
    assert not (tmp_path / "m" / "probabilities").exists()


@pytest.mark.parametrize("trained", ["dsb2018"], indirect=True)
def test_uncertainty_needs_something_to_disagree(trained):
    seg = pipeline.Segmenter.from_run(trained[2], device="cpu")
    with pytest.raises(PredictError, match="uncertainty needs predictions that can disagree"):
        seg.predict(next(iter(_inputs("dsb2018", trained[1]).values())), uncertainty=True)
