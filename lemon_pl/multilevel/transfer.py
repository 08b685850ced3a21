"""Grid transfer between levels now lives in :mod:`lemon_pl.data.transfer` (the data engine restricts
its fine initial conditions with it, so it belongs below both). This module re-exports it for the
importers that still name it (``lemon_pl.multilevel.data``, ``lemon_pl.multilevel.plan``); new code
imports ``lemon_pl.data.transfer``."""

from __future__ import annotations

from lemon_pl.data.transfer import (DEFAULT_INTERPOLATION, DEFAULT_RESTRICTION, GRID_KINDS, INTERPOLATIONS,
                                    RESTRICTIONS, fourier_resample, interpolate, restrict)

__all__ = ["GRID_KINDS", "INTERPOLATIONS", "RESTRICTIONS", "DEFAULT_INTERPOLATION", "DEFAULT_RESTRICTION",
           "fourier_resample", "interpolate", "restrict"]
