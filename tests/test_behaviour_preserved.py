"""Behaviour preserved across refactors: tiny fixed-seed runs give bit-identical weights and metrics.

``tests/fixtures/behaviour.json`` was recorded with the code *before* the redesign of issue 10
(``python -m tests.test_behaviour_preserved --record``). Each run below goes through the public
CLI only (``lemon-pl fit|test|merge-lora`` with the shipped stage configs), so the fixture stays
valid whatever the internals look like:

* pretraining (Prose), then a test of its checkpoint;
* meta-learning with each inner learning-rate mode (fixed, learned, learned_symbolic);
* LoRA fine-tuning from the pretraining checkpoint, then ``merge-lora``;
* a few-shot test (2 adaptation steps) of the fixed-rate meta checkpoint.

``tests/fixtures/behaviour_methods.json`` (recorded before the redesign of issue 23, ``--record
--methods``) covers the methods added since, with the same rules:

* a PINN on convection-diffusion-reaction (fit, then test);
* Hyper-LR-PINN phase 1 on two μ, then its adaptive-rank phase 2 on a third (fit, then test each);
* a two-level multi-level curriculum on Schrödinger maps;
* ``lemon-pl predict`` of a written equation from a tiny Prose (the saved prediction's digest).

Weights are compared as SHA-256 digests of every tensor's bytes; metrics exactly. Floating-point
results depend on the CPU's vector unit, so on a machine whose torch CPU capability differs from
the recording machine's (recorded on AVX2; AVX512 machines exist) the digests are replaced by a
tolerance check on per-tensor sums (:func:`_weights_close`) and metrics agree to 1e-4.
Re-record only for an intended change of results, and say so in the commit. The runs select
PyTorch's per-parameter AdamW loop, per-sample equation encoding and padded token rows
(``adamw: loop``, ``share_equation: false``, ``pack_tokens: false``), the numerics of the
recording; ``tests/core/test_optim.py`` and ``tests/models/test_prose_sharing.py`` show that
the defaults (fused AdamW, shared encoding, packed tokens) agree with them to rounding.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "behaviour.json"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILIES = ["heat", "kdv"]

NET = ["--model.init_args.net.class_path", "lemon_pl.models.Prose",
       "--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
       "--model.init_args.net.init_args.n_heads", "2",
       # issue 14 made fused AdamW, the once-per-operator equation encoding and packed tokens the
       # defaults: same algorithm, other rounding. These settings select the recorded numerics, bit for bit.
       "--model.init_args.adamw", "loop", "--model.init_args.net.init_args.share_equation", "false",
       "--model.init_args.net.init_args.pack_tokens", "false"]
META = ["--model.init_args.support_size", "4", "--model.init_args.query_size", "6",
        "--model.init_args.inner_steps", "2", "--model.init_args.eval_support_size", "4",
        "--model.init_args.eval_query_size", "8", "--data.init_args.tasks_per_batch", "2",
        "--data.init_args.eval_tasks_per_batch", "2"]


def _common(root: Path, runs: Path, config: str, families: str, name: str) -> list[str]:
    return ["--config", str(CONFIGS / config), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", families, "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", name,
            "--trainer.logger.init_args.version", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *NET]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]


def _weights(path: Path) -> dict[str, dict]:
    raw = torch.load(path, map_location="cpu", weights_only=False)
    state = raw["state_dict"]
    return {k: {"sha": _digest(v), "sum": float(v.double().sum()), "abs": float(v.double().abs().sum())}
            for k, v in sorted(state.items()) if v.is_floating_point()}


def _val_metrics(run: Path) -> dict[str, float]:
    """The last logged value of every val/ metric in metrics.csv."""
    out: dict[str, float] = {}
    with open(run / "metrics.csv") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if k.startswith("val/") and v not in ("", None):
                    out[k] = float(v)
    return out


def _test_metrics(run: Path) -> dict:
    data = json.loads((run / "test_metrics.json").read_text())
    return {fam: {m: v for m, v in row.items()} for fam, row in data["families"].items()}


def record(root: Path, work: Path) -> dict:
    """Run the reference runs in ``work`` on the tiny data of ``root``; return their fingerprints."""
    from lemon_pl.cli import main

    torch.set_num_threads(1)
    runs = work / "runs"
    out: dict[str, dict] = {}

    def run(*argv: str) -> None:
        assert main(list(argv)) == 0, argv

    fams = ",".join(FAMILIES)
    run("fit", *_common(root, runs, "pretrain.yaml", fams, "pretrain"), "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1")
    pre = runs / "pretrain/version_0"
    run("test", *_common(root, runs, "pretrain.yaml", fams, "pretrain_test"), "--ckpt_path",
        str(pre / "checkpoints/last.ckpt"))
    out["pretrain"] = {"weights": _weights(pre / "checkpoints/last.ckpt"), "val": _val_metrics(pre),
                       "test": _test_metrics(runs / "pretrain_test/version_0")}

    for mode in ("fixed", "learned", "learned_symbolic"):
        name = f"meta_{mode}"
        run("fit", *_common(root, runs, "meta.yaml", fams, name), *META, "--model.init_args.inner_lr", mode,
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1")
        folder = runs / f"{name}/version_0"
        out[name] = {"weights": _weights(folder / "checkpoints/last.ckpt"), "val": _val_metrics(folder)}

    lora = [*_common(root, runs, "finetune.yaml", "kdv", "lora"), "--model.init_args.init_from",
            str(pre / "checkpoints/last.ckpt"), "--model.init_args.mode", "lora", "--model.init_args.lora_rank", "2",
            "--model.init_args.lr", "1e-2", "--data.init_args.num_train_samples", "12", "--trainer.max_steps", "4",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1"]
    run("fit", *lora)
    folder = runs / "lora/version_0"
    merged = work / "merged.ckpt"
    run("merge-lora", "--ckpt", str(folder / "checkpoints/last.ckpt"), "--out", str(merged))
    out["lora"] = {"weights": _weights(folder / "checkpoints/last.ckpt"), "val": _val_metrics(folder),
                   "merged": _weights(merged)}

    run("test", *_common(root, runs, "fewshot.yaml", "heat", "fewshot"), *META,
        "--data.init_args.eval_families", "[kdv,Sine_Gordon]", "--model.init_args.eval_steps", "2",
        "--ckpt_path", str(runs / "meta_fixed/version_0/checkpoints/last.ckpt"))
    out["fewshot"] = {"test": _test_metrics(runs / "fewshot/version_0")}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "runs": out}


METHODS_FIXTURE = Path(__file__).parent / "fixtures" / "behaviour_methods.json"
PINN_SMALL = ["--data.init_args.n_grid", "[32,20]", "--data.init_args.n_collocation", "64", "--data.init_args.n_ic",
              "16", "--data.init_args.n_bc", "8", "--data.init_args.n_test", "64", "--data.init_args.steps_per_epoch",
              "2", "--trainer.check_val_every_n_epoch", "1", "--trainer.max_steps", "4",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _array_digest(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    import numpy as np

    with np.load(path) as z:
        return {k: hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()[:20] for k in keys}


def record_methods(work: Path) -> dict:
    """The methods added after the first recording, each through the public CLI on tiny settings."""
    from lemon_pl.cli import main

    torch.set_num_threads(1)
    runs = work / "runs"
    out: dict[str, dict] = {}

    def run(*argv: str) -> None:
        assert main(list(argv)) == 0, argv

    def fit_test(name: str, config: str, *extra: str) -> Path:
        common = ["--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", name, *extra]
        run("fit", "--config", str(CONFIGS / config), *common)
        folder = runs / name / "version_0"
        run("test", "--config", str(CONFIGS / config), "--ckpt_path", str(folder / "checkpoints/last.ckpt"), *common)
        out[name] = {"weights": _weights(folder / "checkpoints/last.ckpt"), "val": _val_metrics(folder),
                     "test": _test_metrics(runs / name / "version_1")}
        return folder

    fit_test("pinn", "pinn/pinn.yaml", *PINN_SMALL, "--data.init_args.mu", "[1,0,0]")
    phase1 = fit_test("hyper_lr_pinn_p1", "pinn/hyper_lr_pinn.yaml", *PINN_SMALL, "--data.init_args.preset", "null",
                      "--data.init_args.mu", "[[30,0,0],[40,0,0]]", "--model.init_args.rank_sweep", "[20,50,10]")
    fit_test("hyper_lr_pinn_p2", "pinn/hyper_lr_pinn_adapt.yaml", *PINN_SMALL, "--data.init_args.mu", "[35,0,0]",
             "--model.init_args.rank", "adaptive", "--model.init_args.init_from",
             str(phase1 / "checkpoints/last.ckpt"))

    levels = work / "levels"
    run("generate", "--root", str(levels), "--preset", "tiny", "--families", "schrodinger", "--levels", "32,64",
        "--no-progress")
    two = work / "two_levels.yaml"
    two.write_text("data:\n  init_args:\n    levels: [32, 64]\n    n_samples: [16, 8]\n    epochs: [1, 1]\n")
    run("fit", "--config", str(CONFIGS / "multilevel/schrodinger.yaml"), "--config",
        str(CONFIGS / "multilevel/tiny.yaml"), "--config", str(two), "--data.init_args.root", str(levels),
        "--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", "multilevel",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
    folder = runs / "multilevel" / "version_0"
    out["multilevel"] = {"weights": _weights(folder / "checkpoints/last.ckpt"), "val": _val_metrics(folder)}

    data = work / "data"
    run("generate", "--root", str(data), "--preset", "tiny", "--families", "heat", "--no-progress")
    run("fit", *_common(data, runs, "pretrain.yaml", "heat", "prose"), "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1")
    ckpt = runs / "prose" / "version_0" / "checkpoints" / "last.ckpt"
    pred = work / "pred"
    run("predict", "--ckpt_path", str(ckpt), "--equation", "u_t = 0.01*u_xx", "--u0", "sin(pi*x)", "--u0",
        "exp(-20*(x-1)^2)", "--t_final", "1", "--out", str(pred))
    out["predict"] = {"arrays": _array_digest(pred / "prediction.npz", ("u", "u_ref", "rel_l2", "tokens"))}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "runs": out}


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)


def _weights_close(e: dict, g: dict, floor: float) -> bool:
    """One tensor's sum and sum of |w| agree to 1e-4 of its |w| (a sum cancels: its own size is no
    scale), above a floor of rounding noise: 1e-4 of the network's median tensor |w|. A weight whose
    gradient is zero in exact arithmetic (LoRA B of attention over a single token) holds rounding
    noise of ~1e-5 on one vector unit and exactly 0 on another."""
    scale = max(abs(e["abs"]), abs(g["abs"]))
    return abs(e["sum"] - g["sum"]) <= 1e-4 * scale + floor and abs(e["abs"] - g["abs"]) <= 1e-4 * scale + floor


def compare(expected: dict, got: dict) -> list[str]:
    """Differences between two fingerprints (empty when behaviour is preserved)."""
    exact = expected["cpu_capability"] == got["cpu_capability"]
    problems: list[str] = []
    for run, exp in expected["runs"].items():
        new = got["runs"].get(run, {})
        for part in ("weights", "merged"):
            if part not in exp:
                continue
            if set(exp[part]) != set(new.get(part, {})):
                problems.append(f"{run}/{part}: tensor names differ")
                continue
            floor = 1e-4 * statistics.median(e["abs"] for e in exp[part].values())
            for k, e in exp[part].items():
                g = new[part][k]
                if (e["sha"] != g["sha"]) if exact else not _weights_close(e, g, floor):
                    problems.append(f"{run}/{part}: {k} differs")
        if "arrays" in exp and exact and exp["arrays"] != new.get("arrays"):
            problems.append(f"{run}/arrays: digests differ: {exp['arrays']} vs {new.get('arrays')}")
        for part in ("val", "test"):
            if part not in exp:
                continue
            flat_e = json.dumps(exp[part], sort_keys=True)
            flat_g = json.dumps(new.get(part), sort_keys=True)
            if exact and flat_e != flat_g:
                problems.append(f"{run}/{part}: metrics differ: {flat_e[:200]} vs {flat_g[:200]}")
            elif not exact and not _nested_close(exp[part], new.get(part)):
                problems.append(f"{run}/{part}: metrics differ beyond tolerance")
    return problems


def _nested_close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_nested_close(a[k], b[k]) for k in a)
    return isinstance(b, (int, float)) and _close(float(a), float(b))


def test_the_cross_cpu_comparison_forgives_rounding_noise_not_changes():
    """On another vector unit: a tensor of rounding noise (1e-5 against 0) passes; a 1% change of a
    typical tensor, or any change of a digest on the recording's own CPU, does not."""
    def fp(cpu: str, noise: float, w: float) -> dict:
        weights = {f"w{i}": {"sha": str(i), "sum": 0.3 * i, "abs": 1.0 * i} for i in range(1, 6)}
        weights["lora_b"] = {"sha": "n" if noise else "z", "sum": noise, "abs": abs(noise)}
        weights["w3"]["sum"] += w
        return {"cpu_capability": cpu, "runs": {"r": {"weights": weights}}}

    assert compare(fp("AVX2", 1.3e-5, 0.0), fp("AVX512", 0.0, 0.0)) == []
    assert compare(fp("AVX2", 1.3e-5, 0.0), fp("AVX512", 0.0, 0.03)) == ["r/weights: w3 differs"]
    assert compare(fp("AVX2", 1.3e-5, 0.0), fp("AVX2", 0.0, 0.0)) == ["r/weights: lora_b differs"]


