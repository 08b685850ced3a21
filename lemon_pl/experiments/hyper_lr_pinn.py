"""Hyper-LR-PINN beside its baselines: the paper's Table 2, Table 4, many-query, cost and Helmholtz.

    lemon-pl experiment hyper-lr-pinn --scale cpu
        -> results/hyper-lr-pinn/cpu/{table.md,results.csv,hyper_lr_pinn.png,many_query.png,
                                      ranks_vs_beta.png,examples.png}

Settings (``configs/experiments/hyper_lr_pinn.yaml``; every stage config is in ``configs/pinn``):

    seeds, overlays             seeds of every run; config overlays of every fit/test step
    data                        data.init_args of every step (point-set sizes, seed of the points)
    val_every                   optimiser steps between validations (the error curves, the cost study)
    steps                       optimiser steps per kind of run: phase1, phase2, pinn, naive,
                                curriculum, meta, adapt, pinn_p, s2s, helmholtz_phase1,
                                helmholtz_phase2, helmholtz_pinn
    sections                    which of table2, table4, many_query, helmholtz run
    table2                      {train: preset, targets: [beta], ranks: [r], curriculum: [beta, ...],
                                 meta_rank: r, meta: {inner_steps, inner_lr}, baselines: true}
                                (``baselines: false`` runs Hyper-LR-PINN and its deviations only)
    table4                      {ic, rank, pdes: {name: {train: [[beta, nu, rho], ...], targets: [...]}}}
    many_query                  {targets: [beta]} (phase 2 from the Table 2 phase 1)
    helmholtz                   {train: [[a1, a2], ...], targets: [[a1, a2], ...]}
    deviations                  extra Table 2 variants: {label: {key: value}}, arguments of their
                                phase-1 and phase-2 runs (e.g. model.init_args.orth_squared: true)

Every training run is followed by a test at its target μ (phase 1: at every training μ), whose
tags name the section, the method and the μ; the cost study reads the validation curves and
step times that every fit records in ``fit_summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import Step
from lemon_pl.pinn.metrics import PINN_METRICS, mu_label

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "hyper-lr-pinn"
ORDER = 5
METRICS = PINN_METRICS
TABLE_HEAD = ("Per condition and μ", "Relative L2, MAE, max error, explained variance and residual RMS on the "
              "1,000 test points of each μ, mean ± std over seeds. `overall` is the mean over the μ of the "
              "condition.", ("rel_l2", "MAE", "max error", "explained variance", "residual RMS"))
CDR = ("beta", "nu", "rho")
HELMHOLTZ = ("a1", "a2")

#: [P]'s numbers (pinn-methods.md §1): Table 2 relative error at beta = 30 / 35 / 40 (rank 50
#: for the baselines), Table 4 relative error per PDE
PAPER_TABLE2 = {
    "PINN": None, "Naive-LR-PINN r=10": (.5344, .5357, .5632), "Naive-LR-PINN r=30": (.5126, .5670, .5724),
    "Naive-LR-PINN r=50": (.5126, .5208, .5855), "Curriculum r=10": (.4098, .5465, .5611),
    "Curriculum r=30": (.4204, .5503, .5652), "Curriculum r=50": (.4127, .5619, .5757),
    "MAML r=10": (.6294, .6213, .6446), "MAML r=30": (.5451, .5466, .5700), "MAML r=50": (.5562, .5514, .5799),
    "Reptile r=10": (.5551, .5446, .5632), "Reptile r=30": (.5704, .5506, .5810),
    "Reptile r=50": (.5496, .5404, .5645), "Hyper-LR-PINN full rank": (.0379, .0443, .0655),
    "Hyper-LR-PINN adaptive rank": (.0389, .0461, .0722)}
PAPER_TABLE4 = {
    "convection": {"PINN": .0327, "PINN-P": .0217, "PINN-S2S": .2160, "MAML": .1036, "Reptile": .0347,
                   "Hyper-LR-PINN": .0085},
    "reaction": {"PINN": .3907, "PINN-P": .2024, "PINN-S2S": .5907, "MAML": .0057, "Reptile": .0064,
                 "Hyper-LR-PINN": .0045},
    "cdr": {"PINN": .2210, "PINN-P": .2308, "PINN-S2S": .5983, "MAML": .0144, "Reptile": .0701,
            "Hyper-LR-PINN": .0329}}
TABLE4_METHODS = ("PINN", "PINN-P", "PINN-S2S", "MAML", "Reptile", "Hyper-LR-PINN")


class _Steps:
    """The fit and test steps of the pipeline, through the one :class:`Builder` (the PINN stage
    configs live in ``configs/pinn``; the scale's ``data`` section is every step's data arguments)."""

    def __init__(self, sc: dict) -> None:
        self.sc, self.b = sc, Builder(sc)
        self.out: list[Step] = []
        self.steps = dict(sc.get("steps") or {})
        self.val_every = int(sc.get("val_every", 100))

    def n(self, kind: str) -> int:
        if kind not in self.steps:
            raise ValueError(f"the experiment config sets no steps.{kind} for this scale")
        return int(self.steps[kind])

    def argv(self, command: str, config: str, args: dict, seed: int, extra_configs: tuple[str, ...] = ()) -> list[str]:
        data = {f"data.init_args.{k}": v for k, v in (self.sc.get("data") or {}).items()}
        return self.b.argv(command, f"pinn/{config}", overlays=extra_configs, data=data, args=args, seed=seed)

    def fit(self, sid: str, config: str, kind: str, args: dict, seed: int, needs: list[str] | None = None,
            extra_configs: tuple[str, ...] = ()) -> str:
        a = {"trainer.max_steps": self.n(kind), "data.init_args.steps_per_epoch": self.val_every,
             "trainer.check_val_every_n_epoch": 1, "trainer.enable_progress_bar": False, **args}
        self.out.append(Step(sid, self.argv("fit", config, a, seed, extra_configs), needs=list(needs or [])))
        return sid

    def test(self, fit_id: str, config: str, args: dict, seed: int, tags: dict,
             extra_configs: tuple[str, ...] = (), figures: int = 0, step_id: str | None = None) -> None:
        a = {"model.init_args.max_figures": figures, "trainer.enable_progress_bar": False, **args,
             "ckpt_path": f"{{ckpt:{fit_id}}}"}
        self.out.append(Step(step_id or f"{fit_id}_test", self.argv("test", config, a, seed, extra_configs),
                             tags={"seed": seed, "fit": fit_id, **tags}))


def _target(mu: list[float], ic: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"data.init_args.mu": [float(v) for v in mu], "data.init_args.preset": None,
                           "data.init_args.mu_ranges": None}
    if ic is not None:
        out["data.init_args.problem.init_args.ic"] = ic
    return out


def _train_set(mu: list[list[float]], ic: str | None = None) -> dict[str, Any]:
    out = _target(mu[0], ic)
    out["data.init_args.mu"] = [[float(v) for v in m] for m in mu]
    return out


def _tags(section: str, method: str, names: tuple[str, ...], mu: list[float], **more: Any) -> dict[str, Any]:
    label = mu_label(names, mu)
    return {"condition": f"{section}: {method}", "section": section, "method": method, "family": label,
            "mu": [float(v) for v in mu], **more}


def steps(sc: dict) -> list[Step]:
    """The pipeline of every section of ``sections`` for every seed (see module doc)."""
    require(sc, "seeds", "steps", "sections")
    sections = list(sc["sections"])
    unknown = set(sections) - {"table2", "table4", "many_query", "helmholtz"}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from table2, table4, many_query, helmholtz")
    st = _Steps(sc)
    for s in sc["seeds"]:
        if "table2" in sections or "many_query" in sections:
            _table2(st, sc, int(s), "table2" in sections, "many_query" in sections)
        if "table4" in sections:
            _table4(st, sc, int(s))
        if "helmholtz" in sections:
            _helmholtz(st, sc, int(s))
    return st.out


def _table2(st: _Steps, sc: dict, s: int, baselines: bool, many_query: bool) -> None:
    t2 = dict(sc.get("table2") or {})
    preset, targets = t2.get("train", "table2_convection"), [float(b) for b in t2.get("targets", [30, 35, 40])]
    train = {"data.init_args.preset": preset, "data.init_args.mu": None, "data.init_args.mu_ranges": None}
    variants = {"Hyper-LR-PINN": {}, **{f"Hyper-LR-PINN, {k}": dict(v) for k, v in (sc.get("deviations") or {}).items()}}
    for v_i, (label, extra) in enumerate(variants.items()):
        tag = "" if v_i == 0 else f"_dev{v_i}"
        p1 = st.fit(f"t2_phase1{tag}_s{s}", "hyper_lr_pinn.yaml", "phase1", {**train, **extra}, s)
        if v_i == 0:
            st.test(p1, "hyper_lr_pinn.yaml", {**train, **extra,
                                               "model.init_args.rank_sweep": t2.get("rank_sweep", [0, 60, 1])}, s,
                    {"condition": "Table 2: Hyper-LR-PINN phase 1 (no adaptation)", "section": "table2 phase 1",
                     "method": "phase 1"})
        ranks = ("full", "adaptive") if v_i == 0 else ("full",)
        for b in targets if baselines else []:
            mu = [b, 0.0, 0.0]
            for rank in ranks:
                fid = st.fit(f"t2_phase2{tag}_{rank}_b{b:g}_s{s}", "hyper_lr_pinn_adapt.yaml", "phase2",
                             {**_target(mu), **extra, "model.init_args.init_from": f"{{ckpt:{p1}}}",
                              "model.init_args.rank": rank}, s, [p1])
                st.test(fid, "hyper_lr_pinn_adapt.yaml", {**_target(mu), **extra, "model.init_args.rank": rank}, s,
                        _tags("Table 2", f"{label} {rank} rank", CDR, mu, x=b), figures=int(s == 0 and v_i == 0))
        if v_i == 0 and many_query:
            for b in [float(x) for x in (sc.get("many_query") or {}).get("targets", [])]:
                mu = [b, 0.0, 0.0]
                fid = st.fit(f"mq_phase2_b{b:g}_s{s}", "hyper_lr_pinn_adapt.yaml", "phase2",
                             {**_target(mu), "model.init_args.init_from": f"{{ckpt:{p1}}}"}, s, [p1])
                st.test(fid, "hyper_lr_pinn_adapt.yaml", _target(mu), s,
                        _tags("many-query", "Hyper-LR-PINN full rank", CDR, mu, x=b))
    if not baselines or not t2.get("baselines", True):
        return
    for b in targets:
        mu = [b, 0.0, 0.0]
        fid = st.fit(f"t2_pinn_b{b:g}_s{s}", "pinn.yaml", "pinn", _target(mu), s)
        st.test(fid, "pinn.yaml", _target(mu), s, _tags("Table 2", "PINN", CDR, mu, x=b), figures=int(s == 0))
        for r in t2.get("ranks", [10, 30, 50]):
            rank = {"model.init_args.net.init_args.rank": int(r)}
            fid = st.fit(f"t2_naive_r{r}_b{b:g}_s{s}", "naive_lr_pinn.yaml", "naive", {**_target(mu), **rank}, s)
            st.test(fid, "naive_lr_pinn.yaml", {**_target(mu), **rank}, s,
                    _tags("Table 2", f"Naive-LR-PINN r={r}", CDR, mu, x=b))
    # curriculum: warm-start through increasing beta, tested at every target on the way
    for r in t2.get("curriculum_ranks", [t2.get("meta_rank", 50)]):
        rank = {"model.init_args.net.init_args.rank": int(r)}
        prev = None
        for b in sorted({*map(float, t2.get("curriculum", [10, 20])), *targets}):
            mu = [b, 0.0, 0.0]
            args = {**_target(mu), **rank}
            if prev:
                args["model.init_args.init_from"] = f"{{ckpt:{prev}}}"
            prev = st.fit(f"t2_curriculum_r{r}_b{b:g}_s{s}", "naive_lr_pinn.yaml", "curriculum", args, s)
            if b in targets:
                st.test(prev, "naive_lr_pinn.yaml", {**_target(mu), **rank}, s,
                        _tags("Table 2", f"Curriculum r={r}", CDR, mu, x=b))
    r = int(t2.get("meta_rank", 50))
    meta = {f"model.init_args.{k}": v for k, v in (t2.get("meta") or {}).items()}
    rank = {"model.init_args.net.init_args.rank": r}
    for alg, label in (("maml", "MAML"), ("reptile", "Reptile")):
        mid = st.fit(f"t2_{alg}_r{r}_s{s}", "meta_lr_pinn.yaml", "meta",
                     {**train, **rank, **meta, "model.init_args.algorithm": alg}, s)
        for b in targets:
            mu = [b, 0.0, 0.0]
            fid = st.fit(f"t2_{alg}_r{r}_adapt_b{b:g}_s{s}", "naive_lr_pinn.yaml", "adapt",
                         {**_target(mu), **rank, "model.init_args.init_from": f"{{ckpt:{mid}}}"}, s, [mid])
            st.test(fid, "naive_lr_pinn.yaml", {**_target(mu), **rank}, s,
                    _tags("Table 2", f"{label} r={r}", CDR, mu, x=b))


def _table4(st: _Steps, sc: dict, s: int) -> None:
    t4 = dict(sc.get("table4") or {})
    ic, r = t4.get("ic", "gauss_pi_2"), int(t4.get("rank", 50))
    rank = {"model.init_args.net.init_args.rank": r}
    meta = {f"model.init_args.{k}": v for k, v in (t4.get("meta") or {}).items()}
    for pde, spec in (t4.get("pdes") or {}).items():
        train = [[float(v) for v in m] for m in spec["train"]]
        targets = [[float(v) for v in m] for m in spec["targets"]]
        tr = _train_set(train, ic)
        p1 = st.fit(f"t4_{pde}_phase1_s{s}", "hyper_lr_pinn.yaml", "phase1", tr, s)
        pp = st.fit(f"t4_{pde}_pinnp_s{s}", "pinn_p.yaml", "pinn_p", tr, s)
        metas = {alg: st.fit(f"t4_{pde}_{alg}_s{s}", "meta_lr_pinn.yaml", "meta",
                             {**tr, **rank, **meta, "model.init_args.algorithm": alg}, s) for alg in ("maml", "reptile")}
        for j, mu in enumerate(targets):
            tgt, suffix = _target(mu, ic), f"{pde}{j}_s{s}"
            tags = lambda method: _tags("Table 4", method, CDR, mu, pde=pde)  # noqa: E731
            fid = st.fit(f"t4_phase2_{suffix}", "hyper_lr_pinn_adapt.yaml", "phase2",
                         {**tgt, "model.init_args.init_from": f"{{ckpt:{p1}}}"}, s, [p1])
            st.test(fid, "hyper_lr_pinn_adapt.yaml", tgt, s, tags("Hyper-LR-PINN"))
            fid = st.fit(f"t4_pinn_{suffix}", "pinn.yaml", "pinn", tgt, s)
            st.test(fid, "pinn.yaml", tgt, s, tags("PINN"))
            st.test(pp, "pinn_p.yaml", tgt, s, tags("PINN-P"), step_id=f"{pp}_test_{j}")
            fid = st.fit(f"t4_s2s_{suffix}", "pinn_s2s.yaml", "s2s", tgt, s)
            st.test(fid, "pinn_s2s.yaml", tgt, s, tags("PINN-S2S"))
            for alg, label in (("maml", "MAML"), ("reptile", "Reptile")):
                fid = st.fit(f"t4_{alg}_adapt_{suffix}", "naive_lr_pinn.yaml", "adapt",
                             {**tgt, **rank, "model.init_args.init_from": f"{{ckpt:{metas[alg]}}}"}, s, [metas[alg]])
                st.test(fid, "naive_lr_pinn.yaml", {**tgt, **rank}, s, tags(label))


def _helmholtz(st: _Steps, sc: dict, s: int) -> None:
    hz = dict(sc.get("helmholtz") or {})
    extra = ("data/pinn_helmholtz.yaml",)
    train = _train_set([[float(v) for v in m] for m in hz.get("train", [[2.5, 2.5]])])
    p1 = st.fit(f"hz_phase1_s{s}", "hyper_lr_pinn.yaml", "helmholtz_phase1", train, s, extra_configs=extra)
    for j, mu in enumerate([[float(v) for v in m] for m in hz.get("targets", [])]):
        tgt = _target(mu)
        fid = st.fit(f"hz_phase2_{j}_s{s}", "hyper_lr_pinn_adapt.yaml", "helmholtz_phase2",
                     {**tgt, "model.init_args.init_from": f"{{ckpt:{p1}}}",
                      "data.init_args.steps_per_epoch": 1}, s, [p1], extra_configs=extra)
        st.test(fid, "hyper_lr_pinn_adapt.yaml", tgt, s,
                _tags("Helmholtz", f"Hyper-LR-PINN, {st.n('helmholtz_phase2')} phase-2 steps", HELMHOLTZ, mu),
                extra_configs=extra)
        fid = st.fit(f"hz_pinn_{j}_s{s}", "pinn.yaml", "helmholtz_pinn", tgt, s, extra_configs=extra)
        st.test(fid, "pinn.yaml", tgt, s, _tags("Helmholtz", f"PINN, {st.n('helmholtz_pinn')} steps", HELMHOLTZ, mu),
                extra_configs=extra)


# =========================================================================== report


def _cells(rows: list[dict[str, Any]], cond: str, fam: str) -> str:
    from lemon_pl.experiments.report import fmt

    r = next((r for r in rows if r["condition"] == cond and r["family"] == fam), None)
    return fmt(r["rel_l2_mean"], r["rel_l2_std"]) if r else "n/a"


def _table2_lines(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    methods = list(dict.fromkeys(r["tags"]["method"] for r in results if r["tags"].get("section") == "Table 2"))
    if not methods:
        return []
    betas = sorted({r["tags"]["x"] for r in results if r["tags"].get("section") == "Table 2"})
    labels = [mu_label(CDR, [b, 0, 0]) for b in betas]
    paper_idx = {30.0: 0, 35.0: 1, 40.0: 2}
    lines = ["## Table 2: convection, IC 1 + sin x, phase 1 on β ∈ {30..40}", "",
             "Relative L2 on the 1,000 test points, mean ± std over seeds; [P] = the paper's value.", "",
             "| method | " + " | ".join(f"β = {b:g} | [P]" for b in betas) + " |", "|---|" + "---|---|" * len(betas)]
    for m in methods:
        paper = PAPER_TABLE2.get(m)
        cells = []
        for b, lab in zip(betas, labels):
            p = paper[paper_idx[b]] if paper and b in paper_idx else None
            cells += [_cells(rows, f"Table 2: {m}", lab), f"{p:.4f}" if p is not None else "–"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + [""]


def _table4_lines(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    from lemon_pl.experiments.report import fmt
    from lemon_pl.core.metrics import mean_std

    t4 = [r for r in results if r["tags"].get("section") == "Table 4"]
    if not t4:
        return []
    pdes = list(dict.fromkeys(r["tags"]["pde"] for r in t4))
    lines = ["## Table 4: IC N(π, (π/2)²), β, ν, ρ ∈ [1, 5]", "",
             "Relative L2, mean over the target μ of each PDE, then mean ± std over seeds; [P] in brackets.", "",
             "| PDE | " + " | ".join(TABLE4_METHODS) + " |", "|---|" + "---|" * len(TABLE4_METHODS)]
    for pde in pdes:
        cells = []
        for m in TABLE4_METHODS:
            per_seed: dict[Any, list[float]] = {}
            for r in t4:
                if r["tags"]["pde"] == pde and r["tags"]["method"] == m:
                    per_seed.setdefault(r["tags"]["seed"], []).append(r["families"][r["tags"]["family"]]["rel_l2"])
            vals = [sum(v) / len(v) for v in per_seed.values()]
            mean, std = mean_std(vals) if vals else (float("nan"), float("nan"))
            cells.append(f"{fmt(mean, std)} [{PAPER_TABLE4.get(pde, {}).get(m, float('nan')):.4f}]")
        lines.append(f"| {pde} | " + " | ".join(cells) + " |")
    return lines + [""]


def _cost_lines(results: list[dict[str, Any]]) -> list[str]:
    """Optimiser steps to validation MAE < target and the time per step: PINN vs phase 2."""
    from lemon_pl.core.metrics import mean_std

    pairs = [(r["tags"], r["fit"]) for r in results if r.get("fit") and r["tags"].get("section") in
             ("Table 2", "many-query") and (r["tags"]["method"] == "PINN"
                                            or r["tags"]["method"].startswith("Hyper-LR-PINN full"))]
    if not pairs:
        return []
    lines = ["## Cost: steps to validation MAE < 0.05 and time per step", "",
             "Optimiser steps (full batch = one epoch) until the validation MAE first fell below the target, "
             "at the validation interval's resolution (`never` = not within the run), and the median time per "
             "step; mean ± std over seeds, 1 torch thread.", "",
             "| β | method | steps to MAE < 0.05 (per seed) | ms per step | trainable parameters |", "|---|---|---|---|---|"]
    def kind(t: dict[str, Any]) -> str:
        return "PINN" if t["method"] == "PINN" else "Hyper-LR-PINN phase 2"

    for b, m in sorted({(t["x"], kind(t)) for t, _ in pairs}):
        sel = [f for t, f in pairs if t["x"] == b and kind(t) == m]
        steps_ = ", ".join("never" if f.get("steps_to_target") is None else str(f["steps_to_target"]) for f in sel)
        ms = mean_std([f["ms_per_step"] for f in sel if f.get("ms_per_step")])
        lines.append(f"| {b:g} | {m} | {steps_} | {ms[0]:.1f} ± {ms[1]:.1f} | {sel[0]['trainable_params']} |")
    return lines + [""]


def _helmholtz_lines(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    hz = [r for r in results if r["tags"].get("section") == "Helmholtz"]
    if not hz:
        return []
    methods = list(dict.fromkeys(r["tags"]["method"] for r in hz))
    fams = list(dict.fromkeys(r["tags"]["family"] for r in hz))
    lines = ["## Helmholtz, phase 1 on a1 = a2 ∈ [2, 3]", "", "Relative L2 at unseen a, mean ± std over seeds.", "",
             "| method | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_cells(rows, f"Helmholtz: {m}", f) for f in fams) + " |")
    return lines + [""]


def report(rep: Report) -> None:
    """Tables 2 and 4 beside the paper, the many-query curve, the cost table, Helmholtz, and
    the figures ``hyper_lr_pinn.png`` (Table 2 bars), ``many_query.png`` (error and rank vs β)
    and ``examples.png`` (reference and predictions at the largest Table 2 β, first seed)."""
    rep.summary = (_table2_lines(rep.rows, rep.results) + _table4_lines(rep.rows, rep.results)
                   + _many_query_lines(rep.rows, rep.results) + _cost_lines(rep.results)
                   + _helmholtz_lines(rep.rows, rep.results))
    _plot_table2(rep)
    _plot_many_query(rep)
    rep.examples = {"keep": lambda r: False}  # operator examples do not exist: our own figure below
    _plot_examples(rep)


def _many_query_lines(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    mq = [r for r in results if r["tags"].get("section") in ("many-query",)]
    t2 = [r for r in results if r["tags"].get("section") == "Table 2"
          and r["tags"]["method"] == "Hyper-LR-PINN full rank"]
    if not mq:
        return []
    lines = ["## Many-query: phase 2 at β outside the phase-1 range {30..40}", "",
             "| β | relative L2 | MAE |", "|---|---|---|"]
    from lemon_pl.experiments.report import fmt

    for b in sorted({r["tags"]["x"] for r in mq + t2}):
        cond = "many-query: Hyper-LR-PINN full rank" if any(r["tags"]["x"] == b for r in mq) else \
            "Table 2: Hyper-LR-PINN full rank"
        row = next((r for r in rows if r["condition"] == cond and r["family"] == mu_label(CDR, [b, 0, 0])), None)
        if row:
            lines.append(f"| {b:g} | {fmt(row['rel_l2_mean'], row['rel_l2_std'])} | "
                         f"{fmt(row['mae_mean'], row['mae_std'])} |")
    return lines + [""]


def _plot_table2(rep: Report) -> None:
    from lemon_pl.core.figures import pyplot, save_figure

    t2 = [r for r in rep.rows if r["condition"].startswith("Table 2: ") and r["family"] != "overall"]
    if not t2:
        return
    plt = pyplot()
    methods = list(dict.fromkeys(r["condition"][len("Table 2: "):] for r in t2))
    fams = list(dict.fromkeys(r["family"] for r in t2))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 3.8), constrained_layout=True)
    width = 0.8 / max(len(fams), 1)
    for j, fam in enumerate(fams):
        xs, ys, es = [], [], []
        for i, m in enumerate(methods):
            r = next((r for r in t2 if r["condition"] == f"Table 2: {m}" and r["family"] == fam), None)
            if r:
                xs.append(i - 0.4 + (j + 0.5) * width)
                ys.append(r["rel_l2_mean"])
                es.append(r["rel_l2_std"])
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=fam.split(",")[0])
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("relative L2 (test points)")
    ax.set_title("Table 2: convection, phase 1 on β ∈ {30..40}")
    ax.legend(fontsize=8)
    save_figure(fig, rep.add("hyper_lr_pinn.png"), dpi=110)


def _plot_many_query(rep: Report) -> None:
    import numpy as np

    from lemon_pl.core.figures import pyplot, save_figure

    pts = [(r["tags"]["x"], r["tags"]["seed"], r["families"][r["tags"]["family"]]["rel_l2"]) for r in rep.results
           if r["tags"].get("section") in ("many-query",) or (r["tags"].get("section") == "Table 2"
                                                               and r["tags"]["method"] == "Hyper-LR-PINN full rank")]
    phase1 = [r for r in rep.results if r["tags"].get("section") == "table2 phase 1" and r.get("log_dir")]
    if not pts and not phase1:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    if pts:
        betas = sorted({p[0] for p in pts})
        mean = [np.mean([p[2] for p in pts if p[0] == b]) for b in betas]
        std = [np.std([p[2] for p in pts if p[0] == b], ddof=1) if sum(p[0] == b for p in pts) > 1 else 0
               for b in betas]
        axes[0].errorbar(betas, mean, yerr=std, marker="o", capsize=2)
        axes[0].axvspan(30, 40, color="0.9", zorder=0, label="phase-1 β")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("β")
        axes[0].set_ylabel("relative L2 after phase 2")
        axes[0].legend(fontsize=8)
    for r in phase1:
        f = Path(r["log_dir"]) / "predictions.npz"
        if not f.exists():
            continue
        with np.load(f) as z:
            if "sweep_s" not in z.files:
                continue
            x, s = z["sweep_mu"][:, 0], z["sweep_s"]
        for layer in range(s.shape[1]):
            axes[1].plot(x, (np.abs(s[:, layer]) > 0).sum(-1), alpha=0.6, lw=1,
                         label=f"seed {r['tags']['seed']}, layer {layer + 1}")
    axes[1].axvspan(30, 40, color="0.9", zorder=0)
    axes[1].set_xlabel("β")
    axes[1].set_ylabel("learned rank (non-zero s)")
    axes[1].legend(fontsize=6, ncol=2)
    save_figure(fig, rep.add("many_query.png"), dpi=110)


def _plot_examples(rep: Report) -> None:
    import numpy as np

    from lemon_pl.core.figures import pyplot, save_figure

    t2 = [r for r in rep.results if r["tags"].get("section") == "Table 2" and r.get("log_dir")
          and (Path(r["log_dir"]) / "predictions.npz").exists()]
    if not t2:
        return
    seed0 = min(r["tags"]["seed"] for r in t2)
    b = max(r["tags"]["x"] for r in t2)
    sel = [r for r in t2 if r["tags"]["seed"] == seed0 and r["tags"]["x"] == b]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sel) + 1, figsize=(3.2 * (len(sel) + 1), 3.0), constrained_layout=True)
    ref = None
    for ax, r in zip(axes[1:], sel):
        with np.load(Path(r["log_dir"]) / "predictions.npz") as z:
            x, t, u, ref = z["x"], z["t"], z["u_pred"][0], z["u_ref"][0]
        ax.pcolormesh(x, t, u, shading="auto", vmin=ref.min(), vmax=ref.max())
        rel = np.linalg.norm(u - ref) / np.linalg.norm(ref)
        ax.set_title(f"{r['tags']['method']}\nrel L2 {rel:.3f} (grid)", fontsize=8)
        ax.set_xlabel("x")
    axes[0].pcolormesh(x, t, ref, shading="auto")
    axes[0].set_title(f"reference, β = {b:g}", fontsize=8)
    axes[0].set_ylabel("t")
    save_figure(fig, rep.add("examples.png"), dpi=100)
