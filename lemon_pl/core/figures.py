"""Figures, defined once: the headless pyplot, the atomic PNG writer, and the shared plots.

* :func:`pyplot`: matplotlib's pyplot on the Agg backend (no display needed, as on a cluster);
* :func:`save_figure`: a figure written as PNG atomically (complete or untouched), then closed;
* :func:`prediction_figure`: truth / prediction / error as space-time images (operator stages);
* :func:`space_time_figure`: a prediction at physical times, beside a reference (``predict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (an already chosen backend is kept)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 80, **savefig: Any) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (``lemon_pl.core.checkpointing.atomic_write``)
    and close it; returns the path. ``savefig`` keywords (e.g. ``bbox_inches="tight"``) pass on."""
    from lemon_pl.core.checkpointing import atomic_write

    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, **savefig))
    finally:
        pyplot().close(fig)


def prediction_figure(true: np.ndarray, pred: np.ndarray, title: str = "", extent=(0.0, 2.0, 0.0, 2.0)):
    """Figure with three panels (truth, prediction, |error|), time upwards and x to the right."""
    plt = pyplot()

    err = np.abs(pred - true)
    vmin, vmax = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
    for ax, img, name, kw in (
        (axes[0], true, "truth", dict(vmin=vmin, vmax=vmax, cmap="viridis")),
        (axes[1], pred, "prediction", dict(vmin=vmin, vmax=vmax, cmap="viridis")),
        (axes[2], err, "|error|", dict(cmap="magma")),
    ):
        im = ax.imshow(img, origin="lower", aspect="auto", extent=extent, **kw)
        ax.set_title(name)
        ax.set_xlabel("x")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("stored time")
    rel = np.linalg.norm(pred - true) / (np.linalg.norm(true) + 1e-7)
    fig.suptitle(f"{title}  (relative L2 {rel:.3g})")
    return fig


def space_time_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray, ref: np.ndarray | None = None,
                      title: str = "", ref_name: str = "solver", rel_l2: float | None = None):
    """Space-time figure of a prediction ``pred`` (nt, nx) at physical times ``t`` (any spacing)
    and points ``x``: one panel, or prediction / reference / |error| when ``ref`` is given
    (``rel_l2``, if given, goes into the title)."""
    plt = pyplot()

    panels = [(pred, "prediction")] if ref is None else [(pred, "prediction"), (ref, ref_name),
                                                         (np.abs(pred - ref), "|error|")]
    fields = [pred] if ref is None else [pred, ref]
    vmin = float(min(f.min() for f in fields))
    vmax = float(max(f.max() for f in fields))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels) + 0.4, 3.3), constrained_layout=True,
                             squeeze=False)
    for ax, (img, name) in zip(axes[0], panels):
        kw = dict(cmap="magma") if name == "|error|" else dict(cmap="viridis", vmin=vmin, vmax=vmax)
        im = ax.pcolormesh(x, t, img, shading="nearest", **kw)
        ax.set_title(name)
        ax.set_xlabel("x")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0][0].set_ylabel("t")
    if rel_l2 is not None and np.isfinite(rel_l2):
        title = f"{title}  (relative L2 {rel_l2:.3g})"
    fig.suptitle(title, fontsize=9)
    return fig
