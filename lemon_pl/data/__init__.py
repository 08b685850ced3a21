"""Operator-family data: families and solvers, equation tokens, HDF5 files, datasets, DataModule.

Heavy imports (torch, Lightning) are deferred so that ``lemon-pl generate`` stays light.
"""

from lemon_pl.data.families import get_family, list_families

__all__ = ["get_family", "list_families", "OperatorFamilyDataModule"]


def __getattr__(name):
    if name == "OperatorFamilyDataModule":
        from lemon_pl.data.datamodule import OperatorFamilyDataModule

        return OperatorFamilyDataModule
    raise AttributeError(name)
