"""Segmentation pipeline: the pieces MONAI lacks for the PH2, LGG and DSB2018 bundles."""

__version__ = "0.1.0"