def test_tiny_runs_match_the_recording(tmp_path, monkeypatch):
    from lemon_pl.data.generate import generate

    monkeypatch.chdir(tmp_path)
    expected = json.loads(FIXTURE.read_text())
    threads = torch.get_num_threads()
    root = tmp_path / "data"
    generate(root, "tiny", [*FAMILIES, "Sine_Gordon"], progress=False)
    try:
        got = record(root, tmp_path)
    finally:
        torch.set_num_threads(threads)
    problems = compare(expected, got)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.skipif(not METHODS_FIXTURE.exists(), reason="record it first: python -m tests.test_behaviour_preserved "
                                                        "--record --methods")
def test_the_later_methods_match_their_recording(tmp_path, monkeypatch):
    """PINN, Hyper-LR-PINN phases 1 and 2, a multi-level curriculum and predict, as recorded before
    the one-core redesign (issue 23): bit-identical weights and identical metrics on the recording's
    CPU, within rounding elsewhere (predict's saved arrays are compared on the recording's CPU only)."""
    monkeypatch.chdir(tmp_path)
    expected = json.loads(METHODS_FIXTURE.read_text())
    threads = torch.get_num_threads()
    try:
        got = record_methods(tmp_path)
    finally:
        torch.set_num_threads(threads)
    problems = compare(expected, got)
    assert not problems, "\n".join(problems[:20])


def _main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", action="store_true", help=f"write {FIXTURE}")
    p.add_argument("--work", default="/tmp/lemon_behaviour")
    p.add_argument("--methods", action="store_true", help=f"the later methods ({METHODS_FIXTURE.name})")
    args = p.parse_args()
    import shutil

    from lemon_pl.data.generate import generate

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chdir(work)
    if args.methods:
        fixture, got = METHODS_FIXTURE, record_methods(work)
    else:
        generate(work / "data", "tiny", [*FAMILIES, "Sine_Gordon"], progress=False)
        fixture, got = FIXTURE, record(work / "data", work)
    if args.record:
        fixture.parent.mkdir(parents=True, exist_ok=True)
        fixture.write_text(json.dumps(got, indent=1, sort_keys=True))
        print(f"wrote {fixture}")
    else:
        problems = compare(json.loads(fixture.read_text()), got)
        print("\n".join(problems) or "behaviour preserved")


if __name__ == "__main__":
    _main()
