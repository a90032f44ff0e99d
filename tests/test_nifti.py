"""NIfTI volumes (MSD / nnU-Net layout): the reader, slice loading and its cache, re-assembly of predicted volumes
with the source affine and header, the synthetic sample and the bundle end to end (in process, tiny synthetic set)."""

import csv
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import MetaTensor
from monai.transforms import Compose

from pipeline.data import LAYOUTS, DatasetError, find_cases, find_inputs, nifti, splits
from pipeline.data.synthetic import MARKER, WRITERS, is_synthetic, write_nifti
from pipeline.handlers import SliceStack

from conftest import ROOT

BUNDLE = ROOT / "bundles" / "nifti.json"


@pytest.fixture(scope="module")
def nifti_dir(tmp_path_factory):
    return write_nifti(tmp_path_factory.mktemp("nifti") / "Task00_Organ", n_cases=3, seed=1)


def volume(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def save(data, path, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))


# --- reader ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_find_cases_one_case_per_slice_along_the_axis(nifti_dir, axis):
    cases = nifti.find_cases(nifti_dir, axis=axis)
    names = sorted(p.name[: -len(".nii.gz")] for p in (nifti_dir / "imagesTr").iterdir())
    assert len(names) == 3 and [c["group"] for c in cases] == sorted(c["group"] for c in cases)
    for name in names:
        image, label = nifti_dir / "imagesTr" / f"{name}.nii.gz", nifti_dir / "labelsTr" / f"{name}.nii.gz"
        mine = [c for c in cases if c["group"] == name]
        n = nib.load(str(image)).shape[axis]
        assert len(mine) == n and [c["slice"] for c in mine] == list(range(n))
        assert [c["case_id"] for c in mine] == [f"{name}_{k}" for k in range(n)]
        for c in mine:
            assert c["image"] == c["reference"] == str(image) and c["label"] == str(label)
            assert c["slice_axis"] == axis and isinstance(c["slice"], int)
    assert len({c["case_id"] for c in cases}) == len(cases)


def test_default_axis_layout_registry_and_inputs(nifti_dir):
    assert LAYOUTS["nifti"] == "pipeline.data.nifti" and nifti.DEFAULT_AXIS == 2
    cases = nifti.find_cases(nifti_dir)
    assert cases == nifti.find_cases(nifti_dir, axis=2) == find_cases("nifti", nifti_dir)
    # inference on the dataset root: the same slices (labels ride along unused); on imagesTr alone: images only
    assert find_inputs(nifti_dir, "nifti") == cases
    bare = nifti.find_cases(nifti_dir / "imagesTr", require_labels=False)
    assert [c["case_id"] for c in bare] == [c["case_id"] for c in cases] and all("label" not in c for c in bare)
    with pytest.raises(DatasetError, match="no label volumes"):
        nifti.find_cases(nifti_dir / "imagesTr")
    with pytest.raises(ValueError, match="slice axis must be 0, 1 or 2"):
        nifti.find_cases(nifti_dir, axis=3)


def test_splits_keep_a_volume_on_one_side(nifti_dir):
    cases = nifti.find_cases(nifti_dir)
    out = splits.assign(cases, val_fraction=0.15, test_fraction=0.2, seed=0)
    sides = {}
    for side, members in out.items():
        for c in members:
            sides.setdefault(c["group"], set()).add(side)
    assert len(sides) == 3 and all(len(s) == 1 for s in sides.values())


def test_nnunet_names(nifti_dir, tmp_path):
    d = shutil.copytree(nifti_dir, tmp_path / "Dataset001_Organ")
    for p in (d / "imagesTr").iterdir():
        p.rename(p.with_name(p.name.replace(".nii.gz", "_0000.nii.gz")))
    cases = nifti.find_cases(d)
    assert [c["case_id"] for c in cases] == [c["case_id"] for c in nifti.find_cases(nifti_dir)]
    assert all(c["image"].endswith(f"imagesTr/{c['group']}_0000.nii.gz") for c in cases)
    assert all(c["reference"] == c["image"] and c["label"].endswith(f"labelsTr/{c['group']}.nii.gz") for c in cases)
    assert [c["case_id"] for c in nifti.find_cases(d, require_labels=False)] == [c["case_id"] for c in cases]

    shutil.copy(d / "imagesTr" / "organ_002_0000.nii.gz", d / "imagesTr" / "organ_002_0001.nii.gz")
    with pytest.raises(DatasetError, match=r"organ_002: several modalities \(organ_002_0000.nii.gz, "
                                           r"organ_002_0001.nii.gz\); multi-modality .* is not supported yet"):
        nifti.find_cases(d)
    (d / "imagesTr" / "organ_002_0000.nii.gz").unlink()
    with pytest.raises(DatasetError, match="organ_002_0001.nii.gz: nnU-Net image without its _0000 channel"):
        nifti.find_cases(d)

    # MSD names that happen to end in four digits stay whole when the labels carry the same names
    msd = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (msd / sub).mkdir(parents=True)
        shutil.copy(nifti_dir / sub / "organ_001.nii.gz", msd / sub / "case_0001.nii.gz")
        shutil.copy(nifti_dir / sub / "organ_002.nii.gz", msd / sub / "case_0002.nii.gz")
    assert {c["group"] for c in nifti.find_cases(msd)} == {"case_0001", "case_0002"}


