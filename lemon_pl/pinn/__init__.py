"""Physics-informed neural networks (PINNs) for parameterised PDEs: Hyper-LR-PINN now, LAM-PINN later.

Modules:

* ``derivatives``: autograd and torch.func derivative helpers for PINN residuals
  (gradients, partial and mixed second derivatives, Laplacians) and their benchmark;
* ``problems``: parameterised PDE problems (1-D convection-diffusion-reaction, 2-D
  Helmholtz) with domain, parameter space, initial and boundary conditions, residual and
  verified reference solutions;
* ``collocation``: the collocation data module (point sets and references of every μ in one batch);
* ``networks``: PINN MLP, PINN-P, low-rank and Hyper-LR-PINN networks;
* ``metrics``: relative L2, MAE, max error, explained variance per μ;
* ``outputs``: the per-μ tables, ``predictions.npz`` and figures of a test run.

The stages that train these networks are in :mod:`lemon_pl.pinn.stages`.
"""
