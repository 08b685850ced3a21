"""A small resumable pipeline engine: every step is one ``lemon-pl`` command run in-process.

A step has an id, an argv and the ids it needs. :func:`run_steps` runs each argv through the
entry point it is given (``main(argv) -> exit code``; ``lemon-pl experiment`` passes
:func:`lemon_pl.cli.main`): this module imports no CLI and leaves ``sys.argv`` alone. Training
and evaluation steps (``fit``/``validate``/``test``) log into their own, predictable folder
``<exp_dir>/runs/<id>/version_0``. When a step succeeds, ``<exp_dir>/steps/<id>.json`` is
written atomically (argv, seconds, outputs: checkpoint and metrics paths, tags); a re-run skips
every step whose record exists and was made with the same arguments. A step whose arguments
changed (an edited experiment config or other overlays) runs again, and so does every step
that needs a step that ran again. A failing step stops the pipeline; completed steps are kept.

**Typed outputs.** Every step declares what it leaves for later steps, each output a kind and a
file: a ``fit`` step its checkpoint (``ckpt``: ``checkpoints/last.ckpt``), a ``test`` step its
metrics (``metrics``: ``test_metrics.json``), every Lightning step its ``log_dir``; a step adds
its own with ``outputs`` (``{"summary": "{run_dir}/fit_summary.json"}``, an analysis step's
``{"overlay/allocator_b8": "{exp_dir}/plans/allocator_b8.yaml"}``: kind ``overlay``, name
``allocator_b8``). Later steps reference them in their argv (or an analysis step's params) as
``{KIND:ID}`` or ``{KIND:ID/NAME}``: ``{ckpt:pretrain_s0}``, ``{overlay:burgers_plan/allocator_b8}``,
``{metrics:test_x}``; the reference becomes the file the finished step ``ID`` recorded, and
makes ``ID`` a need. A reference to an output the step does not declare is refused before
anything runs (naming both steps); a step that ends without writing a declared output fails.

**Analysis steps.** A step with ``analysis`` set is no command: the runner calls
``analysis(ctx, params)`` (:class:`Context`: the experiment folder, the overlays, the log and the
tools the caller passed in, e.g. ``compose``) with every reference in ``params`` resolved; its
record is written like any step's, and it is re-run when its params change.

Multi-process launches (``srun`` with one task per GPU, ``torchrun``): every process runs the
pipeline, because each Lightning step needs all ranks. Only global rank 0 runs the other steps
(data generation), deletes stale run folders and writes the records; the other ranks wait for
rank 0's record of each step before going on (the folders must be on a shared filesystem).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: ``{KIND:ID}`` or ``{KIND:ID/NAME}``: an output of an earlier step
_PLACEHOLDER = re.compile(r"\{([a-z_]+):([A-Za-z0-9_.\-]+)(?:/([A-Za-z0-9_.+\-]+))?\}")
#: the outputs every step of a command declares (``{run_dir}``: its log folder); ``validate`` and
#: ``predict`` declare only their folder
DEFAULT_OUTPUTS = {"fit": {"ckpt": "{run_dir}/checkpoints/last.ckpt", "log_dir": "{run_dir}"},
                   "test": {"metrics": "{run_dir}/test_metrics.json", "log_dir": "{run_dir}"},
                   "validate": {"log_dir": "{run_dir}"}, "predict": {"log_dir": "{run_dir}"}}
#: replaced by a Lightning step's log folder in its declared outputs
RUN_DIR = "{run_dir}"
#: replaced by the experiment's folder in every argument (files one step writes for later steps)
EXP_DIR = "{exp_dir}"


@dataclass
class Step:
    """One command (or analysis) of an experiment. ``tags`` (condition, seed, ...) go into the record
    for reports; ``outputs`` adds declared outputs to those of its command (:data:`DEFAULT_OUTPUTS`),
    ``"KIND"`` or ``"KIND/NAME"`` -> file (``{exp_dir}``, ``{run_dir}`` allowed). An analysis step has
    ``analysis`` (called as ``analysis(ctx, params)``) and, by convention, ``argv = ["analysis", NAME]``."""

    id: str
    argv: list[str]
    needs: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    analysis: Callable[["Context", dict], None] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.id):
            raise ValueError(f"step id {self.id!r} may only hold letters, digits, '_', '.', '-'")
        for key in self.outputs:
            if not re.fullmatch(r"[a-z_]+(/[A-Za-z0-9_.+\-]+)?", key):
                raise ValueError(f"step '{self.id}': output {key!r} must be KIND or KIND/NAME")
        found = [ref[1] for ref in self.references()]
        self.needs = list(dict.fromkeys([*self.needs, *found]))

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""

    def references(self) -> list[tuple[str, str, str]]:
        """``(output key, step id, placeholder)`` of every ``{KIND:ID[/NAME]}`` in argv and params."""
        return [(m.group(1) + (f"/{m.group(3)}" if m.group(3) else ""), m.group(2), m.group(0))
                for text in [*self.argv, *_strings(self.params)] for m in _PLACEHOLDER.finditer(text)]

    def declared(self) -> dict[str, str]:
        """Every declared output, key -> file template."""
        base = DEFAULT_OUTPUTS.get(self.command, {}) if self.analysis is None else {}
        return {**base, **self.outputs}


@dataclass
class Context:
    """What an analysis step is given: the experiment folder, the ``--config`` overlays of the
    run, a log, and the tools of the caller (``lemon-pl experiment`` passes ``compose``, the CLI's
    config composer, and ``main``, its in-process entry point; this package imports no CLI)."""

    exp_dir: Path
    overlays: list[str]
    log: Callable[[str], None]
    tools: dict[str, Callable] = field(default_factory=dict)

    def tool(self, name: str) -> Callable:
        if name not in self.tools:
            raise RuntimeError(f"this analysis needs the tool {name!r}, which the caller of run_steps did not pass")
        return self.tools[name]


def _strings(value: Any):
    """Every string in a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


