"""Networks of the physics-informed subsystem: maps from collocation coordinates (and PDE
parameters μ) to the solution u, with the hooks their stages call (modules ``base``, ``mlp``,
``lowrank``).

Every network here is a plain ``nn.Module`` with one calling convention::

    forward(coords (N, in_dim), mu=None, mu_index=None) -> u (N, out_dim)

``coords`` stacks the coordinates of N collocation points (columns ``(x, t)`` for the 1-D
convection-diffusion-reaction problem), so derivatives are taken with ``torch.autograd.grad``
with respect to ``coords``.  ``mu`` gives the PDE parameters, either one vector ``(mu_dim,)`` for
all points or one row per point ``(N, mu_dim)``; with ``mu_index`` (N,) ``mu`` is instead a table
of M rows and point n uses row ``mu_index[n]``.  Networks that do not read μ (``uses_mu`` is
False) ignore both.

* :class:`PINN`: the vanilla MLP, 2 -> 50 -> (4 x 50 -> 50) -> 1, tanh, linear output
  (10,401 parameters).
* :class:`PINNP`: the same MLP with μ concatenated to the coordinates (10,551 with mu_dim = 3).
* :class:`LowRankLinear`: y = U diag(s) Vᵀ x + b with trainable U (out x r), s (r), V (in x r).
* :class:`NaiveLRPINN`: dense first layer, L low-rank hidden layers with their own s, dense last
  layer.  It is also the phase-2 network that :meth:`HyperLRPINN.adapt` returns.
* :class:`HyperLRPINN`: the same trunk whose diagonals s come from a hypernetwork of μ, with
  shared bases U, V.
* :func:`orthogonality_penalty`: Σ_l w_U ‖U_lᵀU_l − I‖ + w_V ‖V_lᵀV_l − I‖ (Frobenius, squared
  or not) over the low-rank layers of a module.

Hooks (:class:`PINNNetwork`, the base of every network here): the stages name no network class,
they call these.

* ``uses_mu``: whether the network reads μ (else a run trains one μ);
* ``penalty(settings)``: the regulariser added to the loss (the low-rank networks' orthogonality
  penalty, from the stage's ``orth_weight_u``, ``orth_weight_v``, ``orth_squared``), or None;
  ``penalties`` names the settings a network understands;
* ``adapt(mu, **settings)``: the network to train at one target μ (Hyper-LR-PINN's phase 2), on
  networks with ``adaptable = True``;
* ``matching(state, prefix)``: the network shaped like a checkpoint's state (adaptive ranks);
* ``adaptation_parameters()``: the tensors an inner loop adapts (MAML, Reptile), by name;
* ``parameter_groups()``: the optimiser's parameter groups (default: one group of the trainable ones);
* ``reports(mu)``: arrays describing the network over a sweep of μ (Hyper-LR-PINN: its diagonals
  s(μ), the rank figures), with ``reports_mu = True``.

Layouts of the low-rank networks (``layout``):

* ``"paper"``: hidden layers σ(U diag(s) Vᵀ h + b) with a bias b, and an activated output
  u = σ(W h + b).  With tanh this bounds |u| < 1.
* ``"release"``: bias-free hidden layers σ(U diag(s) Vᵀ h) and a linear output u = W h + b.

Sizes at the defaults (in_dim 2, width 50, three rank-50 layers, mu_dim 3, hypernetwork of
three tanh layers of width 50): HyperLRPINN release 28,151 = first 150 + last 51 + bases 15,000
+ embedding 5,300 + heads 7,650; paper 28,301 (+150 hidden biases).  The phase-2 network trains
exactly s, W⁰, b⁰, W^{L+1}, b^{L+1}: 150 + 150 + 51 = 351 at full rank, fewer at adaptive rank.

State-dict keys are stable so stages can freeze by name: ``hyper.*`` (``hyper.scaler.shift``,
``hyper.scaler.scale``, ``hyper.embed.N.*``, ``hyper.heads.N.*``), ``first.*``,
``layers.N.U`` / ``layers.N.s`` / ``layers.N.V`` / ``layers.N.bias``, ``last.*`` (the MLPs:
``first.*``, ``hidden.N.*``, ``last.*``, ``scaler.*``).
"""

from lemon_pl.pinn.networks.base import MuScaler, PINNNetwork
from lemon_pl.pinn.networks.lowrank import (LAYOUTS, HyperLRPINN, Hypernetwork, LowRankLinear, NaiveLRPINN,
                                            orthogonality_penalty)
from lemon_pl.pinn.networks.mlp import PINN, PINNP

__all__ = [
    "LAYOUTS",
    "PINNNetwork",
    "PINN",
    "PINNP",
    "MuScaler",
    "LowRankLinear",
    "NaiveLRPINN",
    "Hypernetwork",
    "HyperLRPINN",
    "orthogonality_penalty",
]
