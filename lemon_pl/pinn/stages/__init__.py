"""The physics-informed stages: networks trained from the equations themselves.

Every stage trains a network of :mod:`lemon_pl.pinn.networks` on the point sets of a
:class:`lemon_pl.pinn.collocation.CollocationDataModule` (all μ of the run in one batch) with
the PINN loss: the weighted sum, over the problem's named conditions (:mod:`lemon_pl.pinn.conditions`)
in their declared order, of each condition's mean square (PDE residual, values, fluxes, periodic
pairs; the weights are the problem's, 1 each for CDR as in the release, overridable by name with
``weights: {ic: 10}``), plus the network's regulariser (the low-rank networks' orthogonality
penalty). Residual and flux conditions each get a forward pass with gradients to their points;
the value and periodic conditions share one forward pass over their points concatenated.
The problem object is the data module's, linked (``problem``); the stages call network hooks
(``penalty``, ``adapt``, ``matching``, ``reports``) and name no network class.

* :class:`PINNModule`: one network over the run's μ set: a plain PINN or Naive-LR-PINN on
  one μ, PINN-P across μ, Hyper-LR-PINN phase 1 (bases, biases, first/last layers and the
  hypernetwork jointly over every training μ, with the orthogonality penalty); ``init_from``
  warm-starts from another run (the curriculum: lower β first).
* :class:`HyperLRPINNAdapt`: phase 2. The phase-1 network (``init_from``) at the target μ
  becomes a Naive-LR-PINN (the network's ``adapt`` hook) whose s starts at the hypernetwork's output; exactly s, W⁰,
  b⁰, W^{L+1}, b^{L+1} train (full rank, or ``adaptive``: only the entries the ReLU kept).
* :class:`MetaPINNModule`: MAML or Reptile initialisation of a network over μ tasks, the inner
  loop of :func:`lemon_pl.adaptation.maml.adapt` run on every task at once (the task weights
  stacked, the network evaluated with ``torch.func.vmap``).
* :class:`TimeMarchingPINN`: PINN-S2S, one PINN per time segment, trained in order, each
  segment's initial condition the previous segment's prediction.

Optimiser: unset, Adam at ``lr`` (2.5e-4, the release) with no schedule; any other
(``torch.optim.LBFGS`` with strong Wolfe line search, for instance) is chosen in the config.
Residuals and their derivatives are taken in fp32 with autocast off, also under bf16-mixed.
Validation and test need gradients: the stage turns Lightning's inference mode off for its
evaluation loops (the configs also set ``trainer.inference_mode: false``).
"""

from lemon_pl.pinn.stages.adapt import HyperLRPINNAdapt
from lemon_pl.pinn.stages.marching import TimeMarchingPINN
from lemon_pl.pinn.stages.meta import MetaPINNModule
from lemon_pl.pinn.stages.pinn import EVAL_CHUNK, IGNORED, Field, PINNModule, no_autocast

__all__ = ["EVAL_CHUNK", "Field", "HyperLRPINNAdapt", "IGNORED", "MetaPINNModule", "PINNModule", "TimeMarchingPINN",
           "no_autocast"]