class StepFailed(RuntimeError):
    """A step returned a non-zero exit code or raised; the message names the step."""

    def __init__(self, step_id: str, reason: str) -> None:
        super().__init__(f"step '{step_id}' failed: {reason}")
        self.step_id = step_id


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            if var == "SLURM_PROCID" and int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
                return 0
            return int(os.environ[var])
    return 0


def wait_for_record(exp_dir: Path, step_id: str, timeout: float | None = None, poll: float = 2.0) -> dict:
    """Block until rank 0 has recorded ``step_id`` (other ranks of a multi-process launch)."""
    timeout = float(os.environ.get("LEMON_EXPERIMENT_WAIT", 86400)) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        rec = load_record(exp_dir, step_id)
        if rec is not None:
            return rec
        if time.monotonic() > deadline:
            raise StepFailed(step_id, f"rank 0 recorded no result within {timeout:.0f} s")
        time.sleep(poll)


def record_path(exp_dir: Path, step_id: str) -> Path:
    return Path(exp_dir) / "steps" / f"{step_id}.json"


def run_dir(exp_dir: Path, step_id: str) -> Path:
    """The log folder of a fit/test step (CSVLogger: save_dir/name/version_0)."""
    return Path(exp_dir) / "runs" / step_id / "version_0"


def load_record(exp_dir: Path, step_id: str) -> dict | None:
    path = record_path(exp_dir, step_id)
    return json.loads(path.read_text()) if path.exists() else None


def _write_record(exp_dir: Path, step_id: str, payload: dict) -> None:
    from lemon_pl.core.checkpointing import atomic_write  # imports torch: only once a step has run

    atomic_write(record_path(exp_dir, step_id), json.dumps(payload, indent=2))


def with_overlays(argv: Sequence[str], overlays: Sequence[str]) -> list[str]:
    """Insert ``--config OVERLAY`` after the step's last ``--config`` (so they override its config
    files, while the step's explicit ``--key value`` arguments still win)."""
    argv = list(argv)
    if not overlays or not argv or argv[0] not in LIGHTNING_COMMANDS:
        return argv
    extra = [x for o in overlays for x in ("--config", str(o))]
    idx = [i for i, a in enumerate(argv) if a == "--config"]
    at = idx[-1] + 2 if idx else 1
    return argv[:at] + extra + argv[at:]


_KIND_WORDS = {"ckpt": "checkpoint", "metrics": "metrics"}


def _resolve_text(step: Step, text: str, exp_dir: Path) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1) + (f"/{m.group(3)}" if m.group(3) else "")
        rec = load_record(exp_dir, m.group(2))
        if rec is None:
            raise StepFailed(step.id, f"needs step '{m.group(2)}', which has not completed")
        path = rec.get("outputs", {}).get(key)
        if not path:
            raise StepFailed(step.id, f"step '{m.group(2)}' recorded no {_KIND_WORDS.get(key, key + ' output')}")
        return path

    return _PLACEHOLDER.sub(sub, text).replace(EXP_DIR, str(exp_dir))


