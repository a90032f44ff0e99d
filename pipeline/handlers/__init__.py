"""Ignite handlers the bundles attach beyond what Ignite and MONAI ship, one concern a module.

Each has ``attach(engine)`` so a bundle lists it among an engine's handlers; all read the decollated engine state of
MONAI engines (:mod:`.cases`).

- :mod:`.checkpoints`: ``best.pt`` / ``last.pt`` (Ignite ``Checkpoint`` + atomic ``DiskSaver``), resume with the random
  streams, loading weights with an error that says what does not fit
- :mod:`.record`: the training run's per-epoch line, TensorBoard scalars and ``metrics.json``
- :mod:`.validation`: validation at the last epoch too, per-patient volume Dice
- :mod:`.calibration`: expected calibration error and reliability diagram of the probabilities
- :mod:`.overlays`: truth / prediction outlines on the source image in TensorBoard
- :mod:`.evaluation`: per-case and per-patient scores of ``evaluate``
- :mod:`.masks`: the masks, overlays and volumes of ``inference``
- :mod:`.volumes`: slice masks stacked into per-patient volumes
"""

from .calibration import Calibration
from .checkpoints import Checkpoints, RandomStates, WeightsLoader, load_network_weights
from .evaluation import CaseMetricsWriter
from .masks import MaskWriter
from .overlays import TensorBoardOverlays
from .record import RunRecorder, peak_memory
from .validation import ValidateEvery, VolumeDice
from .volumes import SliceStack

__all__ = ["Calibration", "CaseMetricsWriter", "Checkpoints", "MaskWriter", "RandomStates", "RunRecorder", "SliceStack", "TensorBoardOverlays",
           "ValidateEvery", "VolumeDice", "WeightsLoader", "load_network_weights", "peak_memory"]
