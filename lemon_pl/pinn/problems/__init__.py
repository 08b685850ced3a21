"""Parameterised PDE problems for PINNs: each is a domain, fields, parameters and named conditions.

* :mod:`.base` - :class:`Problem`, :class:`Domain`, :class:`Param` (a new problem is one small class);
* :mod:`.cdr` - :class:`ConvectionDiffusionReaction`, Hyper-LR-PINN's 1-D CDR problem;
* :mod:`.helmholtz` - :class:`Helmholtz2D`, the standard 2-D Helmholtz benchmark.
"""

from lemon_pl.pinn.problems.base import Domain, Mu, Param, Problem, lib
from lemon_pl.pinn.problems.cdr import (CDR_ICS, CDR_PRESETS, TWO_PI, ConvectionDiffusionReaction, logistic,
                                        strang_reaction_diffusion)
from lemon_pl.pinn.problems.helmholtz import Helmholtz2D

__all__ = ["CDR_ICS", "CDR_PRESETS", "TWO_PI", "ConvectionDiffusionReaction", "Domain", "Helmholtz2D", "Mu", "Param",
           "Problem", "lib", "logistic", "strang_reaction_diffusion"]