def test_errors_name_the_files(nifti_dir, tmp_path):
    with pytest.raises(DatasetError, match="NIfTI dataset folder does not exist"):
        nifti.find_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is not a NIfTI dataset folder: no imagesTr/"):
        nifti.find_cases(tmp_path / "empty")
    (tmp_path / "empty" / "imagesTr").mkdir()
    with pytest.raises(DatasetError, match="imagesTr: holds no .nii.gz volumes"):
        nifti.find_cases(tmp_path / "empty")

    d = shutil.copytree(nifti_dir, tmp_path / "Task")
    (d / "imagesTr" / "._organ_001.nii.gz").write_bytes(b"\0")  # macOS resource fork, as in the MSD archives
    (d / "imagesTs").mkdir()  # anything at the top level is allowed
    assert len(nifti.find_cases(d)) == len(nifti.find_cases(nifti_dir))

    (d / "imagesTr" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"imagesTr/notes.txt: unexpected file in imagesTr/"):
        nifti.find_cases(d)
    (d / "imagesTr" / "notes.txt").unlink()
    (d / "labelsTr" / "old").mkdir()
    with pytest.raises(DatasetError, match=r"labelsTr/old: unexpected folder in labelsTr/"):
        nifti.find_cases(d)
    (d / "labelsTr" / "old").rmdir()

    shutil.copy(d / "imagesTr" / "organ_001.nii.gz", d / "imagesTr" / "organ_001.nii")
    with pytest.raises(DatasetError, match=r"organ_001.nii.gz: case 'organ_001' appears twice"):
        nifti.find_cases(d)
    (d / "imagesTr" / "organ_001.nii").unlink()

    label = d / "labelsTr" / "organ_002.nii.gz"
    shutil.move(label, tmp_path / "kept.nii.gz")
    with pytest.raises(DatasetError, match=r"imagesTr/organ_002.nii.gz: image without its label \(expected "
                                           r".*labelsTr/organ_002.nii.gz\)"):
        nifti.find_cases(d)
    assert all("label" not in c for c in nifti.find_cases(d, require_labels=False) if c["group"] == "organ_002")
    shutil.move(tmp_path / "kept.nii.gz", label)
    shutil.copy(label, d / "labelsTr" / "organ_009.nii.gz")
    with pytest.raises(DatasetError, match=r"labelsTr/organ_009.nii.gz: label without its image"):
        nifti.find_cases(d, require_labels=False)
    (d / "labelsTr" / "organ_009.nii.gz").unlink()

    image = d / "imagesTr" / "organ_003.nii.gz"
    shape = nib.load(str(image)).shape
    save(np.zeros((shape[0], shape[1] - 1, shape[2]), np.uint8), d / "labelsTr" / "organ_003.nii.gz")
    with pytest.raises(DatasetError, match=rf"labelsTr/organ_003.nii.gz: label shape \({shape[0]}, {shape[1] - 1}, "
                                           rf"{shape[2]}\) differs from the shape \({shape[0]}, {shape[1]}, "
                                           rf"{shape[2]}\) of its image .*imagesTr/organ_003.nii.gz"):
        nifti.find_cases(d)
    save(np.zeros((*shape, 2), np.uint8), d / "labelsTr" / "organ_003.nii.gz")
    with pytest.raises(DatasetError, match=r"labelsTr/organ_003.nii.gz: volume of shape .*only 3D volumes"):
        nifti.find_cases(d)
    save(np.zeros(shape[:2], np.float32), image)
    with pytest.raises(DatasetError, match=r"imagesTr/organ_003.nii.gz: volume of shape .*only 3D volumes"):
        nifti.find_cases(d, require_labels=False)
    save(np.zeros((*shape, 1), np.float32), image)  # 4D with a singleton last dimension: a 3D volume
    save(np.zeros(shape, np.uint8), d / "labelsTr" / "organ_003.nii.gz")
    assert sum(c["group"] == "organ_003" for c in nifti.find_cases(d)) == shape[2]
    image.write_bytes(b"not a volume")
    with pytest.raises(DatasetError, match=r"imagesTr/organ_003.nii.gz: not a readable NIfTI volume"):
        nifti.find_cases(d)


