"""Figures: truth / prediction / error as space-time images (logged by ``modules.callbacks``)."""

from __future__ import annotations

import numpy as np


def prediction_figure(true: np.ndarray, pred: np.ndarray, title: str = "", extent=(0.0, 2.0, 0.0, 2.0)):
    """Figure with three panels (truth, prediction, |error|), time upwards and x to the right."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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
