"""Physics-informed neural networks (PINNs) for parameterised PDEs: problems made of domains and
named conditions, their collocation data, networks and the stages that train them.

Modules:

* ``problems``: the :class:`~lemon_pl.pinn.problems.Problem` base (fields, parameters, a domain of
  space axes and an optional time axis, named conditions, the residual, a reference at any
  points) and the 1-D convection-diffusion-reaction and 2-D Helmholtz problems, one file each;
* ``conditions``: regions (interior, initial slice, spatial boundary x time, a named edge,
  periodic pairs) and kinds (residual, value, flux through derivatives, periodic) of a condition;
* ``sampling``: one sampler per region in N dimensions (grid nodes or a Latin hypercube, seeded);
* ``collocation``: the data module (the problem built once from its ``class_path``, every
  condition's points and targets, all μ in one batch) and ``select_mu``;
* ``derivatives``: autograd and torch.func derivative helpers for residuals;
* ``jets``: opt-in Taylor-mode (jet) engine, ``derivatives(net, coords, mu, mu_index, wanted, engine)``: the
  output and exactly the requested input derivatives (orders 1-2) in one forward, autograd fallback;
* ``networks``: PINN, PINN-P, low-rank and Hyper-LR-PINN networks and the hooks stages call;
* ``stages``: PINNModule, HyperLRPINNAdapt (phase 2), MetaPINNModule, TimeMarchingPINN;
* ``metrics``: relative L2, MAE, max error, explained variance per μ (``PINN_METRICS``, ``mu_label``);
* ``outputs``: the test report's files, ``predictions.npz`` and figures of a test run.
"""