# --- synthetic sample --------------------------------------------------------------------------------------------


def test_synthetic_sample(nifti_dir, tmp_path):
    assert WRITERS["nifti"] is write_nifti and is_synthetic(nifti_dir) and (nifti_dir / MARKER).is_file()
    doc = json.loads((nifti_dir / "dataset.json").read_text())
    assert doc["numTraining"] == 3 and doc["labels"] == {"0": "background", "1": "organ"}
    for case in sorted({c["group"] for c in nifti.find_cases(nifti_dir)}):
        img = nib.load(str(nifti_dir / "imagesTr" / f"{case}.nii.gz"))
        lab = nib.load(str(nifti_dir / "labelsTr" / f"{case}.nii.gz"))
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        assert img.shape == lab.shape and img.shape[:2] == (64, 64) and 10 <= img.shape[2] <= 14
        np.testing.assert_allclose(img.header.get_zooms(), (0.8, 0.8, 2.5), rtol=1e-6)
        np.testing.assert_allclose(img.affine, lab.affine)
        assert not np.allclose(img.affine[:3, 3], 0)
        data, mask = img.get_fdata(), volume(lab.get_filename())
        assert set(np.unique(mask)) == {0, 1}
        present = "".join("1" if s else "0" for s in mask.any(axis=(0, 1)))
        assert present[0] == present[-1] == "0" and "0" not in present.strip("0")  # one contiguous run inside
        assert data[mask > 0].mean() > 1.5 * data[(mask == 0) & (data > 100)].mean()  # a bright organ
    again = write_nifti(tmp_path / "again", n_cases=1, seed=1)
    np.testing.assert_array_equal(volume(again / "imagesTr" / "organ_001.nii.gz"),
                                  volume(nifti_dir / "imagesTr" / "organ_001.nii.gz"))
    other = write_nifti(tmp_path / "other", n_cases=1, seed=2)
    assert not np.array_equal(volume(other / "labelsTr" / "organ_001.nii.gz"),
                              volume(nifti_dir / "labelsTr" / "organ_001.nii.gz"))


# --- loading slices ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_load_nifti_sliced_is_np_take(nifti_dir, axis):
    case = nifti.find_cases(nifti_dir, axis=axis)[7]
    vol = nib.load(case["image"]).get_fdata(dtype=np.float32)
    d = nifti.LoadNiftiSliced(keys=["image", "label"])(dict(case))
    expected = np.take(vol, 7, axis=axis)
    assert isinstance(d["image"], MetaTensor) and d["image"].dtype.is_floating_point
    assert d["image"].numpy().dtype == np.float32
    assert tuple(d["image"].shape) == (1, *expected.shape)
    np.testing.assert_array_equal(d["image"].numpy()[0], expected)
    np.testing.assert_array_equal(d["label"].numpy()[0], np.take(volume(case["label"]), 7, axis=axis))
    assert d["image"].meta["filename_or_obj"] == case["image"]
    assert d["label"].meta["filename_or_obj"] == case["label"]
    assert d["slice"] == 7 and d["group"] == case["group"]  # the other keys are kept


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_slab_stacks_the_neighbours_and_repeats_the_ends(axis, as_tensor):
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    v = torch.from_numpy(vol) if as_tensor else vol
    n = vol.shape[axis]
    for k, want in ((0, [0, 0, 1]), (1, [0, 1, 2]), (n - 1, [n - 2, n - 1, n - 1])):
        got = nifti.slab(v, k, axis, context=1)
        assert isinstance(got, torch.Tensor) == as_tensor
        expected = np.stack([np.take(vol, i, axis=axis) for i in want])
        np.testing.assert_array_equal(np.asarray(got), expected, err_msg=f"axis {axis}, slice {k}")
    np.testing.assert_array_equal(np.asarray(nifti.slab(v, 2, axis, context=2))[[0, 4]],
                                  np.stack([np.take(vol, 0, axis=axis), np.take(vol, min(4, n - 1), axis=axis)]))
    np.testing.assert_array_equal(np.asarray(nifti.slab(v, 1, axis)), np.take(vol, 1, axis=axis)[None])
    with pytest.raises(IndexError, match=f"slice {n} is out of range along axis {axis}"):
        nifti.slab(v, n, axis, context=1)
    with pytest.raises(ValueError, match="context must be 0 or more"):
        nifti.slab(v, 0, axis, context=-1)


