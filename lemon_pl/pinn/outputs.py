"""What a physics-informed test run leaves in its run folder, and its figures.

After ``lemon-pl test`` of a stage of :mod:`lemon_pl.pinn.stages` the run folder holds:

* the per-μ table, the stage's test :class:`lemon_pl.core.report.EvaluationReport`
  (``pl_module.reports["test"]``), printed and written by the one writer
  (``lemon_pl.core.callbacks.MetricTables``) as ``test_metrics.csv`` / ``test_metrics.json``
  (relative L2, MAE, max error, explained variance, residual RMS; ``families`` maps each μ's
  label, e.g. ``beta=30,nu=0,rho=0``, to its metrics, as the experiment reports expect);

and :class:`PINNOutputs` (listed in ``configs/callbacks/pinn.yaml`` after ``MetricTables``) writes:

* ``predictions.npz``: the grid axes by name (``x``, ``t`` or ``x``, ``y``, ...), ``mu`` (M, P),
  ``param_names``, ``u_pred``, ``u_ref`` and ``residual`` (M, n_t, n_x: the last axis first);
* ``figures/``: reference / prediction / error / residual maps per μ
  (``field_<label>.png``), and for Hyper-LR-PINN the learned rank of every layer over a sweep
  of μ (``ranks_vs_mu.png``) and the sorted |s| of each layer as a heat map over μ
  (``s_heatmap.png``, the paper's Fig. 4), with their data in ``predictions.npz``
  (``sweep_mu``, ``sweep_s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback

from lemon_pl.core.checkpointing import atomic_write
from lemon_pl.core.callbacks import stage_report
from lemon_pl.core.figures import pyplot, save_figure
from lemon_pl.pinn.metrics import mu_label


def write_predictions(pred: dict[str, Any], folder: Path) -> Path:
    arrays = {name: axis for name, axis in zip(pred["names"], pred["axes"])}
    arrays.update({"mu": pred["mu"], "param_names": np.array(pred["param_names"]), "u_pred": pred["u_pred"],
                   "u_ref": pred["u_ref"], "residual": pred["residual"]})
    for k in ("sweep_mu", "sweep_s"):
        if k in pred:
            arrays[k] = pred[k]
    return atomic_write(folder / "predictions.npz", lambda fh: np.savez_compressed(fh, **arrays))


def field_figure(pred: dict[str, Any], i: int, title: str):
    """Reference, prediction, |error| and |residual| of the i-th μ on the grid."""
    plt = pyplot()
    names, (a0, a1) = pred["names"], pred["axes"]
    ref, u = pred["u_ref"][i], pred["u_pred"][i]
    panels = [("reference", ref, "viridis"), ("prediction", u, "viridis"),
              ("|error|", np.abs(u - ref), "magma"), ("|residual|", np.abs(pred["residual"][i]), "magma")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3), constrained_layout=True)
    lo, hi = float(min(ref.min(), u.min())), float(max(ref.max(), u.max()))
    for ax, (name, z, cmap) in zip(axes, panels):
        kw = {"vmin": lo, "vmax": hi} if cmap == "viridis" else {}
        im = ax.pcolormesh(a0, a1, z, shading="auto", cmap=cmap, **kw)
        ax.set_title(name)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        fig.colorbar(im, ax=ax)
    fig.suptitle(title)
    return fig


def rank_figure(pred: dict[str, Any], train: np.ndarray | None = None):
    """Non-zero entries of s per layer (the learned rank) over the μ sweep."""
    plt = pyplot()
    s, param = pred["sweep_s"], pred["sweep_param"]
    col = list(pred["param_names"]).index(param)
    x = pred["sweep_mu"][:, col]
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    for layer in range(s.shape[1]):
        ax.plot(x, (np.abs(s[:, layer]) > 0).sum(-1), marker=".", label=f"layer {layer + 1}")
    if train is not None and len(train):
        ax.axvspan(float(train[:, col].min()), float(train[:, col].max()), color="0.85", zorder=0,
                   label="training μ")
    ax.set_xlabel(param)
    ax.set_ylabel("rank (non-zero s)")
    ax.set_ylim(0, s.shape[2] + 1)
    ax.legend(fontsize=8)
    return fig


def s_heatmap(pred: dict[str, Any]):
    """Sorted |s| of every layer as a heat map over the μ sweep."""
    plt = pyplot()
    s, param = pred["sweep_s"], pred["sweep_param"]
    col = list(pred["param_names"]).index(param)
    x = pred["sweep_mu"][:, col]
    fig, axes = plt.subplots(1, s.shape[1], figsize=(4.5 * s.shape[1], 3.3), constrained_layout=True, squeeze=False)
    for layer, ax in enumerate(axes[0]):
        z = -np.sort(-np.abs(s[:, layer]), axis=-1).T  # (rank, sweep), largest first
        im = ax.pcolormesh(x, np.arange(z.shape[0]), z, shading="auto", cmap="viridis")
        ax.set_title(f"layer {layer + 1}: sorted |s|")
        ax.set_xlabel(param)
        ax.set_ylabel("index")
        fig.colorbar(im, ax=ax)
    return fig


def write_figures(pred: dict[str, Any], folder: Path, max_fields: int, train: np.ndarray | None = None) -> list[Path]:
    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figs = []
    maps = len(pred["axes"]) == 2 and pred["u_pred"].ndim == 3  # 2-D scalar fields: one map per μ
    for i in range(min(max_fields, len(pred["mu"])) if maps else 0):
        label = mu_label(pred["param_names"], pred["mu"][i])
        figs.append((f"field_{label.replace(',', '_')}.png", field_figure(pred, i, label)))
    if "sweep_s" in pred:
        figs += [("ranks_vs_mu.png", rank_figure(pred, train)), ("s_heatmap.png", s_heatmap(pred))]
    try:
        for name, fig in figs:  # complete or not there; a full disk is one line (CheckpointWriteError)
            written.append(save_figure(fig, folder / name))
    finally:
        for _, fig in figs:
            plt.close(fig)
    return written


class PINNOutputs(Callback):
    """After ``lemon-pl test``: ``predictions.npz`` and the figures of the module doc, in the run
    folder (global rank 0). The test table is the stage's report, written by
    ``lemon_pl.core.callbacks.MetricTables``."""

    def on_test_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP
        report = stage_report(pl_module, "test")
        if not trainer.is_global_zero or report is None or "predictions" not in report.arrays:
            return
        folder = Path(log_dir or ".")
        arrays = report.arrays
        write_predictions(arrays["predictions"], folder)
        train = np.asarray(arrays.get("train_mu", []), dtype=np.float64)
        write_figures(arrays["predictions"], folder / "figures", int(arrays.get("max_figures", 6)), train)
