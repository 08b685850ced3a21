"""Predict written equations with a trained model: requests in, a :class:`PredictionSet` out.

A :class:`Request` is one equation with its horizon and, when lemon-pl recognises it, its family
and parameters. :func:`run_predictions` predicts every request from every initial condition in
one batched forward pass, solves the recognised ones with their family's solver on the same
initial conditions (on the model's time grid), adapts first when support trajectories are given,
and returns the predictions with a readable report.

Time: the model works in stored time ``s = c_t * t`` with ``c_t = 2 / t_final`` (frames at
``s_k = 2k/nt``); a prediction to the physical horizon ``t_final`` puts ``c_t`` into the
equation's tokens (``c_t * u_t``, ``c_t**2 * u_tt``) exactly as the training data did, and its
frames are at ``t_k = k * t_final / nt``.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lemon_pl.data import ics
from lemon_pl.data.symbols import ids_to_words
from lemon_pl.predict import limits
from lemon_pl.predict.initial import InitialConditions, constant_warning, describe_grid, initial_conditions, is_sampler
from lemon_pl.predict.match import FamilyMatch, out_of_range, with_horizon
from lemon_pl.predict.model import Predictor
from lemon_pl.predict.outputs import PredictionSet
from lemon_pl.predict.parse import Equation

#: the horizon used when neither the user, a support file nor a recognised family sets one
DEFAULT_T_FINAL = 2.0


@dataclass
class Request:
    """One equation to predict."""

    eq: Equation
    where: str  # "--equation", "eqs.txt:3", "--family"
    match: FamilyMatch | None = None
    t_final: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def family(self):
        """The family predicting to this request's horizon (None: not recognised)."""
        return None if self.match is None else with_horizon(self.match.family, self.t_final)

    def tokens(self) -> list[int]:
        if self.match is not None:
            return self.family.tokens(self.match.params)
        return self.eq.tokens(self.t_final)

    def equation(self) -> str:
        return self.match.equation() if self.match is not None else self.eq.infix()


def resolve_horizon(req: Request, given: float | None, support_t_final: float | None) -> None:
    """Set ``req.t_final``: ``--t_final`` > a stored-time equation's ``2/c_t`` > the support file's >
    the recognised family's > :data:`DEFAULT_T_FINAL` (with a note saying which)."""
    if given is not None:
        req.t_final = float(given)
    elif req.eq.t_final is not None:
        req.t_final = req.eq.t_final
        req.notes.append(f"t_final = {req.t_final:g} from the stored-time coefficient c_t = {req.eq.stored_c_t:g}")
    elif support_t_final is not None:
        req.t_final = support_t_final
        req.notes.append(f"t_final = {req.t_final:g} from the support file")
    elif req.match is not None:
        req.t_final = req.match.native_t_final
        req.notes.append(f"t_final = {req.t_final:g}, {req.match.name}'s horizon (set --t_final for another)")
    else:
        req.t_final = DEFAULT_T_FINAL
        req.notes.append(f"t_final not given: {DEFAULT_T_FINAL:g} (model time = physical time; set --t_final)")
    if req.match is not None and abs(req.t_final - req.match.native_t_final) > 1e-12 * req.t_final:
        req.notes.append(f"{req.match.name}'s data have t_final = {req.match.native_t_final:g}: predicting to "
                         f"{req.t_final:g} (c_t = {2 / req.t_final:.3g}) is outside the training distribution")


def initial_sets(specs: list[str], req: Request, nx: int, seed: int, n: int,
                 shared: dict[str, InitialConditions]) -> InitialConditions:
    """The initial conditions of ``req``: every ``--u0`` spec (``family`` draws from its family)."""
    parts = []
    for spec in specs:
        if spec == "family":
            parts.append(initial_conditions(spec, nx, seed, n, req.family))
        else:
            if spec not in shared:
                shared[spec] = initial_conditions(spec, nx, seed, n)
            parts.append(shared[spec])
    u0 = np.concatenate([p.u0 for p in parts])
    labels = [lab for p in parts for lab in p.labels]
    return InitialConditions(u0, labels, [w for p in parts for w in p.warnings])


