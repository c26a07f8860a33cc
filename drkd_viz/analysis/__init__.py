"""What the figures show, computed from a runs folder written by ``drkd-viz pipeline``: the pixel relations of
the FPN features and their graph projections (``pixel``, ``graph``), the instance relation matrices
(``instances``), where distillation helps small objects (``small_objects``) and attributions (``attribution``).
Functions return numpy arrays, dataclasses or pandas DataFrames and are pure (same inputs, same outputs), so the
dashboard and the notebooks can cache them; the figures over them live in :mod:`drkd_viz.viz`.
"""
