"""Benchmarks of Cramp Coach: accuracy in kitchen noise, rejection, latency, timing, compute.

Run them all with ``python -m bench`` (``--smoke`` for a small CI subset); results go to
``bench/results/results.json`` and ``results.md``. See :mod:`bench.run`.
"""
