"""What a multi-level run leaves in its run folder (``configs/callbacks/multilevel.yaml``).

* ``LevelCheckpoints``: ``checkpoints/level<l>_n<grid>.ckpt`` at the end of each level (the
  weights a finer level starts from, exactly);
* ``MultilevelOutputs``: after ``fit``, ``figures/level_curve.png`` (validation relative L2 on the
  finest level against the epoch, one colour per level); after ``test``,
  ``figures/test_examples.png`` (input, label, prediction).

The test's ``test_metrics.csv`` / ``test_metrics.json`` (relative L2 on the finest test set, the
levels, samples, measured seconds per sample and the budget) are the stage's report, written by
the one writer, ``lemon_pl.core.callbacks.MetricTables``. Both callbacks read the stage
(``MultilevelRegression``: its level schedule, history, data summary and examples), never the
data module.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback

from lemon_pl.multilevel.stage import MultilevelRegression


class LevelCheckpoints(Callback):
    """Save ``level<l>_n<grid>.ckpt`` when a level's last epoch ends (rank 0, not in fast_dev_run)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or not isinstance(pl_module, MultilevelRegression):
            return
        epoch = trainer.current_epoch
        if not pl_module.is_level_end(epoch):
            return
        ckpt_cb = trainer.checkpoint_callback
        folder = Path(ckpt_cb.dirpath) if ckpt_cb is not None and ckpt_cb.dirpath else Path(trainer.log_dir or ".")
        trainer.save_checkpoint(folder / f"{pl_module.level_name(pl_module.level_at_epoch(epoch))}.ckpt")


def _figure(path: Path, draw) -> None:
    from lemon_pl.core.figures import pyplot, save_figure

    fig = draw(pyplot())
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110, bbox_inches="tight")


class MultilevelOutputs(Callback):
    def on_fit_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir
        if not isinstance(pl_module, MultilevelRegression):
            return
        rows = pl_module.history
        if not trainer.is_global_zero or not log_dir or not rows or trainer.fast_dev_run:
            return
        grids, samples = pl_module.data_summary.get("levels"), pl_module.data_summary.get("n_samples")

        def draw(plt):
            fig, ax = plt.subplots(figsize=(6, 3.6))
            for level in sorted({r["level"] for r in rows}):
                pts = [r for r in rows if r["level"] == level]
                label = f"level {level + 1}" + (f" (n={grids[level]}, N={samples[level]})" if grids else "")
                ax.plot([r["epoch"] + 1 for r in pts], [r["val_rel_l2"] for r in pts], "o-", ms=3, label=label)
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("relative L2, finest-level validation")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, which="both")
            return fig

        _figure(Path(log_dir) / "figures" / "level_curve.png", draw)

    def on_test_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir
        if not isinstance(pl_module, MultilevelRegression) or not trainer.is_global_zero or not log_dir:
            return
        ex = pl_module.examples.get(pl_module.family)
        if not ex:
            return

        def draw(plt):
            k = ex["input"].shape[0]
            fig, axes = plt.subplots(2, k, figsize=(3 * k, 4.2), squeeze=False)
            for i in range(k):
                axes[0, i].plot(ex["input"][i].numpy(), color="0.4")
                axes[0, i].set_title(f"input {i}", fontsize=8)
                axes[1, i].plot(ex["true"][i].numpy(), label="label")
                axes[1, i].plot(ex["pred"][i].numpy(), "--", label="prediction")
            axes[1, 0].legend(fontsize=7)
            fig.tight_layout()
            return fig

        _figure(Path(log_dir) / "figures" / "test_examples.png", draw)


__all__ = ["LevelCheckpoints", "MultilevelOutputs"]
