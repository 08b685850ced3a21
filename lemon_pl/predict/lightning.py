"""``lemon-pl predict --config CONFIG --ckpt_path CKPT``: Lightning's predict over a data split.

The stage's ``predict_step`` (``OperatorModule.predict_step``) predicts every trajectory of the
data module's test split (``data.init_args.test_split``: ``test``, ``ood`` ...) of each evaluation
family, few-shot on operator tasks when ``data.unit`` is ``task``; :class:`PredictionWriter`
collects the predictions and writes into the run folder the files ``lemon-pl predict`` writes for
written equations (``lemon_pl.predict.outputs``): ``prediction.npz`` (the data are the reference),
one figure per family (``prediction_<family>.png``) and a printed per-family summary with the
latency per prediction.

``OperatorFamilyDataModule.predict_dataloader`` gives the test split's loaders.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback

from lemon_pl.data.datamodule import OperatorFamilyDataModule


class PredictionWriter(Callback):
    """Collects ``predict_step`` outputs; writes ``prediction.npz``, figures and a summary at the end.

    Args:
        folder: where to write (default: the run folder, ``trainer.log_dir``).
    """

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self._outputs: list[dict] = []
        self._seconds = 0.0
        self._started = 0.0

    def on_predict_start(self, trainer, pl_module) -> None:
        self._outputs, self._seconds = [], 0.0

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._started = time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._seconds += time.perf_counter() - self._started
        if isinstance(outputs, dict) and "pred" in outputs:
            self._outputs.append({k: (v.detach().cpu() if hasattr(v, "detach") else v) for k, v in outputs.items()})

    def on_predict_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        if not self._outputs:
            return
        if not isinstance(trainer.datamodule, OperatorFamilyDataModule):  # frames, grid and equations come from it
            import sys

            print(f"lemon-pl: warning: PredictionWriter writes predictions of operator-family data only, not of "
                  f"{type(trainer.datamodule).__name__}; nothing written", file=sys.stderr)
            return
        folder = Path(self.folder or log_dir or ".")
        if trainer.world_size > 1:
            folder = folder / f"rank{trainer.global_rank}"  # each rank predicted its shard
        ps, names = self.prediction_set(trainer, pl_module)
        first = {}
        for i, fam in enumerate(ps.family):
            first.setdefault(fam, i)
        written = ps.save(folder, [(i, f"prediction_{fam}.png") for fam, i in first.items()],
                          title=lambda i: f"{ps.family[i]}: {ps.equation[i]}\n{ps.ic[i]}")
        print(self.summary(ps, names))
        more = f" and {len(written) - 3} more" if len(written) > 3 else ""
        print("wrote " + ", ".join(str(p) for p in written[:3]) + more)

    def prediction_set(self, trainer, pl_module):
        import torch

        from lemon_pl.data import ics
        from lemon_pl.data.families import get_family
        from lemon_pl.predict.outputs import PredictionSet

        dm = trainer.datamodule
        layout = dm.layout
        frames = np.concatenate([layout.input_idx, layout.output_idx])
        names = list(getattr(pl_module, "eval_families", []) or getattr(dm, "eval_family_names", []))
        u, ref, fams, toks, ops = [], [], [], [], []
        for out in self._outputs:
            u.append(torch.cat([out["u_in"], out["pred"]], dim=1).double().numpy())
            ref.append(torch.cat([out["u_in"], out["true"]], dim=1).double().numpy())
            n = len(out["pred"])
            idx = int(out["dataloader_idx"])
            fams += [names[idx] if idx < len(names) else str(idx)] * n
            keep = ~out["token_pad_mask"]
            toks += [row[m].tolist() for row, m in zip(out["tokens"], keep)]
            ops += out["operator"].tolist()
        split_name = dm.hparams.test_split
        equations, params, t_final, labels = [], [], [], []
        for fam_name, op in zip(fams, ops):
            split = dm.split(fam_name, split_name)
            p = dict(zip(split.param_names, map(float, split.params[op])))
            fam = get_family(fam_name)
            equations.append(fam.equation(p))
            params.append(p)
            t_final.append(float(split.attrs.get("t_final", fam.t_final)))
            labels.append(f"{split_name} operator {op}")
        u, ref = np.concatenate(u), np.concatenate(ref)
        t_final = np.array(t_final)
        nt = layout.nt
        b = len(u)
        ckpt = getattr(trainer, "ckpt_path", None) or ""
        net = getattr(pl_module, "net", pl_module)
        ps = PredictionSet(
            x=ics.grid(dm.nx), t=frames[None, :] * (t_final[:, None] / nt), t_model=frames * (2.0 / nt),
            n_input=layout.input_len, u=u, u_ref=ref, equation=equations, tokens=toks, family=fams, params=params,
            t_final=t_final, ic=labels, latency_ms=np.full(b, 1e3 * self._seconds / b), solver_ms=np.full(b, np.nan),
            model_class=type(pl_module).__name__, net_class=type(net).__name__, ckpt_path=str(ckpt),
            config_path=str(Path(trainer.log_dir or ".") / "config.yaml"), source="data split",
            ref_name=[f"{split_name} data"] * b)
        return ps, names

    def summary(self, ps, names) -> str:
        rel, pers = ps.rel_l2(), ps.rel_l2_persistence()
        fams = np.array(ps.family)
        lines = [f"predicted {len(ps)} trajectories of the data ({ps.model_class} / {ps.net_class}):",
                 f"{'family':32s} {'n':>5s} {'rel_l2':>10s} {'persistence':>12s}"]
        for fam in dict.fromkeys(ps.family):
            m = fams == fam
            lines.append(f"{fam:32s} {int(m.sum()):5d} {rel[m].mean():10.4g} {pers[m].mean():12.4g}")
        lines.append(f"{'overall':32s} {len(ps):5d} {rel.mean():10.4g} {pers.mean():12.4g}")
        lines.append(f"latency: {ps.latency_ms[0]:.3g} ms per prediction (batched predict_step; few-shot batches "
                     "include the adaptation)")
        return "\n".join(lines)
