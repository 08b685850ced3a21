"""A small resumable pipeline engine: every step is one ``lemon-pl`` command run in-process.

A step has an id, an argv for :func:`lemon_pl.cli.main` and the ids it needs. Training and
evaluation steps (``fit``/``validate``/``test``) log into their own, predictable folder
``<exp_dir>/runs/<id>/version_0``. When a step succeeds, ``<exp_dir>/steps/<id>.json`` is
written atomically (argv, seconds, outputs: checkpoint and metrics paths, tags); a re-run skips
every step whose record exists. A failing step stops the pipeline; completed steps are kept.

Placeholders in argv: ``{ckpt:ID}`` becomes the ``last.ckpt`` of the finished step ``ID``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_PLACEHOLDER = re.compile(r"\{(ckpt):([A-Za-z0-9_.\-]+)\}")


@dataclass
class Step:
    """One command of an experiment. ``tags`` (condition, seed, ...) go into the record for reports."""

    id: str
    argv: list[str]
    needs: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.id):
            raise ValueError(f"step id {self.id!r} may only hold letters, digits, '_', '.', '-'")
        found = [m.group(2) for a in self.argv for m in _PLACEHOLDER.finditer(a)]
        self.needs = list(dict.fromkeys([*self.needs, *found]))

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""


class StepFailed(RuntimeError):
    """A step returned a non-zero exit code or raised; the message names the step."""

    def __init__(self, step_id: str, reason: str) -> None:
        super().__init__(f"step '{step_id}' failed: {reason}")
        self.step_id = step_id


def record_path(exp_dir: Path, step_id: str) -> Path:
    return Path(exp_dir) / "steps" / f"{step_id}.json"


def run_dir(exp_dir: Path, step_id: str) -> Path:
    """The log folder of a fit/test step (CSVLogger: save_dir/name/version_0)."""
    return Path(exp_dir) / "runs" / step_id / "version_0"


def load_record(exp_dir: Path, step_id: str) -> dict | None:
    path = record_path(exp_dir, step_id)
    return json.loads(path.read_text()) if path.exists() else None


def _write_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


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


def resolve(step: Step, exp_dir: Path) -> list[str]:
    """Replace ``{ckpt:ID}`` placeholders by the checkpoints recorded for earlier steps."""

    def sub(m: re.Match) -> str:
        rec = load_record(exp_dir, m.group(2))
        if rec is None:
            raise StepFailed(step.id, f"needs step '{m.group(2)}', which has not completed")
        ckpt = rec.get("outputs", {}).get("ckpt")
        if not ckpt:
            raise StepFailed(step.id, f"step '{m.group(2)}' recorded no checkpoint")
        return ckpt

    return [_PLACEHOLDER.sub(sub, a) for a in step.argv]


def full_argv(step: Step, exp_dir: Path, overlays: Sequence[str] = ()) -> list[str]:
    """The argv actually run: placeholders resolved, overlays added, logging into the step's folder."""
    argv = with_overlays(resolve(step, exp_dir), overlays)
    if step.command in LIGHTNING_COMMANDS:
        argv += ["--trainer.logger.init_args.save_dir", str(Path(exp_dir) / "runs"),
                 "--trainer.logger.init_args.name", step.id, "--trainer.logger.init_args.version", "0"]
    return argv


def _outputs(step: Step, exp_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if step.command not in LIGHTNING_COMMANDS:
        return out
    folder = run_dir(exp_dir, step.id)
    out["log_dir"] = str(folder)
    if step.command == "fit":
        ckpt = folder / "checkpoints" / "last.ckpt"
        if ckpt.exists():
            out["ckpt"] = str(ckpt)
    for stage in ("test", "validate"):
        metrics = folder / f"{stage}_metrics.json"
        if metrics.exists():
            out["metrics"] = str(metrics)
    return out


def check_graph(steps: Sequence[Step]) -> None:
    """Ids are unique and every step needs only steps listed before it."""
    seen: set[str] = set()
    for s in steps:
        if s.id in seen:
            raise ValueError(f"duplicate step id '{s.id}'")
        missing = [n for n in s.needs if n not in seen]
        if missing:
            raise ValueError(f"step '{s.id}' needs {missing}, which are not listed before it")
        seen.add(s.id)


def describe(steps: Sequence[Step], exp_dir: Path, overlays: Sequence[str] = ()) -> list[str]:
    """One line per step for ``--dry-run`` (placeholders of steps not yet run stay visible)."""
    import shlex

    lines = []
    for i, s in enumerate(steps, 1):
        state = "done" if record_path(exp_dir, s.id).exists() else "todo"
        argv = with_overlays(s.argv, overlays)
        lines.append(f"[{i:3d}/{len(steps)}] {state} {s.id}: lemon-pl " + " ".join(shlex.quote(a) for a in argv))
    return lines


def run_steps(steps: Sequence[Step], exp_dir: str | Path, overlays: Sequence[str] = (),
              main: Callable[[Sequence[str]], int] | None = None, log: Callable[[str], None] = print) -> int:
    """Run the steps in order, skipping completed ones. Returns the number of steps run now.

    Raises :class:`StepFailed` on the first failing step (earlier records are kept)."""
    exp_dir = Path(exp_dir).absolute()  # recorded checkpoint paths must not depend on the cwd
    check_graph(steps)
    if main is None:
        from lemon_pl import cli

        main = cli.main
    ran = 0
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.id}"
        if record_path(exp_dir, step.id).exists():
            log(f"{head}: skip (completed)")
            continue
        argv = full_argv(step, exp_dir, overlays)
        if step.command in LIGHTNING_COMMANDS:
            shutil.rmtree(exp_dir / "runs" / step.id, ignore_errors=True)  # a fresh start after a crash
        log(f"{head}: run")
        t0 = time.perf_counter()
        saved_argv = sys.argv
        sys.argv = [saved_argv[0] if saved_argv else "lemon-pl", *argv]  # what the step's CLI sees
        try:
            code = main(argv)
        except SystemExit as err:  # argument errors of jsonargparse/argparse
            code = err.code if isinstance(err.code, int) else 1
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported with the step's name
            raise StepFailed(step.id, f"{type(err).__name__}: {err}".splitlines()[0]) from err
        finally:
            sys.argv = saved_argv
        seconds = time.perf_counter() - t0
        if code not in (0, None):
            raise StepFailed(step.id, f"exit code {code}")
        outputs = _outputs(step, exp_dir)
        if step.command == "fit" and "ckpt" not in outputs:
            raise StepFailed(step.id, f"no checkpoint at {run_dir(exp_dir, step.id) / 'checkpoints/last.ckpt'}")
        if step.command == "test" and "metrics" not in outputs:
            raise StepFailed(step.id, f"no test_metrics.json in {run_dir(exp_dir, step.id)}")
        _write_atomic(record_path(exp_dir, step.id), {
            "id": step.id, "index": i, "argv": argv, "seconds": round(seconds, 3), "outputs": outputs,
            "tags": step.tags, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        log(f"{head}: done in {seconds:.1f} s")
        ran += 1
    return ran
