"""``lemon-pl predict``: a trained model answers a PDE the user writes down.

::

    lemon-pl predict --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt \\
        --equation "u_t + 0.5*u_x = 0" --u0 "sin(pi*x)" --t_final 2 --out pred/
    lemon-pl predict --ckpt_path ... --equation "u_t = 0.003*u_xx + u*(1-u)" --u0 ic.npy --adapt support.h5 --steps 20
    lemon-pl predict --ckpt_path ... --family kdv --params delta=0.022 --u0 "exp(-20*(x-1)**2)"

(``lemon-pl predict --config ...`` is Lightning's predict over a data split, see
``lemon_pl.predict.lightning``.) Every check that can fail runs before anything is written: a bad
equation, initial condition, checkpoint, config or support file, a number outside its documented
range (``lemon_pl.predict.limits``, shown in ``--help``), a device this machine lacks or a request
too big for the memory is one ``lemon-pl predict: error:`` line naming it, exit code 2, and no
output folder. The folder is written all or nothing (``lemon_pl.predict.outputs.write_folder``): a
full disk is one line saying so, and leaves no partial ``--out`` and a previous one intact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from lemon_pl.cli.args import OneLineArgumentParser
from lemon_pl.predict.limits import MAX_EQUATIONS, MAX_EQUATIONS_BYTES
from lemon_pl.core.resources import cannot_write_in

PROG = "lemon-pl predict"


def build_parser() -> OneLineArgumentParser:
    from lemon_pl.data import ics
    from lemon_pl.predict import limits as lim

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
    eq.add_argument("--equations", metavar="FILE",
                    help=f"a text file with one equation per line (# comments); at most {lim.MAX_EQUATIONS} "
                         f"equations in all and {lim.MAX_EQUATIONS_BYTES // 1024} KiB")
    eq.add_argument("--family", help="a known family (lemon-pl generate --list), with --params")
    eq.add_argument("--params", nargs="+", default=[], metavar="K=V",
                    help="the family's parameters, e.g. delta=0.022; each within a factor 100 of the family's "
                         "centre (kdv: delta in 0.00022 .. 2.2), a fixed-range one within its range, a discrete one "
                         "one of its choices")
    eq.add_argument("--stored-time", action="store_true",
                    help="the equation is written in model time (as decoded tokens are): u_t's coefficient is "
                         "c_t = 2/t_final")
    p.add_argument("--t_final", "--t-final", type=float, dest="t_final",
                   help=f"physical horizon of the prediction, {lim.T_FINAL[0]:g} .. {lim.T_FINAL[1]:g} (default: the "
                        "support file's, the recognised family's, else 2)")
    ic = p.add_argument_group("initial conditions")
    ic.add_argument("--u0", action="append", default=[], metavar="SPEC",
                    help="an expression in x ('sin(pi*x)'), a .npy file (nx,) or (n, nx), an IC sampler "
                         f"({', '.join(ics.IC_SAMPLERS)}) or 'family' (repeatable; default: 'family' for a "
                         "known family)")
    ic.add_argument("--seed", type=int, default=0, help="seed of the IC samplers, 0 .. 2^63-1 (default 0)")
    ic.add_argument("--num-ics", type=int, default=1,
                    help=f"draws per IC sampler, {lim.NUM_ICS[0]} .. {lim.NUM_ICS[1]} (default 1); the request "
                         "(equations x initial conditions x frames x grid, the solvers' solutions) must fit "
                         f"min({lim.MEMORY_CAP // 1024**3} GiB, half the available memory), estimated before "
                         "anything is allocated")
    ad = p.add_argument_group("few-shot adaptation")
    ad.add_argument("--adapt", metavar="FILE", help="support trajectories: an HDF5 with u (n, nt, nx), or a data-engine "
                                                    "file ROOT/<family>/<split>.h5 (see lemon_pl.predict.support)")
    ad.add_argument("--steps", type=int,
                    help=f"adaptation steps, {lim.STEPS[0]} .. {lim.STEPS[1]} (default: the stage's few-shot steps, "
                         "else 20)")
    ad.add_argument("--lr", type=float, help=f"adaptation learning rate in (0, {lim.LR_MAX:g}] (default: the stage's)")
    ad.add_argument("--adapt-operator", type=int,
                    help="operator of a data-engine file, 0 .. its operators - 1 (default 0)")
    ad.add_argument("--support-size", type=int,
                    help=f"use the first N support trajectories, {lim.SUPPORT_SIZE[0]} .. {lim.SUPPORT_SIZE[1]} "
                         f"(default: all; needed for a file with more than {lim.SUPPORT_SIZE[1]})")
    p.add_argument("--out", default="predictions",
                   help="output folder (default: predictions/), written all or nothing; an existing one is replaced "
                        "only when it holds nothing but an earlier prediction's files")
    p.add_argument("--no-solver", action="store_true",
                   help=f"do not run the family's solver (the solvers get {lim.SOLVER_SECONDS:g} s in all)")
    p.add_argument("--device", default="cpu",
                   help="torch device: cpu, cuda, cuda:N or mps, checked before the model is built (default cpu)")
    return p


def main(argv: Sequence[str]) -> int:
    from lemon_pl.core.errors import CheckpointMismatchError, CheckpointWriteError
    from lemon_pl.predict.initial import InitialConditionError
    from lemon_pl.predict.model import ModelLoadError
    from lemon_pl.predict.outputs import PredictionWriteError
    from lemon_pl.predict.parse import EquationError
    from lemon_pl.predict.support import SupportFileError

    args = build_parser().parse_args(list(argv))
    try:
        return _run(args)
    except (EquationError, InitialConditionError, SupportFileError, ModelLoadError, CheckpointMismatchError,
            CheckpointWriteError, PredictionWriteError, FileNotFoundError, ValueError) as err:
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
    if len(texts) > MAX_EQUATIONS:
        raise EquationError(f"--equation is given {len(texts)} times; one request predicts at most "
                            f"{MAX_EQUATIONS} equations")
    if args.equations:
        texts = _equations_file(Path(args.equations))
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


def _equations_file(path: Path) -> list[tuple[str, str]]:
    """The equations of an ``--equations`` file with their ``FILE:LINE``; its size and the number of
    equations bounded before anything is parsed."""
    import stat

    from lemon_pl.predict.parse import EquationError

    try:
        st = path.stat()
    except FileNotFoundError:
        raise EquationError(f"--equations {path} does not exist") from None
    except OSError as err:
        raise EquationError(f"--equations {path} cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EquationError(f"--equations {path} is not a regular file")
    if st.st_size > MAX_EQUATIONS_BYTES:
        raise EquationError(f"--equations {path} holds {st.st_size} bytes; an equations file may hold at most "
                            f"{MAX_EQUATIONS_BYTES} ({MAX_EQUATIONS} equations)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_EQUATIONS_BYTES + 1)
        lines = data.decode("utf-8").splitlines()
    except OSError as err:
        raise EquationError(f"--equations {path} cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise EquationError(f"--equations {path} is not UTF-8 text (byte {err.start})") from None
    if len(data) > MAX_EQUATIONS_BYTES:
        raise EquationError(f"--equations {path} holds more than {MAX_EQUATIONS_BYTES} bytes")
    texts = [(ln.split("#", 1)[0].strip(), f"{path}:{n}") for n, ln in enumerate(lines, 1)]
    texts = [(t, w) for t, w in texts if t]
    if not texts:
        raise EquationError(f"--equations {path} holds no equation")
    if len(texts) > MAX_EQUATIONS:
        raise EquationError(f"--equations {path} holds {len(texts)} equations; one request predicts at most "
                            f"{MAX_EQUATIONS} (split the file)")
    return texts


def _check_out(out: Path) -> None:
    """``--out`` can take a new prediction folder: missing, or a folder holding only an earlier
    prediction's files (replaced whole), under a writable parent."""
    from lemon_pl.predict.outputs import foreign_entries

    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        try:
            foreign = foreign_entries(out)
        except OSError as err:
            raise ValueError(f"--out {out} cannot be read ({err.strerror or err})") from None
        if foreign:
            raise ValueError(f"--out {out} holds files lemon-pl predict did not write ({', '.join(foreign[:3])}"
                             f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder, or the folder of "
                             "an earlier prediction (which is replaced)")
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    parent = next((p for p in target.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is not a folder")
    why = cannot_write_in(parent)
    if why is not None:
        raise ValueError(f"--out {out}: {parent} is not writable ({why})")


def _check_numbers(args) -> None:
    """Every numeric flag within its documented range (``lemon_pl.predict.limits``)."""
    from lemon_pl.predict import limits as lim

    lim.check_t_final(args.t_final)
    lim.check_int("--seed", args.seed, lim.SEED)
    lim.check_int("--num-ics", args.num_ics, lim.NUM_ICS)
    lim.check_int("--steps", args.steps, lim.STEPS)
    lim.check_float("--lr", args.lr, 0.0, lim.LR_MAX, low_open=True)
    lim.check_int("--adapt-operator", args.adapt_operator, lim.ADAPT_OPERATOR)
    lim.check_int("--support-size", args.support_size, lim.SUPPORT_SIZE)


def _check_memory(args, requests, specs, predictor, support) -> None:
    """Refuse, naming the flag that makes it big, a request whose estimated memory
    (:func:`~lemon_pl.predict.run.estimate_bytes`) exceeds :func:`~lemon_pl.predict.limits.memory_limit`."""
    from lemon_pl.predict import limits as lim
    from lemon_pl.predict.initial import is_sampler
    from lemon_pl.predict.run import count_initial_conditions, estimate_bytes
    from lemon_pl.core.resources import format_bytes

    per_eq, files = count_initial_conditions(specs, args.num_ics, predictor.nx)
    rows = len(requests) * per_eq
    solved = per_eq if (not args.no_solver and any(r.match is not None for r in requests)) else 0
    need = estimate_bytes(rows, solved, predictor.nx, predictor.nt, len(predictor.frames),
                          0 if support is None else len(support.u), adapt=support is not None)
    limit, why = lim.memory_limit()
    if need <= limit:
        return
    samplers = sum(is_sampler(str(s).strip()) for s in specs)
    biggest = max(files.items(), key=lambda kv: kv[1], default=(None, 0))
    if samplers and samplers * args.num_ics >= biggest[1]:
        flag = f"--num-ics {args.num_ics}"
    elif biggest[0] is not None and biggest[1] > 1:
        flag = f"--u0 {biggest[0]} (as big as {biggest[1]} initial conditions)"
    elif args.equations:
        flag = f"--equations {args.equations}"
    else:
        flag = "--u0"
    raise ValueError(f"{flag}: {len(requests)} equation{'s' if len(requests) != 1 else ''} x {per_eq} initial "
                     f"condition{'s' if per_eq != 1 else ''} = {rows} predictions would need about "
                     f"{format_bytes(need)} of memory (predictions, reference solutions, saved arrays), more than "
                     f"the limit of {format_bytes(limit)} ({why}); ask for fewer at a time")


def _run(args) -> int:
    from lemon_pl.core.devices import check_device
    from lemon_pl.predict import limits as lim
    from lemon_pl.predict.initial import check_spec
    from lemon_pl.predict.match import family_equation
    from lemon_pl.predict.model import ModelLoadError, Predictor
    from lemon_pl.predict.parse import EquationError, parse_equation
    from lemon_pl.predict.run import Request, resolve_horizon, run_predictions
    from lemon_pl.predict.support import SupportFileError, read_support

    _check_numbers(args)
    if (args.steps is not None or args.lr is not None or args.support_size is not None
            or args.adapt_operator is not None) and not args.adapt:
        raise ValueError("--steps, --lr, --support-size and --adapt-operator need --adapt FILE")
    check_device(args.device)  # before any model is built
    requests = _requests(args)
    if not requests and not args.adapt:
        raise EquationError("give the equation: --equation EQ, --equations FILE or --family NAME --params K=V "
                            "(or --config CONFIG for Lightning's predict over a data split)")
    for spec in args.u0:  # every expression checked before the checkpoint is loaded
        check_spec(spec)
    out = Path(args.out)
    _check_out(out)
    from lemon_pl.cli.lightning import build

    predictor = Predictor.load(args.ckpt, args.run_config, args.device, build=build)
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
                match, eq, notes = family_equation(support.family, support.params,
                                                   source=f"--adapt {support.path}, operator {support.operator}")
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
        lim.check_t_final(req.t_final, f"{req.where}: its horizon t_final")
    specs = list(args.u0)
    if not specs:
        if all(r.match is not None for r in requests):
            specs = ["family"]
        else:
            raise EquationError("give the initial condition: --u0 'sin(pi*x)', --u0 FILE.npy or --u0 SAMPLER")
    _check_memory(args, requests, specs, predictor, support)
    steps = 0
    if support is not None:
        steps = args.steps if args.steps is not None else (predictor.stage.eval_adapt_steps() or 20)
    ps, report, warnings = run_predictions(predictor, requests, specs, args.seed, args.num_ics, support, steps,
                                           args.lr, solve=not args.no_solver)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    written = ps.save_folder(out)
    print("\n".join(report))
    print("wrote " + ", ".join(str(p) for p in written[:4]) + (f" and {len(written) - 4} more" if len(written) > 4 else ""))
    return 0
