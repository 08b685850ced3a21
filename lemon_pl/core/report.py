"""The evaluation report: what a stage measured in one validation or test, and its one writer.

Every stage publishes an :class:`EvaluationReport` per evaluation (``Stage.publish_report``);
callbacks read ``pl_module.reports[stage]`` and nothing else of the stage. A report holds one row
per *group* (a family of operators, a PDE parameter value μ, a level) with its metrics, the
``overall`` row, an optional curve (the same rows after k adaptation steps), run-level extras
(the evaluation mode, support sizes, budgets: written once, and as constant columns of the CSV)
and the evaluation's wall time.

:meth:`EvaluationReport.write` is the one writer of ``<stage>_metrics.csv`` and
``<stage>_metrics.json`` (atomic, so a reader never sees half a table). The JSON keeps the rows
under ``families`` whatever the group is (the key readers of earlier versions use) and names the
group in ``group``::

    {"stage": "test", "group": "mu", "seconds": 1.2, "metrics": ["rel_l2", ...], <extras>,
     "families": {"beta=30,nu=0,rho=0": {"rel_l2": 0.03, ...}, "overall": {...}},
     "curve": {"0": {<rows>}, "5": {<rows>}}}          # only when there is a curve
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from lemon_pl.core.metrics import OVERALL

Rows = dict[str, dict[str, float]]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass
class EvaluationReport:
    """One evaluation of a stage (see the module doc).

    Args:
        stage: ``val`` or ``test``.
        group: what a row is: ``family``, ``mu``, ``level``.
        rows: ``{group name: {metric: value}}``, ``overall`` included where it applies.
        metrics: the metrics of the tables, in column order (default: the first row's keys).
        curve: ``{step count: rows}`` (errors after k adaptation steps), optional.
        extras: run-level values: JSON keys, and constant CSV / printed columns when scalar.
        seconds: wall time of the evaluation.
        arrays: what the rows were computed from, for a method's own files and figures (e.g. the
            physics-informed predictions on the evaluation grid); never written by :meth:`write`.
    """

    stage: str
    group: str
    rows: Rows
    metrics: Sequence[str] = ()
    curve: dict[str, Rows] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.metrics:
            first = next(iter(self.rows.values()), {})
            self.metrics = tuple(first)
        self.metrics = tuple(self.metrics)

    # ------------------------------------------------------------------ views
    @property
    def overall(self) -> dict[str, float]:
        return self.rows.get(OVERALL, {})

    def columns(self) -> dict[str, Any]:
        """The extras that are scalars (and neither a metric of the rows nor the group, which the
        rows already show): the constant columns of the CSV and the printed table."""
        return {k: v for k, v in self.extras.items()
                if (isinstance(v, (str, int, float, bool)) or v is None) and k not in (*self.metrics, self.group)}

    def logged(self) -> dict[str, float]:
        """Logger names: ``stage/metric`` for ``overall``, ``stage/metric/group`` otherwise (finite only)."""
        flat = {}
        for name, row in self.rows.items():
            for m, v in row.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    flat[f"{self.stage}/{m}" if name == OVERALL else f"{self.stage}/{m}/{name}"] = float(v)
        return flat

    def to_json(self) -> dict[str, Any]:
        payload = {"stage": self.stage, "group": self.group, "seconds": self.seconds, "metrics": list(self.metrics),
                   **self.extras, "families": self.rows}
        if self.curve:
            payload["curve"] = self.curve
        return payload

    def format(self, title: str | None = None) -> str:
        """The printed table: one line per row, the scalar extras as columns, the curve's overall line."""
        extra = self.columns()
        header = [self.group, *self.metrics, *extra]
        width0 = max(len(header[0]), *(len(r) for r in self.rows)) if self.rows else len(header[0])
        widths = [width0] + [max(12, len(h)) for h in header[1:]]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        for name, row in self.rows.items():
            cells = [name.ljust(widths[0])]
            values = [row.get(m, math.nan) for m in self.metrics] + list(extra.values())
            cells += [_cell(v).ljust(w) for v, w in zip(values, widths[1:])]
            lines.append("  ".join(cells))
        text = f"\n{title or f'{self.stage} results ({self.seconds:.1f} s):'}\n" + "\n".join(lines)
        if self.curve and self.metrics:
            head = self.metrics[0]
            text += f"\n{head} after k adaptation steps: " + ", ".join(
                f"k={k}: {c.get(OVERALL, {}).get(head, math.nan):.4g}" for k, c in self.curve.items())
        return text

    def csv_text(self) -> str:
        extra = self.columns()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([self.group, *self.metrics, *extra, "seconds"])
        for name, row in self.rows.items():
            w.writerow([name, *(repr(float(row.get(m, math.nan))) for m in self.metrics), *extra.values(),
                        f"{self.seconds:.3f}"])
        return buf.getvalue()

    # ------------------------------------------------------------------ writing
    def write(self, folder: str | Path | None) -> list[Path]:
        """``<stage>_metrics.csv`` and ``<stage>_metrics.json`` into ``folder`` (atomic each)."""
        from lemon_pl.core.checkpointing import atomic_write

        folder = Path(folder or ".")
        return [atomic_write(folder / f"{self.stage}_metrics.csv", self.csv_text()),
                atomic_write(folder / f"{self.stage}_metrics.json",
                             json.dumps(self.to_json(), indent=2, allow_nan=True))]

    def log_wandb(self, trainer: Any) -> None:
        """The rows as a W&B table ``<stage>/per_<group>`` (no-op without a W&B logger)."""
        from lemon_pl.core.loggers import wandb_logger

        lg = wandb_logger(trainer)
        if lg is None:
            return
        data = [[name, *(row.get(m, math.nan) for m in self.metrics)] for name, row in self.rows.items()]
        lg.log_table(key=f"{self.stage}/per_{self.group}", columns=[self.group, *self.metrics], data=data,
                     step=trainer.global_step)


def read_report(path: str | Path) -> dict[str, Any]:
    """A written ``<stage>_metrics.json`` as a dict (the rows under ``families``)."""
    return json.loads(Path(path).read_text())


def mean_rows(rows: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The unweighted mean over rows of each metric (the ``overall`` row of per-μ tables)."""
    keys = list(next(iter(rows.values()), {}))
    return {k: math.fsum(r[k] for r in rows.values()) / max(len(rows), 1) for k in keys}


__all__ = ["EvaluationReport", "OVERALL", "Rows", "mean_rows", "read_report"]
