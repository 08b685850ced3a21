"""The data engine: PDE families, their numerics and their files, for every method.

One job: produce and read the data the methods train and test on. Modules:

* ``params``: the one parameter vocabulary (``Param``, ``ParamSpace``: ranges, choices,
  gamma-sampling, accepted ranges, studied grids, presets, scaling);
* ``families``, ``ics``, ``solvers``, ``torch_*``: the 19 operator families, initial conditions, the
  numpy and torch solvers; ``exact``: exact solutions they are checked against (Cole-Hopf,
  characteristics); ``transfer``: restriction and interpolation between grids (levels);
* ``symbols``: equation trees and tokens; ``verify``: equation residuals;
* ``store``: the one HDF5 store (lock, ``.partial``, verify, rename, fsync, one-line errors);
  ``generate``: ``lemon-pl generate`` for the operator families; ``io``: the files' layout, reading
  and checksums;
* ``datasets``, ``datamodule``: the operator families' datasets and ``OperatorFamilyDataModule``.

Heavy imports (torch, Lightning) are deferred so that ``lemon-pl generate`` stays light.
"""

from lemon_pl.data.families import get_family, list_families

__all__ = ["get_family", "list_families", "OperatorFamilyDataModule"]


def __getattr__(name):
    if name == "OperatorFamilyDataModule":
        from lemon_pl.data.datamodule import OperatorFamilyDataModule

        return OperatorFamilyDataModule
    raise AttributeError(name)
