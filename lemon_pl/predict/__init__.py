"""``lemon-pl predict``: a trained model answers a PDE the user writes down.

One job per module:

* ``parse``: infix equations (SymPy) -> the prefix token trees of ``lemon_pl.data.symbols``, in the
  stored time the models were trained in;
* ``match``: canonical forms; recognising a family and fitting its parameters; ``--family NAME``;
* ``initial``: initial conditions from an expression in x, a ``.npy`` file or an IC sampler;
* ``support``: support trajectories for few-shot prediction (``--adapt FILE``);
* ``model``: a stage rebuilt from its run and checkpoint; batches, prediction, adaptation;
* ``run``: requests x initial conditions -> predictions, reference solutions, the report;
* ``outputs``: ``prediction.npz``, figures; ``limits``: the bounds of what a request may ask;
* ``lightning``: ``lemon-pl predict --config`` (Lightning's predict over a
  data split, writing the same files).

Its command line (argument parser and order of work) is ``lemon_pl/cli/predict.py``.
"""
