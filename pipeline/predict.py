"""Prediction from Python: a trained run (or a cross-validation folder, or an exported TorchScript file) as one object
that turns images into masks, exactly as the ``inference`` command does.

    from pipeline import Segmenter

    seg = Segmenter.from_run("runs/ph2-unet-20261203-101500")      # or runs/cv/ph2-unet-5fold, or model.ts
    mask = seg.predict("IMD002.bmp")                                # bool (H, W), the image's full resolution
    mask, prob = seg.predict(image_array, probabilities=True)       # numpy (H, W, C) as read, or torch (C, H, W)
    masks = seg.predict(["a.png", "b.png"])                         # a list (or a 4D batch) gives a list

Nothing is re-implemented here: the bundle the run was trained with is parsed with the run's recorded settings
(:func:`pipeline.runs.resolve`, as evaluate and inference restore them) and its own components are used as they
are: the network (or fold ensemble), ``infer#preprocessing``, the sliding-window (and TTA) inferer
``validate#inferer``, and ``infer#postprocessing`` (resampling back to the source size, threshold, lesion
post-processing), run by a MONAI ``SupervisedEvaluator`` like the command's. So masks equal the command's
``masks/<case>.png`` pixel for pixel, on CPU or CUDA (AMP on CUDA, as the bundles run).

Arrays skip only the bundle's file reading (``LoadImaged`` / ``EnsureChannelFirstd``); everything after it runs on
them, so they must hold what the reader would give: the values as stored (0..255 for PNG, JPEG, BMP, TIFF slices),
numpy ``(H, W)`` or ``(H, W, C)``, torch ``(H, W)`` or ``(C, H, W)``, with the model's channel count. A NIfTI model
(``bundles/nifti.json``) takes a volume path or a 3D array and returns the 3D mask, slice by slice along the run's
``slice_axis``. An LGG model trained with ``intensity_norm patient`` scales each slice by its patient's percentiles,
so it needs slice paths inside their patient folder. Bad input (an unreadable file, the wrong channel count, a
volume given to a 2D model) raises :class:`PredictError` naming the input and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
_READERS = ("LoadImaged", "LoadNiftiSliced", "EnsureChannelFirstd")


class PredictError(ValueError):
    """An input :meth:`Segmenter.predict` cannot take; the message names it and says what was expected."""


@contextlib.contextmanager
def _in_folder(folder: Path):
    # the bundles pull in configs/*.json by paths relative to the project root (MONAI resolves them from the cwd)
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _bundle_of(ckpt: Path) -> Path:
    """The bundle file a run (or cross-validation folder, or a checkpoint inside one) was trained with."""
    from . import crossval
    from .runs import find_record

    if crossval.is_ensemble(str(ckpt)):
        record = crossval.record(str(ckpt))[1]
    else:
        path = find_record(ckpt)
        if path is None:
            raise PredictError(f"{ckpt}: not inside a training run folder (no config.json beside it), so the bundle "
                               "it was trained with is unknown: pass bundle='bundles/<name>.json'")
        record = json.loads(path.read_text()).get("hyperparameters") or {}
    name = record.get("bundle_file")
    if not name:
        raise PredictError(f"{ckpt}: its run record names no bundle file: pass bundle='bundles/<name>.json'")
    return _existing_bundle(name)


def _existing_bundle(name) -> Path:
    for candidate in (Path(name), REPO / name):
        if candidate.is_file():
            return candidate.resolve()
    raise PredictError(f"bundle file {name} not found (looked in {Path.cwd()} and {REPO})")


def _checkpoint(path: Path, ckpt: str) -> Path:
    """A training run folder -> its ``models/<ckpt>``; a cross-validation folder, a checkpoint or a .ts file as is."""
    from . import crossval

    if path.is_dir() and not crossval.is_ensemble(str(path)):
        if not (path / "models").is_dir():
            raise PredictError(f"{path}: neither a training run (no models/) nor a finished cross-validation folder")
        path = path / "models" / ckpt
    if not path.exists():
        raise PredictError(f"{path}: no such checkpoint")
    return path


class Segmenter:
    """A trained model with the preprocessing, inferer and post-processing of the run that made it.

    Build it with :meth:`from_run`; call :meth:`predict`. Attributes: ``settings`` (the run's resolved settings),
    ``network``, ``device``, ``bundle_file``.
    """

    def __init__(self, parser, settings: dict, bundle_file: Path, device: torch.device):
        self.parser, self.settings, self.bundle_file, self.device = parser, settings, bundle_file, device
        with _in_folder(REPO):
            self.network = parser.get_parsed_content("net")
            self.inferer = parser.get_parsed_content("validate#inferer")
            self.preprocessing = parser.get_parsed_content("infer#preprocessing")
            self.postprocessing = parser.get_parsed_content("infer#postprocessing")
            self.amp = bool(parser.get_parsed_content("amp")) and device.type == "cuda"
            self.measures_uncertainty = bool(parser.get_parsed_content("uncertainty"))
        from .handlers.checkpoints import load_network_weights
        from .networks.ensemble import FoldEnsemble

        if not isinstance(self.network, (torch.jit.ScriptModule, FoldEnsemble)):  # those come with their weights
            load_network_weights(self.network, str(parser["ckpt"]), device)
        self.network.eval()
        steps = self.preprocessing.flatten().transforms
        last_reader = max(i for i, t in enumerate(steps) if type(t).__name__ in _READERS)
        from monai.transforms import Compose

        # the same transform objects, so the post-processing's Invertd recognises their trace
        self._after_reading = Compose(list(steps[last_reader + 1:]))
        self._needs_path = any(type(t).__name__ == "ScaleByPatientd" for t in steps[last_reader + 1:])
        self.in_channels = int(settings["in_channels"])
        self.volumes = settings["layout"] == "nifti"
        self.slice_axis = int(settings.get("layout_args", {}).get("axis", 2)) if self.volumes else None
        self.context = int(settings.get("context_slices", 0))  # a NIfTI model's neighbouring slices on each side

    @classmethod
    def from_run(cls, path, ckpt: str = "best.pt", device=None, bundle=None, **overrides) -> "Segmenter":
        """Load a model with everything its run recorded.

        Args:
            path: a training run folder (``runs/<run>``, its ``models/<ckpt>`` is used), a checkpoint file inside
                one, a finished cross-validation folder (the fold ensemble with the settings chosen out-of-fold), or
                an exported TorchScript ``.ts`` file (inside its run's ``models/``, or with ``bundle``).
            ckpt: which checkpoint of a training run folder: ``best.pt`` (default) or ``last.pt``.
            device: ``"cpu"``, ``"cuda"``, a ``torch.device``; default CUDA when available, as the bundles run.
            bundle: the bundle file, when the run record cannot say (a .ts or checkpoint outside a run folder).
            overrides: settings as on the command line (``sw_batch_size=8``; a model setting that contradicts
                the run, such as ``threshold``, needs ``override_recorded=True``, as there).
        """
        from monai.bundle import ConfigParser

        ckpt_path = _checkpoint(Path(path).expanduser().resolve(), ckpt)
        bundle_file = _existing_bundle(bundle) if bundle else _bundle_of(ckpt_path)
        device = torch.device(device) if device is not None else torch.device(
            "cuda:0" if torch.cuda.is_available() else "cpu")
        parser = ConfigParser()
        with _in_folder(REPO):
            parser.read_config(str(bundle_file))
            parser.update({"ckpt": str(ckpt_path), "save_probabilities": True, "device": f"$torch.device('{device}')",
                           **overrides})
            parser.parse()
            parser.get_parsed_content("imports")
            settings = parser.get_parsed_content("resolved")
        return cls(parser, settings, bundle_file, device)

    # -- inputs ------------------------------------------------------------------------------------------------

    def _as_items(self, images) -> tuple[list, bool]:
        """(list of single inputs, whether the caller gave several)."""
        if isinstance(images, (list, tuple)):
            return list(images), True
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return list(images), True
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return list(images), True
        return [images], False

    def _cases(self, image, index: int) -> tuple[list[dict], str, bool]:
        """One case dict per 2D image to run (a volume gives one per slice), a name for messages, and whether
        the input is a volume."""
        from monai.data import MetaTensor

        if isinstance(image, (str, os.PathLike)):
            path = Path(image).expanduser().resolve()
            if not path.is_file():
                raise PredictError(f"{image}: no such file")
            if self.volumes:
                return self._volume_cases(path), str(image), True
            return [{"image": str(path), "case_id": path.stem, "group": path.stem}], str(image), False
        name = f"input {index}"
        if isinstance(image, torch.Tensor):
            arr = image.detach().cpu()
            chw = arr[None] if arr.ndim == 2 else arr  # torch: (C, H, W)
            layout = "torch (H, W) or (C, H, W)"
        elif isinstance(image, np.ndarray):
            arr = torch.from_numpy(np.array(image))  # a copy: the caller's array is left alone
            chw = arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1) if arr.ndim == 3 else arr  # numpy: (H, W, C)
            layout = "numpy (H, W) or (H, W, C)"
        else:
            raise PredictError(f"{name}: a {type(image).__name__}; give a file path, a numpy array or a torch tensor")
        if self.volumes and arr.ndim == 3:  # a NIfTI model: a 3D array is a volume
            from .data.nifti import slab

            return [self._slice_case(MetaTensor(slab(arr, k, self.slice_axis, self.context).float(),
                                                meta={"filename_or_obj": name}), f"{name}_{k}", name, k)
                    for k in range(arr.shape[self.slice_axis])], name, True
        if arr.ndim not in (2, 3) or chw.shape[0] != self.in_channels:
            raise PredictError(f"{name}: shape {tuple(arr.shape)}; this model takes 2D images with {self.in_channels} "
                               f"channel{'s' if self.in_channels > 1 else ''}: {layout} with C = {self.in_channels}")
        if self._needs_path:
            raise PredictError(f"{name}: this run scales each slice by its patient's intensity percentiles "
                               "(intensity_norm patient), which needs the slice's file inside its patient folder: "
                               "give paths, not arrays")
        d = {"image": MetaTensor(chw.float(), meta={"filename_or_obj": name}), "case_id": name, "group": name,
             "image_path": ""}  # LGG's fixed scaling drops the path key its reader copies
        return [d], name, False

    def _slice_case(self, image, case_id: str, group: str, k: int) -> dict:
        return {"image": image, "case_id": case_id, "group": group, "slice": k, "slice_axis": self.slice_axis}

    def _volume_cases(self, path: Path) -> list[dict]:
        from .data.nifti import _shape3d

        try:
            shape = _shape3d(path)
        except Exception as e:  # noqa: BLE001 - reported with the file's name
            raise PredictError(f"{path}: cannot be read as a NIfTI volume ({type(e).__name__}: {e})") from None
        return [{"image": str(path), "case_id": f"{path.name}_{k}", "group": path.name, "slice": k,
                 "slice_axis": self.slice_axis, "reference": str(path)} for k in range(shape[self.slice_axis])]

    def _preprocess(self, d: dict, name: str) -> dict:
        transform = self.preprocessing if isinstance(d["image"], str) else self._after_reading
        try:
            return transform(dict(d))
        except Exception as e:  # noqa: BLE001 - MONAI wraps the reader's error; the innermost one says why
            while e.__cause__ is not None:
                e = e.__cause__
            raise PredictError(f"{name}: cannot be read as this model's input ({type(e).__name__}: {e})") from None

    # -- running -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _run(self, cases: list[dict]) -> list[dict]:
        """The command's evaluator on these (preprocessed) cases: outputs after post-processing, in order."""
        from ignite.engine import Events
        from monai.data import DataLoader
        from monai.engines import SupervisedEvaluator

        outputs = []
        evaluator = SupervisedEvaluator(device=self.device, val_data_loader=DataLoader(cases, batch_size=1),
                                        network=self.network, inferer=self.inferer,
                                        postprocessing=self.postprocessing, amp=self.amp)
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.extend(e.state.output))
        evaluator.run()
        return outputs

    def predict(self, images, probabilities: bool = False, uncertainty: bool = False):
        """Masks (bool numpy arrays at each input's full resolution) of one input or several.

        Args:
            images: a file path, a numpy array, a torch tensor (see the module docstring for layouts), or a list of
                them, or a 4D batch (numpy (N, H, W, C), torch (N, C, H, W)).
            probabilities: also return the foreground probability (float32, same shape, before the threshold and
                the lesion post-processing) of each input: ``(mask, probability)``.
            uncertainty: also return the standard deviation of the probability over the TTA passes and fold models
                (:class:`pipeline.inferers.FlipTTA`): ``(mask, probability, sd)``; needs TTA or an ensemble.

        Returns: the mask (or the tuple) of a single input; a list of them for several.
        """
        if uncertainty and not self.measures_uncertainty:
            raise PredictError("uncertainty needs predictions that can disagree: flip_tta / rot90_tta (chosen by "
                               "the run, or flip_tta=True, override_recorded=True in from_run) or a fold ensemble")
        items, several = self._as_items(images)
        prepared = []
        for i, image in enumerate(items):  # every input is checked before any is run
            cases, name, volume = self._cases(image, i)
            prepared.append(([self._preprocess(c, name) for c in cases], volume))
        results = []
        for cases, volume in prepared:
            outs = self._run(cases)
            masks = [o["pred"].detach().cpu().numpy()[0] > 0 for o in outs]
            maps = [masks] + [[o[k].detach().cpu().numpy()[0].astype(np.float32) for o in outs]
                              for k, wanted in (("probability", probabilities), ("uncertainty", uncertainty)) if wanted]
            maps = [np.stack(m, axis=self.slice_axis) if volume else m[0] for m in maps]
            results.append(tuple(maps) if len(maps) > 1 else maps[0])
        return results if several else results[0]
