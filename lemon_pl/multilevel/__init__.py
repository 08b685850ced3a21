"""Multi-level data and fine-tuning (Li, Fan & Ying, arXiv 2102.07169): one job, in stages.

A network that approximates a solution map is trained first on labels solved on a coarse grid
(cheap, so many of them), then fine-tuned on successively finer grids ("levels").  This package
holds the pieces for that; so far only the groundwork:

* ``problems``: two solution-map problems with verified solvers at any grid resolution, each
  with an input sampler on the finest grid, a restriction of inputs to a coarse grid, a batched
  solve (the measured-cost hook) and an interpolation of coarse labels back to the fine grid:

  - ``RoughElliptic``: ``a -> u`` for ``-(a u')' = f`` on (0, 1) with Dirichlet ends, a rough
    log-normal ``a`` with a jump, cell-centred finite volumes;
  - ``SchrodingerGroundState``: ``V -> ground state`` of ``-1/2 u'' + V u = E u`` on the
    periodic [0, 1), second-order finite differences;
  - ``measure_cost``: seconds per sample of a problem's batched solve at one level.

The package is numpy/scipy only: no torch, no Lightning, no CLI or data module yet.
"""
