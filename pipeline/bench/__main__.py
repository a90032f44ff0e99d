"""``python -m pipeline.bench``: the speed benchmark, :mod:`pipeline.bench.speed`, with the same flags."""

from pipeline.bench.speed import main

main()
