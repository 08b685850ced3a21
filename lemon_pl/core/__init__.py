"""What every method of lemon-pl shares, and nothing method-specific.

* ``stage``: ``Stage``, the base class of every stage (optimiser and schedule from the config,
  NaN/Inf guard, parameter counts);
* ``optim``: the default AdamW and warm-up + cosine schedule, configured optimisers;
* ``metrics``: relative L2 and the other error metrics, per-group tables, mean ± std;
* ``callbacks``: metric tables, figures, example files and fit summaries for any stage;
* ``figures``: the figure helpers;
* ``checkpointing``: atomic, verified checkpoints; ``errors``: the errors users see;
* ``loggers``, ``progress``: W&B/CSV loggers and progress bars;
* ``locking``, ``resources``, ``yamlio``, ``devices``, ``expressions``: exclusive locks, disk and
  memory probes, the one YAML reader, device checks, the safe expression grammar.

Nothing in ``core`` imports another lemon-pl package, and importing ``lemon_pl.core`` itself loads
neither torch nor Lightning.
"""

__all__ = ["Stage", "count_parameters"]


def __getattr__(name):  # deferred: tools that only read YAML or lock files stay free of torch
    if name in __all__:
        from lemon_pl.core import stage

        return getattr(stage, name)
    raise AttributeError(name)
