"""The search itself: the Ray Tune driver, its searchers and schedulers, one trial on a worker,
the results read back, the export of the best trial, the plots, and ``autoft train``.

Imports :mod:`trainables`, :mod:`autoft.tracking` and :mod:`autoft.core`; the PaddleHub
compatibility layer, the Python API and the CLI sit above it.
"""