def _resolve_value(step: Step, value: Any, exp_dir: Path) -> Any:
    if isinstance(value, str):
        return _resolve_text(step, value, exp_dir)
    if isinstance(value, dict):
        return {k: _resolve_value(step, v, exp_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve_value(step, v, exp_dir) for v in value]
    return value


def resolve(step: Step, exp_dir: Path) -> list[str]:
    """Replace every ``{KIND:ID[/NAME]}`` by the output recorded for the earlier step ``ID``, and
    ``{exp_dir}`` by the experiment's folder."""
    return [_resolve_text(step, a, exp_dir) for a in step.argv]


def resolve_params(step: Step, exp_dir: Path) -> dict[str, Any]:
    """An analysis step's params with every reference and ``{exp_dir}`` resolved."""
    return _resolve_value(step, step.params, exp_dir)


def full_argv(step: Step, exp_dir: Path, overlays: Sequence[str] = ()) -> list[str]:
    """The argv actually run: placeholders resolved, overlays added, logging into the step's folder."""
    argv = with_overlays(resolve(step, exp_dir), overlays)
    if step.command in LIGHTNING_COMMANDS:
        argv += ["--trainer.logger.init_args.save_dir", str(Path(exp_dir) / "runs"),
                 "--trainer.logger.init_args.name", step.id, "--trainer.logger.init_args.version", "0"]
    return argv


def output_paths(step: Step, exp_dir: Path) -> dict[str, str]:
    """The files of the step's declared outputs (templates filled in)."""
    folder = str(run_dir(exp_dir, step.id))
    return {k: v.replace(RUN_DIR, folder).replace(EXP_DIR, str(exp_dir)) for k, v in step.declared().items()}


def _outputs(step: Step, exp_dir: Path) -> dict[str, str]:
    """The declared outputs, each checked to exist (:class:`StepFailed` naming the first missing one),
    and a ``validate`` step's metrics when it wrote them."""
    out = output_paths(step, exp_dir)
    for key, path in out.items():
        if not Path(path).exists():
            if key == "ckpt":
                raise StepFailed(step.id, f"no checkpoint at {path}")
            if key == "metrics" and step.command == "test":
                raise StepFailed(step.id, f"no test_metrics.json in {run_dir(exp_dir, step.id)}")
            raise StepFailed(step.id, f"it declares the output {key} at {path}, which it did not write")
    if step.command == "validate" and "metrics" not in out:
        metrics = run_dir(exp_dir, step.id) / "validate_metrics.json"
        if metrics.exists():
            out["metrics"] = str(metrics)
    return out


def check_graph(steps: Sequence[Step]) -> None:
    """Ids are unique, every step needs only steps listed before it, and every reference names an
    output that its step declares."""
    seen: dict[str, Step] = {}
    for s in steps:
        if s.id in seen:
            raise ValueError(f"duplicate step id '{s.id}'")
        missing = [n for n in s.needs if n not in seen]
        if missing:
            raise ValueError(f"step '{s.id}' needs {missing}, which are not listed before it")
        for key, ref, text in s.references():
            declared = seen[ref].declared()
            if key not in declared:
                have = ", ".join(sorted(declared)) or "none"
                raise ValueError(f"step '{s.id}' references {text}, but step '{ref}' declares no {key} output "
                                 f"(it declares: {have})")
        seen[s.id] = s


def spec_of(step: Step, overlays: Sequence[str] = ()) -> list[str]:
    """What a step's record is compared with (a changed spec runs the step again): its argv with the
    overlays; an analysis step's argv, params and the overlays (which its tools compose)."""
    if step.analysis is None:
        return with_overlays(step.argv, overlays)
    return [*step.argv, json.dumps(step.params, sort_keys=True), *[f"--config={o}" for o in overlays]]


def describe(steps: Sequence[Step], exp_dir: Path, overlays: Sequence[str] = ()) -> list[str]:
    """One line per step for ``--dry-run`` (placeholders of steps not yet run stay visible)."""
    import shlex

    lines = []
    for i, s in enumerate(steps, 1):
        spec = spec_of(s, overlays)
        rec = load_record(exp_dir, s.id)
        state = "todo" if rec is None else ("stale" if rec.get("spec") not in (None, spec) else "done")
        what = ("lemon-pl " + " ".join(shlex.quote(a) for a in spec) if s.analysis is None
                else " ".join(s.argv) + " -> " + ", ".join(sorted(s.declared())))
        lines.append(f"[{i:3d}/{len(steps)}] {state} {s.id}: {what}")
    return lines


class ExperimentLocked(RuntimeError):
    """Another process is running the same experiment folder."""


def lock_experiment(exp_dir: Path):
    """An exclusive, non-blocking lock on ``<exp_dir>/.lock`` held for the life of the returned
    file object (released by the OS when the process ends, even on SIGKILL;
    :func:`lemon_pl.core.locking.hold_lock`)."""
    from lemon_pl.core.locking import LockHeld, hold_lock

    try:
        return hold_lock(Path(exp_dir) / ".lock")
    except LockHeld as held:
        raise ExperimentLocked(f"another process is running the experiment in {exp_dir} (pid {held.holder}); wait "
                               "for it to finish (completed steps are kept) or use another --out") from None


def run_steps(steps: Sequence[Step], exp_dir: str | Path, overlays: Sequence[str],
              main: Callable[[Sequence[str]], int | None], log: Callable[[str], None] = print,
              rank: int | None = None, wait_timeout: float | None = None,
              tools: dict[str, Callable] | None = None) -> int:
    """Run the steps in order, skipping completed ones. Returns the number of steps run now.

    Each step runs as ``main(argv)`` (:func:`full_argv`: ``overlays`` added after its config
    files, logging into its run folder); it succeeds with exit code 0 or None, and fails with
    another code (returned or raised as ``SystemExit``) or an exception. ``rank`` (default: from the environment) > 0 runs
    only the Lightning steps and waits for rank 0's records. Analysis steps (rank 0) are called
    with a :class:`Context` holding ``tools`` (and ``main``). Raises :class:`StepFailed` on the
    first failing step (earlier records are kept)."""
    exp_dir = Path(exp_dir).absolute()  # recorded checkpoint paths must not depend on the cwd
    rank = global_rank() if rank is None else rank
    check_graph(steps)
    lock = lock_experiment(exp_dir) if rank == 0 else None
    try:
        ctx = Context(exp_dir, [str(o) for o in overlays], log, {"main": main, **(tools or {})})
        return _run(steps, exp_dir, overlays, main, log, rank, wait_timeout, ctx)
    finally:
        if lock is not None:
            lock.close()


def _run(steps, exp_dir: Path, overlays, main, log, rank: int, wait_timeout, ctx: Context) -> int:
    ran = 0
    rerun: set[str] = set()
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.id}"
        spec = spec_of(step, overlays)
        rec = load_record(exp_dir, step.id)
        if rec is not None:
            changed = rec.get("spec") is not None and rec["spec"] != spec
            upstream = [n for n in step.needs if n in rerun]
            if not changed and not upstream:
                log(f"{head}: skip (completed)")
                continue
            if rank == 0:
                why = "its arguments changed" if changed else f"{upstream[0]} ran again"
                log(f"{head}: rerun ({why})")
                record_path(exp_dir, step.id).unlink(missing_ok=True)
            # other ranks: a Lightning step starts only once rank 0 (which deleted the stale record
            # first) joins it, so waiting for the record afterwards sees the new one
        rerun.add(step.id)
        if rank != 0 and step.command not in LIGHTNING_COMMANDS:
            log(f"{head}: waiting for rank 0")
            wait_for_record(exp_dir, step.id, wait_timeout)
            continue
        argv = full_argv(step, exp_dir, overlays) if step.analysis is None else list(step.argv)
        if step.command in LIGHTNING_COMMANDS and rank == 0 and step.analysis is None:
            shutil.rmtree(exp_dir / "runs" / step.id, ignore_errors=True)  # a fresh start after a crash
        log(f"{head}: run")
        t0 = time.perf_counter()
        try:
            if step.analysis is not None:
                params = resolve_params(step, exp_dir)
                step.analysis(ctx, params)
                code = 0
            else:
                code = main(argv)
        except SystemExit as err:  # argument errors of jsonargparse/argparse
            code = err.code if isinstance(err.code, int) else 1
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported with the step's name
            raise StepFailed(step.id, f"{type(err).__name__}: {err}".splitlines()[0]) from err
        seconds = time.perf_counter() - t0
        if code not in (0, None):
            raise StepFailed(step.id, f"exit code {code}")
        if rank != 0:
            wait_for_record(exp_dir, step.id, wait_timeout)
            log(f"{head}: done in {seconds:.1f} s (rank {rank})")
            ran += 1
            continue
        outputs = _outputs(step, exp_dir)
        _write_record(exp_dir, step.id, {
            "id": step.id, "index": i, "spec": spec, "argv": argv, "seconds": round(seconds, 3), "outputs": outputs,
            "tags": step.tags, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        log(f"{head}: done in {seconds:.1f} s")
        ran += 1
    return ran
