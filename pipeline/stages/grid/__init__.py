"""``pipeline grid``: the (variant, seed) chains train -> sample -> evaluate at once on Dask
distributed, recorded in dvc.lock with ``dvc commit`` (see :mod:`pipeline.stages.grid.run`).

Imports nothing heavy: Dask workers import :mod:`pipeline.stages.grid.chain` alone.
"""
