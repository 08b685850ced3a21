"""``lemon-pl predict``: a trained model answers a PDE the user writes down.

::

    lemon-pl predict --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt \\
        --equation "u_t + 0.5*u_x = 0" --u0 "sin(pi*x)" --t_final 2 --out pred/
    lemon-pl predict --ckpt_path ... --equation "u_t = 0.003*u_xx + u*(1-u)" --u0 ic.npy --adapt support.h5 --steps 20
    lemon-pl predict --ckpt_path ... --family kdv --params delta=0.022 --u0 "exp(-20*(x-1)**2)"

(``lemon-pl predict --config ...`` is Lightning's predict over a data split, see
``lemon_pl.predict.lightning``.) Every check that can fail runs before anything is written: a bad
equation, initial condition, checkpoint, config or support file is one ``lemon-pl predict: error:``
line naming it, exit code 2, and no output folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from lemon_pl.cli.args import OneLineArgumentParser

PROG = "lemon-pl predict"


def build_parser() -> OneLineArgumentParser:
    from lemon_pl.data import ics

    p = OneLineArgumentParser(
        prog=PROG,
        description="Predict the solution of a PDE written in infix form (or of a known family) from initial "
                    "conditions with a trained lemon-pl model; compare with the family's solver when lemon-pl "
                    "recognises the equation. (`lemon-pl predict --config CONFIG --ckpt_path CKPT` runs "
                    "Lightning's predict over a data split instead.)")
    p.add_argument("--ckpt_path", "--ckpt", dest="ckpt", required=True, help="checkpoint of a lemon-pl run")
    p.add_argument("--run-config", help="the training run's config.yaml (default: <run>/config.yaml next to "
                                        "<run>/checkpoints/)")
    eq = p.add_argument_group("equation (one of)")
    eq.add_argument("--equation", action="append", default=[], metavar="EQ",
                    help="e.g. 'u_t + 0.5*u_x - 0.01*u_xx = 0', 'u_tt = u_xx - sin(u)' (repeatable)")
    eq.add_argument("--equations", metavar="FILE", help="a text file with one equation per line (# comments)")
    eq.add_argument("--family", help="a known family (lemon-pl generate --list), with --params")
    eq.add_argument("--params", nargs="+", default=[], metavar="K=V", help="the family's parameters, e.g. delta=0.022")
    eq.add_argument("--stored-time", action="store_true",
                    help="the equation is written in model time (as decoded tokens are): u_t's coefficient is "
                         "c_t = 2/t_final")
    p.add_argument("--t_final", "--t-final", type=float, dest="t_final",
                   help="physical horizon of the prediction (default: the support file's, the recognised family's, "
                        "else 2)")
    ic = p.add_argument_group("initial conditions")
    ic.add_argument("--u0", action="append", default=[], metavar="SPEC",
                    help="an expression in x ('sin(pi*x)'), a .npy file (nx,) or (n, nx), an IC sampler "
                         f"({', '.join(ics.IC_SAMPLERS)}) or 'family' (repeatable; default: 'family' for a "
                         "known family)")
    ic.add_argument("--seed", type=int, default=0, help="seed of the IC samplers (default 0)")
    ic.add_argument("--num-ics", type=int, default=1, help="draws per IC sampler (default 1)")
    ad = p.add_argument_group("few-shot adaptation")
    ad.add_argument("--adapt", metavar="FILE", help="support trajectories: an HDF5 with u (n, nt, nx), or a data-engine "
                                                    "file ROOT/<family>/<split>.h5 (see lemon_pl.predict.support)")
    ad.add_argument("--steps", type=int, help="adaptation steps (default: the stage's few-shot steps, else 20)")
    ad.add_argument("--lr", type=float, help="adaptation learning rate (default: the stage's)")
    ad.add_argument("--adapt-operator", type=int, default=0, help="operator of a data-engine file (default 0)")
    ad.add_argument("--support-size", type=int, help="use the first N support trajectories (default: all)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    p.add_argument("--no-solver", action="store_true", help="do not run the family's solver")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return p


def main(argv: Sequence[str]) -> int:
    from lemon_pl.errors import CheckpointMismatchError, CheckpointWriteError
    from lemon_pl.predict.initial import InitialConditionError
    from lemon_pl.predict.model import ModelLoadError
    from lemon_pl.predict.parse import EquationError
    from lemon_pl.predict.support import SupportFileError

    args = build_parser().parse_args(list(argv))
    try:
        return _run(args)
    except (EquationError, InitialConditionError, SupportFileError, ModelLoadError, CheckpointMismatchError,
            CheckpointWriteError, FileNotFoundError, ValueError) as err:
        if os.environ.get("LEMON_TRACEBACK"):
            raise
        from lemon_pl.cli.args import usage_error

        return usage_error(PROG, str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def _requests(args) -> list:
    """Parse every equation (before anything is loaded)."""
    from lemon_pl.predict.match import family_equation, match_family, parse_params
    from lemon_pl.predict.parse import EquationError, parse_equation
    from lemon_pl.predict.run import Request

    given = sum(bool(x) for x in (args.equation, args.equations, args.family))
    if given > 1:
        raise EquationError("give one of --equation, --equations FILE or --family")
    if args.params and not args.family:
        raise EquationError("--params needs --family NAME")
    texts: list[tuple[str, str]] = [(e, "--equation") for e in args.equation]
    if args.equations:
        path = Path(args.equations)
        if not path.is_file():
            raise EquationError(f"--equations {path} does not exist" if not path.exists()
                                else f"--equations {path} is not a file")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise EquationError(f"--equations {path} cannot be read ({err})") from None
        texts = [(ln.split("#", 1)[0].strip(), f"{path}:{n}") for n, ln in enumerate(lines, 1)]
        texts = [(t, w) for t, w in texts if t]
        if not texts:
            raise EquationError(f"--equations {path} holds no equation")
    requests = []
    for text, where in texts:
        try:
            eq = parse_equation(text, stored_time=args.stored_time)
        except EquationError as err:
            raise EquationError(f"{where}: {err}") from None
        requests.append(Request(eq, where, match_family(eq)))
    if args.family:
        match, eq, notes = family_equation(args.family, parse_params(args.params))
        requests.append(Request(eq, "--family", match, notes=notes))
    return requests


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {parent} is not writable")


def _run(args) -> int:
    from lemon_pl.predict.initial import check_spec
    from lemon_pl.predict.match import family_equation
    from lemon_pl.predict.model import ModelLoadError, Predictor
    from lemon_pl.predict.parse import EquationError, check_t_final, parse_equation
    from lemon_pl.predict.run import Request, resolve_horizon, run_predictions
    from lemon_pl.predict.support import SupportFileError, read_support

    if args.t_final is not None:
        check_t_final(args.t_final)
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if (args.steps is not None or args.lr is not None or args.support_size is not None) and not args.adapt:
        raise ValueError("--steps, --lr and --support-size need --adapt FILE")
    requests = _requests(args)
    if not requests and not args.adapt:
        raise EquationError("give the equation: --equation EQ, --equations FILE or --family NAME --params K=V "
                            "(or --config CONFIG for Lightning's predict over a data split)")
    for spec in args.u0:  # every expression checked before the checkpoint is loaded
        check_spec(spec)
    out = Path(args.out)
    _check_out(out)
    predictor = Predictor.load(args.ckpt, args.run_config, args.device)
    if predictor.layout.input_len != 1:
        raise ModelLoadError(f"the model reads {predictor.layout.input_len} input frames; lemon-pl predict gives it "
                             "the initial condition only (a model trained with data.input_len 1)")
    support = None
    if args.adapt:
        support = read_support(args.adapt, predictor.nt, predictor.nx, args.adapt_operator, args.support_size)
        if not requests:  # the support file says which equation it holds
            if support.equation:
                try:
                    eq = parse_equation(support.equation, args.stored_time)
                except EquationError as err:
                    raise EquationError(f"--adapt {support.path}: its 'equation' attribute: {err}") from None
                requests = [Request(eq, f"{support.path} (equation)")]
                from lemon_pl.predict.match import match_family

                requests[0].match = match_family(requests[0].eq)
            elif support.family:
                match, eq, notes = family_equation(support.family, support.params)
                requests = [Request(eq, f"{support.path}, operator {support.operator}", match, notes=notes)]
            else:
                raise SupportFileError(f"--adapt {support.path} names no equation (attribute 'equation'); give "
                                       "--equation")
        if len(requests) != 1:
            raise EquationError(f"--adapt adapts to one equation; {len(requests)} were given")
        if args.t_final is not None and support.t_final is not None and \
                abs(args.t_final - support.t_final) > 1e-9 * support.t_final:
            raise SupportFileError(f"--adapt {support.path} holds trajectories to t_final = {support.t_final:g}, "
                                   f"but --t_final is {args.t_final:g}")
    for req in requests:
        resolve_horizon(req, args.t_final, support.t_final if support is not None else None)
    specs = list(args.u0)
    if not specs:
        if all(r.match is not None for r in requests):
            specs = ["family"]
        else:
            raise EquationError("give the initial condition: --u0 'sin(pi*x)', --u0 FILE.npy or --u0 SAMPLER")
    steps = 0
    if support is not None:
        steps = args.steps if args.steps is not None else (predictor.stage.eval_adapt_steps() or 20)
    ps, report, warnings = run_predictions(predictor, requests, specs, args.seed, args.num_ics, support, steps,
                                           args.lr, solve=not args.no_solver)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    written = ps.save(out)
    print("\n".join(report))
    print("wrote " + ", ".join(str(p) for p in written[:4]) + (f" and {len(written) - 4} more" if len(written) > 4 else ""))
    return 0