def test_load_nifti_sliced_with_context_gives_the_neighbours_as_channels(nifti_dir):
    cases = nifti.find_cases(nifti_dir)
    first, middle = cases[0], cases[7]
    vol = nib.load(middle["image"]).get_fdata(dtype=np.float32)
    load = nifti.LoadNiftiSliced(keys="image", context=1)
    d = load(dict(middle))
    assert tuple(d["image"].shape) == (3, *vol.shape[:2])
    for c, k in enumerate((6, 7, 8)):
        np.testing.assert_array_equal(d["image"].numpy()[c], vol[:, :, k])
    assert list(d["image"].meta["spatial_shape"]) == list(vol.shape[:2])
    start = load(dict(first))["image"].numpy()  # slice 0: no slice before it, so slice 0 twice
    np.testing.assert_array_equal(start[0], start[1])
    assert not np.array_equal(start[1], start[2])
    for bad in (-1, 0.5, True):
        with pytest.raises(ValueError, match="context must be a whole number of slices"):
            nifti.LoadNiftiSliced(keys="image", context=bad)


def test_volumes_load_once_for_consecutive_slices(nifti_dir, monkeypatch):
    calls = []
    real = nib.load

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    nifti.clear_cache()
    monkeypatch.setattr(nifti.nib, "load", counting)
    cases = nifti.find_cases(nifti_dir)
    calls.clear()  # the reader reads headers; count the transform's loads only
    load = nifti.LoadNiftiSliced(keys=["image", "label"])
    out = [load(dict(c)) for c in cases]
    assert len(out) == len(cases) and len(calls) == 2 * 3  # each image and label volume read once
    assert sorted(calls) == sorted({c[k] for c in cases for k in ("image", "label")})
    load(dict(cases[-1]))
    assert len(calls) == 6  # the last volumes are still cached
    load(dict(cases[0]))  # 4 volumes kept (cache_size): the first case's were dropped since
    assert calls[6:] == [cases[0]["image"], cases[0]["label"]]
    st = os.stat(cases[0]["image"])
    os.utime(cases[0]["image"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rewritten file is read again
    load(dict(cases[0]))
    assert calls[8:] == [cases[0]["image"]]
    with pytest.raises(IndexError, match=r"organ_001.nii.gz: slice 99 is out of range along axis 2"):
        load({**cases[0], "slice": 99})
    with pytest.raises(KeyError, match="has no 'slice_axis'"):
        load({"image": cases[0]["image"], "slice": 0})


def test_bundle_loading_binarises_multiclass_labels(nifti_dir, tmp_path):
    """The bundle's load_pair: z-scored image (nonzero voxels), label foreground = every class (MSD labels are often
    0/1/2), through the engine's CheckPaird."""
    d = shutil.copytree(nifti_dir, tmp_path / "Task")
    lab = nib.load(str(d / "labelsTr" / "organ_001.nii.gz"))
    multi = volume(lab.get_filename()).copy()
    multi[multi > 0] += np.random.default_rng(0).integers(0, 2, int((multi > 0).sum())).astype(np.uint8)
    assert set(np.unique(multi)) == {0, 1, 2}
    nib.save(nib.Nifti1Image(multi, lab.affine, lab.header), str(d / "labelsTr" / "organ_001.nii.gz"))
    parser = ConfigParser()
    parser.read_config(BUNDLE)
    assert parser.get_parsed_content("layout_args") == {"axis": 2}
    load = Compose(parser.get_parsed_content("load_pair"))
    k = int(np.argmax((multi > 0).sum(axis=(0, 1))))
    case = next(c for c in nifti.find_cases(d) if c["group"] == "organ_001" and c["slice"] == k)
    out = load(dict(case))
    np.testing.assert_array_equal(out["label"].numpy()[0], multi[..., k] > 0)
    img = out["image"].numpy()  # with context_slices, the slice between its neighbours, normalised together
    src = nifti.slab(nib.load(case["image"]).get_fdata(dtype=np.float32), k, 2,
                     context=parser.get_parsed_content("context_slices"))
    assert img.shape == src.shape and abs(img[src != 0].mean()) < 1e-4 and abs(img[src != 0].std() - 1) < 1e-3

    parser = ConfigParser()
    parser.read_config(BUNDLE)
    parser["slice_axis"] = 0
    assert parser.get_parsed_content("layout_args") == {"axis": 0}


def test_unreadable_voxels_name_the_file(nifti_dir, tmp_path):
    d = shutil.copytree(nifti_dir, tmp_path / "Task")
    image = d / "imagesTr" / "organ_001.nii.gz"
    image.write_bytes(image.read_bytes()[:4000])  # truncated: the header still reads, the voxels do not
    case = nifti.find_cases(d)[0]
    with pytest.raises(DatasetError, match=r"imagesTr/organ_001.nii.gz: cannot read the volume"):
        nifti.LoadNiftiSliced(keys="image")(case)


# --- re-assembly -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_stack_writes_the_volume_with_the_reference_geometry(nifti_dir, tmp_path, axis):
    image, label = nifti_dir / "imagesTr" / "organ_002.nii.gz", nifti_dir / "labelsTr" / "organ_002.nii.gz"
    truth = volume(label)
    stack = SliceStack()
    order = list(range(truth.shape[axis]))
    for k in order[::-1]:  # arrival order does not matter
        stack.add("organ_002", k, f"organ_002_{k}", np.take(truth, k, axis=axis) > 0, reference=str(image),
                  slice_axis=axis)
    out = stack.write_volume("organ_002", tmp_path / f"axis{axis}")
    assert out == tmp_path / f"axis{axis}" / "volumes" / "organ_002.nii.gz"
    written, ref = nib.load(str(out)), nib.load(str(image))
    assert written.shape == ref.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), truth)
    np.testing.assert_allclose(written.affine, ref.affine)
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "srow_x", "srow_y", "srow_z"):
        np.testing.assert_array_equal(written.header[key], ref.header[key])

    stack = SliceStack()
    for k in order[1:]:
        stack.add("organ_002", k, f"organ_002_{k}", np.take(truth, k, axis=axis) > 0, reference=str(image),
                  slice_axis=axis)
    with pytest.raises(RuntimeError, match="do not cover the"):
        stack.write_volume("organ_002", tmp_path)


