"""Measurement, not library: the benchmarks against a plain PyTorch loop, the study runner, the network profile and
the statistics they share. Nothing that trains, evaluates or infers imports this package; it imports the library.

    python -m pipeline.bench.speed     the PH2 engine against the plain loop, and the inference paths
                                       (also python -m pipeline.bench)
    python -m pipeline.bench.lgg       the LGG recipe against the plain loop under the same cross-validation
    python -m pipeline.bench.dsb2018   the DSB2018 recipe against the plain loop on the same split
    python -m pipeline.bench.accuracy  a cross-validation against the plain loop on the same folds (docs/accuracy.md)
    python -m pipeline.bench.new_cases the cross-validation ensemble against the plain loop trained on every case,
                                       both scored on cases neither saw (docs/new_cases.md)
    python -m pipeline.bench.study     a grid of ordinary bundle runs and the report that compares them
    python -m pipeline.bench.profile   parameters, FLOPs and CPU speed of every registered network
"""
