"""Figures: truth / prediction / error as space-time images, logged to whatever logger is used."""

from __future__ import annotations

from pathlib import Path

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


def log_prediction_figures(module, samples: dict[str, dict], log_dir: str | None) -> list[Path]:
    """One figure per family: to W&B as images, otherwise PNG files in ``log_dir/figures``.

    ``log_dir`` must be read by every rank beforehand: ``trainer.log_dir`` is a collective call
    under DDP, and this function runs on rank 0 only.
    """
    import matplotlib.pyplot as plt

    if not samples:
        return []
    trainer = module.trainer
    epoch = trainer.current_epoch
    written: list[Path] = []
    figs = {fam: prediction_figure(s["true"].numpy(), s["pred"].numpy(), f"{fam}, epoch {epoch}")
            for fam, s in samples.items()}
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        WandbLogger = ()
    wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if wandb_loggers:
        for lg in wandb_loggers:
            lg.log_image(key="val/prediction", images=list(figs.values()), caption=list(figs),
                         step=trainer.global_step)
    else:
        folder = Path(log_dir or ".") / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        for fam, fig in figs.items():
            path = folder / f"epoch{epoch:03d}_{fam}.png"
            fig.savefig(path, dpi=80)
            written.append(path)
    for fig in figs.values():
        plt.close(fig)
    return written