class SolverTimeout(BaseException):
    """The reference solvers ran past :data:`limits.SOLVER_SECONDS` (a BaseException, so that no
    ``except Exception`` inside a solver swallows it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`SolverTimeout` in the block after ``seconds``, and every half second after that
    until the block is left (a real-time timer; main thread on POSIX only, elsewhere no limit). The
    solvers are numpy loops, which the signal interrupts between two steps. A real-time timer
    already running (a test runner's timeout) is kept: when it would fire first ours is not armed,
    otherwise it is re-armed with its remaining time afterwards."""
    if seconds == float("inf") or threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, "setitimer"):
        yield
        return
    prev_delay, prev_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < prev_delay <= seconds:
        yield
        return
    armed = [True]

    def expire(signum, frame):
        if armed[0]:
            raise SolverTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    began = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 1e-3), 0.5)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if prev_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(prev_delay - (time.monotonic() - began), 1e-3), prev_interval)


# --------------------------------------------------------------------------- the work of a request


def count_initial_conditions(specs: list[str], num_ics: int, nx: int | None = None) -> tuple[int, dict[str, int]]:
    """How many initial conditions ``specs`` give one equation, without computing them: ``num_ics``
    per sampler (``family`` too), one per expression, the rows a ``.npy`` file declares in its
    header - at least its values / ``nx``, so that a file declaring a huge row counts for what
    loading it would take (1 when the header cannot be read: reading the file later says why).
    Returns the count and the ``.npy`` files' rows."""
    total, files = 0, {}
    for spec in specs:
        spec = str(spec).strip()
        if spec.endswith(".npy") or (Path(spec).suffix and Path(spec).is_file()):
            files[spec] = _npy_rows(Path(spec), nx)
            total += files[spec]
        elif is_sampler(spec):
            total += num_ics
        else:
            total += 1
    return total, files