def test_slice_stack_reference_with_singleton_4th_dim_and_without_reference(nifti_dir, tmp_path):
    src = nib.load(str(nifti_dir / "imagesTr" / "organ_001.nii.gz"))
    ref4 = tmp_path / "ref4.nii.gz"
    nib.save(nib.Nifti1Image(src.get_fdata(dtype=np.float32)[..., None], src.affine), str(ref4))
    truth = volume(nifti_dir / "labelsTr" / "organ_001.nii.gz")
    stack, plain = SliceStack(), SliceStack()
    for k in range(truth.shape[2]):
        stack.add("a", k, f"a_{k}", truth[..., k] > 0, reference=str(ref4), slice_axis=2)
        plain.add("a", k, f"a_{k}", truth[..., k] > 0)
    written = nib.load(str(stack.write_volume("a", tmp_path / "ref")))
    assert written.shape == truth.shape and np.allclose(written.affine, src.affine)
    # no reference: as before, (H, W, n) with the identity affine
    written = nib.load(str(plain.write_volume("a", tmp_path / "plain")))
    assert written.shape == truth.shape and np.array_equal(written.affine, np.eye(4))
    np.testing.assert_array_equal(np.asarray(written.dataobj), truth)


# --- the bundle end to end ---------------------------------------------------------------------------------------


