"""Multi-level data and fine-tuning (Li, Fan & Ying, arXiv 2102.07169).

A network that approximates a solution map is trained first on labels solved on a coarse grid
(cheap, so many of them), then fine-tuned on successively finer grids ("levels"), with the samples
per level chosen for a data-generation budget. Modules, one job each:

* ``problems``: the Schrödinger ground-state and rough elliptic maps, solvers at any resolution
  (their grid transfer is the data engine's, ``lemon_pl.data.transfer``);
* ``families``: those problems as *map families* of ``lemon-pl generate``, and the level view of
  every family (its grid kind, restriction, interpolation, input transform);
* ``generate``: the map families' files per level, written through the data engine's store
  (``lemon_pl.data.store``: atomic, resumable, locked), costs measured;
* ``data``: ``MultilevelDataModule``, the level schedule and the finest level's validation/test;
* ``allocate``: error models, the curriculum error estimator and the allocators (numpy/scipy);
* ``plan``: the budget plan's pieces (settings of the composed config, costs, variances, pilot runs,
  calibration, allocations, overlays), used by ``lemon-pl multilevel plan`` (``lemon_pl/cli/multilevel.py``)
  and the multilevel experiment's steps;
* ``stage``: ``MultilevelRegression``, the level curriculum as a ``Stage``;
* ``outputs``: level checkpoints, the level curve and the test figures (the test table is the
  stage's report, written by ``lemon_pl.core.callbacks.MetricTables``).

The experiment is ``lemon_pl.experiments.multilevel``.
"""