def _npy_rows(path: Path, nx: int | None = None) -> int:
    """The rows of an (n, nx) ``.npy`` array from its header, at least ceil(values / nx)."""
    if not path.is_file():  # reported by the reader; never open a FIFO here
        return 1
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(fh))
        size = 1
        for d in shape:
            size *= int(d)
    except (OSError, ValueError, EOFError, SyntaxError, TypeError):
        return 1
    rows = int(shape[0]) if len(shape) == 2 else 1
    if nx:
        rows = max(rows, -(-size * max(int(dtype.itemsize), 1) // (8 * nx)))
    return max(rows, 1)


def estimate_bytes(rows: int, max_rows_solved: int, nx: int, nt: int, frames: int, n_support: int = 0,
                   adapt: bool = False) -> int:
    """Bytes a request needs at its peak (an estimate on the high side): per prediction the input,
    the normalised batch, the predicted frames, ``u``, ``u_ref`` (and the zero-shot ``u`` when
    adapting) in float64, their float32 copies and the error's temporaries in ``prediction.npz``;
    the largest solver call's (B, nt, nx) solution and working copies; the support trajectories
    and their batches. The network's activations are bounded by :data:`lemon_pl.predict.model.CHUNK`
    rows per forward pass and not counted."""
    row = nx * 8 * (8 * frames + 4 + (3 * frames if adapt else 0))
    solver = nx * 8 * nt * 4
    support = n_support * nx * 8 * (nt + 4 * frames)
    return int(rows * row + max_rows_solved * solver + support)


def run_predictions(predictor: Predictor, requests: list[Request], ic_specs: list[str], seed: int = 0,
                    num_ics: int = 1, support=None, steps: int = 0, lr: float | None = None,
                    solve: bool = True) -> tuple[PredictionSet, list[str], list[str]]:
    """Predict ``requests`` x initial conditions; returns the predictions, the report lines and warnings."""
    nx, nt = predictor.nx, predictor.nt
    frames = predictor.frames
    shared: dict[str, InitialConditions] = {}
    per_req = [initial_sets(ic_specs, r, nx, seed, num_ics, shared) for r in requests]
    warnings = list(dict.fromkeys(w for s in per_req for w in [*s.warnings, *constant_warning(s.u0, s.labels)]))
    rows = [(i, j) for i, s in enumerate(per_req) for j in range(len(s))]
    tokens = {i: r.tokens() for i, r in enumerate(requests)}
    u0 = np.stack([per_req[i].u0[j] for i, j in rows])
    batch = predictor.batch(u0[:, None], [tokens[i] for i, _ in rows])

    zero_shot, adapted = None, None
    pred, seconds = predictor.predict(batch)
    if support is not None:
        sup = predictor.batch(support.u, [tokens[0]] * len(support.u))
        adapted = predictor.adapt_predict(sup, batch, steps, lr)
        zero_shot, pred = pred, adapted["pred"]

    b = len(rows)
    n_in = predictor.layout.input_len
    u = np.concatenate([u0[:, None], pred], axis=1)
    u_ref = np.full_like(u, np.nan)
    solver_ms = np.full(b, np.nan)
    ref_notes: dict[int, str] = {}
    budget = limits.SOLVER_SECONDS
    for i, req in enumerate(requests):
        if req.match is None or not solve:
            continue
        fam = req.family
        outside = out_of_range(fam, req.match.params)
        if outside is not None:
            ref_notes[i] = f"no reference: {outside} (its solver is not run there)"
            continue
        if budget <= 0:
            ref_notes[i] = (f"no reference: the solvers used their {limits.SOLVER_SECONDS:g} s "
                            "(--no-solver skips them)")
            continue
        idx = [k for k, (ri, _) in enumerate(rows) if ri == i]
        start = time.perf_counter()
        try:
            with np.errstate(all="ignore"), time_limit(budget):
                sol = fam.solve(req.match.params, per_req[i].u0, nt=nt)
        except SolverTimeout:
            budget = 0.0
            ref_notes[i] = (f"no reference: the {fam.name} solver ran past the solvers' {limits.SOLVER_SECONDS:g} s "
                            "and was stopped (--no-solver skips it)")
            continue
        except Exception as err:  # noqa: BLE001 - a solver failing on a user's IC is reported, not fatal
            budget -= time.perf_counter() - start
            ref_notes[i] = f"the {fam.name} solver failed on these initial conditions ({type(err).__name__}: {err})"
            continue
        elapsed = time.perf_counter() - start
        budget -= elapsed
        ok = fam.accept(sol)
        if not ok.all():
            ref_notes[i] = (f"the {fam.name} solver's solution blows up (|u| > {fam.max_abs:g} or NaN) for "
                            f"{int((~ok).sum())} initial condition(s): no reference there")
        for k, good, s in zip(idx, ok, sol):
            if good:
                u_ref[k] = s[frames]
        del sol
        solver_ms[idx] = 1e3 * elapsed / len(idx)

    t_final = np.array([requests[i].t_final for i, _ in rows])
    ps = PredictionSet(
        x=ics.grid(nx), t=frames[None, :] * (t_final[:, None] / nt), t_model=predictor.stored_times,
        n_input=n_in, u=u, u_ref=u_ref, equation=[requests[i].equation() for i, _ in rows],
        tokens=[tokens[i] for i, _ in rows], family=[requests[i].match.name if requests[i].match else ""
                                                     for i, _ in rows],
        params=[dict(requests[i].match.params) if requests[i].match else {} for i, _ in rows], t_final=t_final,
        ic=[per_req[i].labels[j] for i, j in rows], latency_ms=np.full(b, 1e3 * seconds / b), solver_ms=solver_ms,
        model_class=predictor.stage_class, net_class=predictor.net_class, ckpt_path=str(predictor.ckpt_path),
        config_path=str(predictor.config_path), source="equation",
        u_zero_shot=None if zero_shot is None else np.concatenate([u0[:, None], zero_shot], axis=1),
        ref_name=[f"{requests[i].match.name} solver" if requests[i].match else "" for i, _ in rows])
    report = _report(predictor, requests, rows, ps, seconds, ref_notes, support, adapted, steps)
    return ps, report, warnings


def _report(predictor: Predictor, requests, rows, ps: PredictionSet, seconds: float, ref_notes, support,
            adapted, steps) -> list[str]:
    from lemon_pl.core.stage import count_parameters

    lay = predictor.layout
    out_idx = lay.output_idx
    shown = ", ".join(map(str, out_idx[:3])) + (f", ..., {out_idx[-1]}" if len(out_idx) > 3 else "")
    eq_note = ("reads the equation" if predictor.reads_equation
               else "does NOT read the equation (its prediction depends on u0 only)")
    lines = [
        f"model: {predictor.stage_class} / {predictor.net_class} ({count_parameters(predictor.net) / 1e6:.3g}M "
        f"parameters), {eq_note}",
        f"checkpoint: {predictor.ckpt_path} (run config {predictor.config_path})",
        f"grid: {describe_grid(predictor.nx)}; {lay.nt} frames k*t_final/{lay.nt}: {lay.input_len} input, "
        f"{lay.output_len} predicted (k = {shown})",
    ]
    rel, pers = ps.rel_l2(), ps.rel_l2_persistence()
    zs = ps.rel_l2(ps.u_zero_shot) if ps.u_zero_shot is not None else None
    for i, req in enumerate(requests):
        c_t = 2.0 / req.t_final
        lines.append(f"[{i + 1}] {req.equation()}   ({req.where}; t_final={req.t_final:g}, c_t={c_t:.3g})")
        if req.match is not None:
            how = "recognised" if req.match.fitted else "given"
            lines.append(f"    family: {req.match.describe()} ({how}); reference: its solver on the same u0")
        else:
            lines.append("    family: none recognised (no reference solution)")
        for note in [*req.notes, *req.eq.notes]:
            lines.append(f"    note: {note}")
        if req.eq.rounded:
            pairs = ", ".join(f"{a:.6g} -> {b:.3g}" for a, b in req.eq.rounded)
            lines.append(f"    note: coefficients rounded to 3 significant digits (the tokenizer's): {pairs}")
        if req.eq.order == 2:
            lines.append("    note: second order in time: the model (like its data) assumes u_t(0) = 0")
        toks = ps.tokens[[r for r, _ in rows].index(i)]
        lines.append(f"    tokens ({len(toks)}): {' '.join(ids_to_words(toks))}")
        if i in ref_notes:
            lines.append(f"    note: {ref_notes[i]}")
        for k, (ri, _) in enumerate(rows):
            if ri != i:
                continue
            if np.isfinite(rel[k]):
                extra = f", zero-shot {zs[k]:.4g}" if zs is not None else ""
                lines.append(f"    u0 = {ps.ic[k]}: rel L2 {rel[k]:.4g} vs the solver{extra} (persistence {pers[k]:.4g})")
            else:
                lines.append(f"    u0 = {ps.ic[k]}: predicted (no reference)")
    if support is not None and adapted is not None:
        before, after = adapted["support_rel_l2"]
        lines.append(f"adapted: {steps} SGD steps (lr {adapted['lr']:.3g}) on {support.describe()} in "
                     f"{adapted['seconds']:.2f} s; support rel L2 {before:.4g} -> {after:.4g}")
    b = len(rows)
    threads = torch.get_num_threads()
    solver = np.nanmean(ps.solver_ms) if np.isfinite(ps.solver_ms).any() else None
    from lemon_pl.predict.model import CHUNK

    passes = -(-b // CHUNK)
    how = (f"one batched forward pass of {1e3 * seconds:.3g} ms" if passes == 1 else
           f"{passes} batched forward passes of at most {CHUNK}, {1e3 * seconds:.3g} ms in all")
    lines.append(f"latency: {1e3 * seconds / b:.3g} ms per prediction on {predictor.device.type} "
                 f"({b} prediction{'s' if b > 1 else ''} in {how}, best of 3, "
                 f"{threads} thread{'s' if threads > 1 else ''})"
                 + (f"; the solvers took {solver:.3g} ms per prediction" if solver is not None else ""))
    return lines