def run(run_id, **overrides):
    wf = ConfigWorkflow(config_file=str(BUNDLE), workflow_type=None, run_id=run_id, logging_file=False, **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()


def test_nifti_bundle_trains_evaluates_and_infers(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the bundle includes configs/engine.json relative to the repository root
    synth = tmp_path / "synthetic" / "nifti"
    common = {"width": 4, "sw_batch_size": 1, "cache_workers": 1}
    run("training", epochs=1, val_interval=1, batch_size=4, dataset_dir=str(tmp_path / "nifti"),
        default_dataset_dir=str(tmp_path / "nifti"), synthetic_dir=str(synth), synthetic_cases=3,
        output_dir=str(tmp_path / "run"), **common)
    # the default dataset folder is absent: the synthetic fallback wrote a 3-volume sample
    assert is_synthetic(synth) and len({c["group"] for c in nifti.find_cases(synth)}) == 3
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] and 0.0 <= metrics["history"][0]["val_iou"] <= 1.0
    split = json.loads((run_dir / "splits.json").read_text())
    volumes = {s: {cid.rsplit("_", 1)[0] for cid in split[s]} for s in splits.SPLITS}
    assert all(volumes.values()) and sum(len(v) for v in volumes.values()) == 3  # a volume never spans sides
    ckpt = str(run_dir / "models" / "best.pt")

    cases = nifti.find_cases(synth)
    n_slices = {g: sum(c["group"] == g for c in cases) for g in {c["group"] for c in cases}}
    out = tmp_path / "eval"
    run("evaluate", dataset_dir=str(synth), split="all", ckpt=ckpt, output_dir=str(out), **common)
    rows = list(csv.DictReader(open(out / "per_group.csv")))
    assert [r["group"] for r in rows] == sorted(n_slices)
    per_case = list(csv.DictReader(open(out / "per_case.csv")))
    assert len(per_case) == len(cases) and (out / "worst_cases.png").is_file()
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["synthetic"] is True and doc["n_cases"] == len(cases) and doc["groups"]["n"] == 3
    for r in rows:
        g = r["group"]
        assert int(r["n_slices"]) == n_slices[g]
        assert int(r["area_true"]) == int(volume(synth / "labelsTr" / f"{g}.nii.gz").sum())
        written, ref = nib.load(str(out / "volumes" / f"{g}.nii.gz")), nib.load(str(synth / "imagesTr" / f"{g}.nii.gz"))
        assert written.shape == ref.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, ref.affine)
        data = np.asarray(written.dataobj)
        assert int(data.sum()) == int(r["area_pred"])
        mine = {int(p["case_id"].rsplit("_", 1)[1]): int(p["area_pred"]) for p in per_case
                if p["case_id"].rsplit("_", 1)[0] == g}
        assert [int(data[..., k].sum()) for k in range(n_slices[g])] == [mine[k] for k in range(n_slices[g])]

    out = tmp_path / "infer"
    run("inference", input_dir=str(synth), ckpt=ckpt, output_dir=str(out), **common)
    assert {p.name for p in (out / "volumes").iterdir()} == {f"{g}.nii.gz" for g in n_slices}
    assert not (out / "masks").exists()  # slices of volumes: the volume is the output
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(preds) == len(cases)
    for g in n_slices:
        written, ref = nib.load(str(out / "volumes" / f"{g}.nii.gz")), nib.load(str(synth / "imagesTr" / f"{g}.nii.gz"))
        assert written.shape == ref.shape and set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
        np.testing.assert_allclose(written.affine, ref.affine)
        assert int(np.asarray(written.dataobj).sum()) == sum(int(p["area_pred"]) for p in preds
                                                            if p["case_id"].rsplit("_", 1)[0] == g)

    # another slicing axis (bundle id slice_axis -> layout_args -> the reader): sagittal slices, same volumes back;
    # one volume each (test split; a plain imagesTs-like folder for inference) and 64 px windows, to stay quick
    test_volume = sorted(volumes["test"])[0]
    shape = nib.load(str(synth / "imagesTr" / f"{test_volume}.nii.gz")).shape
    axis0 = {"slice_axis": 0, "roi_size": [64, 64], "override_recorded": True, **common}  # 64: not as trained
    out = tmp_path / "eval-axis0"
    run("evaluate", dataset_dir=str(synth), split="test", ckpt=ckpt, output_dir=str(out), **axis0)
    rows = list(csv.DictReader(open(out / "per_group.csv")))
    assert [(r["group"], int(r["n_slices"])) for r in rows] == [(test_volume, shape[0])]
    written = nib.load(str(out / "volumes" / f"{test_volume}.nii.gz"))
    assert written.shape == shape and int(np.asarray(written.dataobj).sum()) == int(rows[0]["area_pred"])
    inputs = tmp_path / "imagesTs"
    inputs.mkdir()
    shutil.copy(synth / "imagesTr" / f"{test_volume}.nii.gz", inputs)
    out = tmp_path / "infer-axis0"
    run("inference", input_dir=str(inputs), ckpt=ckpt, output_dir=str(out), **axis0)
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(preds) == shape[0] and {(int(p["height"]), int(p["width"])) for p in preds} == {shape[1:]}
    written = nib.load(str(out / "volumes" / f"{test_volume}.nii.gz"))
    assert written.shape == shape
    np.testing.assert_allclose(written.affine, nib.load(str(inputs / f"{test_volume}.nii.gz")).affine)
