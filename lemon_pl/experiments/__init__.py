"""Experiment pipelines (``lemon-pl experiment NAME --scale tiny|cpu|paper``).

``runner`` runs a list of resumable steps (each one ``lemon-pl`` command), ``specs`` builds the
step lists of the experiments from ``configs/experiments/*.yaml`` and ``report`` turns the test
metrics of the finished steps into ``table.md``, ``results.csv`` and plots.
"""

from lemon_pl.experiments.runner import Step, StepFailed, run_steps

__all__ = ["Step", "StepFailed", "run_steps"]
