"""Segmentation pipeline: the pieces MONAI lacks for the PH2, LGG and DSB2018 bundles."""

__version__ = "0.1.0"


def __getattr__(name):
    # pipeline.Segmenter without importing torch and MONAI for every `import pipeline` (the bundles import it)
    if name in ("Segmenter", "PredictError"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
