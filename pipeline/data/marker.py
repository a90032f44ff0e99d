"""The file that marks a dataset folder as a synthetic sample (:mod:`pipeline.data.synthetic` writes it).

Readers import it to pass the marker over; the synthetic writers import it to write it. It imports nothing from
the package, so either side can import it at module top.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "SYNTHETIC.txt"


def marker_text(layout: str, **params) -> str:
    """The marker's text for a sample of ``layout`` written with ``params``; a sample whose marker differs from
    this text was written with other parameters (:func:`pipeline.data.synthetic.resolve_dataset_dir` rewrites it)."""
    args = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return (f"Synthetic {layout.upper()}-format sample written by pipeline.data.synthetic ({args}).\n"
            "Not real data: metrics measured on it say nothing about real images.\n")


def is_synthetic(root: str | Path) -> bool:
    """Whether ``root``, its parent or its grandparent holds the marker."""
    root = Path(root)
    return any((p / MARKER).is_file() for p in (root, *root.parents[:2]))
