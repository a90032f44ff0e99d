"""Small synthetic datasets written in the real on-disk layouts, so every bundle runs without real data.

The images are drawn, not sampled from real patients: they exercise the readers, transforms, engines and reports
end to end, and a network can learn them, but numbers measured on them say nothing about real data.

One module per layout holds its writer (``ph2``, ``lgg``, ``dsb2018``, ``nifti``; each imports its reader's layout
names, never the other way round), :mod:`.draw` the drawing helpers they share, :mod:`.fallback` the table of
writers and :func:`resolve_dataset_dir`. The marker file that says "this folder is synthetic" lives in
:mod:`pipeline.data.marker`, which the readers import as well.
"""

from ..marker import MARKER, is_synthetic, marker_text
from .dsb2018 import nuclei_image, nuclei_masks, write_dsb2018
from .fallback import BANNER, WRITERS, resolve_dataset_dir
from .lgg import brain_volume, write_lgg
from .nifti import synthetic_affine, synthetic_volume, write_nifti
from .ph2 import dermoscopy_image, write_ph2

_marker_text = marker_text  # the name this module gave it before the marker moved to pipeline.data.marker

__all__ = ["BANNER", "MARKER", "WRITERS", "brain_volume", "dermoscopy_image", "is_synthetic", "marker_text",
           "nuclei_image", "nuclei_masks", "resolve_dataset_dir", "synthetic_affine", "synthetic_volume",
           "write_dsb2018", "write_lgg", "write_nifti", "write_ph2"]
