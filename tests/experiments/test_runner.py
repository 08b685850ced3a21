"""The experiment pipeline: resumable steps, placeholders, the report and `lemon-pl experiment`."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import report
from lemon_pl.experiments import build_steps, finetune
from lemon_pl.experiments.runner import (Step, StepFailed, describe, record_path, run_dir, run_steps,
                                         with_overlays)

REPO = Path(__file__).resolve().parents[2]


class FakeCLI:
    """Stands in for lemon_pl.cli.main (run_steps' entry point): records calls; `fit` writes a checkpoint, `test` metrics."""

    def __init__(self, fail: set[str] = frozenset(), crash: set[str] = frozenset()):
        self.calls: list[list[str]] = []
        self.fail, self.crash = set(fail), set(crash)

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        name = argv[argv.index("--trainer.logger.init_args.name") + 1] if argv[0] in ("fit", "test") else argv[1]
        if name in self.crash:
            raise RuntimeError("boom")
        if name in self.fail:
            return 2
        if argv[0] in ("fit", "test"):
            folder = Path(argv[argv.index("--trainer.logger.init_args.save_dir") + 1]) / name / "version_0"
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            if argv[0] == "fit":
                (folder / "checkpoints" / "last.ckpt").write_text("ckpt")
            else:
                (folder / "test_metrics.json").write_text(json.dumps({"families": {"kdv": {
                    "rel_l2": 0.5, "rel_l2_first": 0.4, "rel_l2_second": 0.6}}}))
        return 0


def noop(step_id: str) -> Step:
    return Step(step_id, ["noop", step_id])


def test_rerun_skips_completed_steps(tmp_path, capsys):
    steps = [noop("a"), noop("b")]
    fake = FakeCLI()
    assert run_steps(steps, tmp_path, (), fake) == 2
    assert [c[1] for c in fake.calls] == ["a", "b"]
    rec = json.loads(record_path(tmp_path, "a").read_text())
    assert rec["argv"] == ["noop", "a"] and rec["seconds"] >= 0
    assert not list((tmp_path / "steps").glob(".*"))  # atomic write leaves no temp file
    capsys.readouterr()
    assert run_steps(steps, tmp_path, (), fake) == 0
    assert len(fake.calls) == 2
    assert capsys.readouterr().out.count("skip") == 2


def test_a_second_run_of_the_same_experiment_is_refused(tmp_path):
    from lemon_pl.experiments.runner import ExperimentLocked, lock_experiment

    held = lock_experiment(tmp_path)
    try:
        with pytest.raises(ExperimentLocked, match="another process is running the experiment"):
            run_steps([noop("a")], tmp_path, (), FakeCLI(), log=lambda m: None)
        assert not record_path(tmp_path, "a").exists()
    finally:
        held.close()
    assert run_steps([noop("a")], tmp_path, (), FakeCLI(), log=lambda m: None) == 1  # released


def test_changed_arguments_rerun_the_step_and_its_dependents(tmp_path):
    steps = [Step("pre", ["fit", "--k", "1"]), Step("ft", ["fit", "--init", "{ckpt:pre}"]),
             Step("other", ["fit", "--k", "3"])]
    assert run_steps(steps, tmp_path, (), FakeCLI(), log=lambda m: None) == 3
    edited = [Step("pre", ["fit", "--k", "2"]), steps[1], steps[2]]
    assert "stale pre" in "\n".join(describe(edited, tmp_path))
    fake, lines = FakeCLI(), []
    assert run_steps(edited, tmp_path, (), fake, log=lines.append) == 2
    assert [c[2] for c in fake.calls] == ["2", fake.calls[1][2]] and fake.calls[1][1] == "--init"
    assert any("pre: rerun (its arguments changed)" in m for m in lines)
    assert any("ft: rerun (pre ran again)" in m for m in lines)
    assert any("other: skip" in m for m in lines)
    assert run_steps(edited, tmp_path, (), FakeCLI(), log=lambda m: None) == 0


def test_failing_step_stops_and_keeps_completed(tmp_path):
    steps = [noop("a"), noop("b"), noop("c")]
    with pytest.raises(StepFailed, match="step 'b' failed: exit code 2"):
        run_steps(steps, tmp_path, (), FakeCLI(fail={"b"}), log=lambda m: None)
    assert record_path(tmp_path, "a").exists() and not record_path(tmp_path, "b").exists()
    assert not record_path(tmp_path, "c").exists()
    with pytest.raises(StepFailed, match="step 'b' failed: RuntimeError: boom"):
        run_steps(steps, tmp_path, (), FakeCLI(crash={"b"}), log=lambda m: None)
    resume = FakeCLI()
    assert run_steps(steps, tmp_path, (), resume, log=lambda m: None) == 2
    assert [c[1] for c in resume.calls] == ["b", "c"]


def test_ckpt_placeholder_resolves_to_last_ckpt(tmp_path):
    steps = [Step("pre", ["fit", "--config", "x.yaml"]),
             Step("ft", ["fit", "--config", "y.yaml", "--model.init_args.init_from", "{ckpt:pre}"]),
             Step("ev", ["test", "--ckpt_path", "{ckpt:ft}"], tags={"condition": "c", "seed": 0})]
    assert steps[1].needs == ["pre"] and steps[2].needs == ["ft"]
    fake = FakeCLI()
    run_steps(steps, tmp_path, ["extra.yaml"], fake, log=lambda m: None)
    ft_argv = fake.calls[1]
    pre_ckpt = run_dir(tmp_path, "pre") / "checkpoints" / "last.ckpt"
    assert ft_argv[ft_argv.index("--model.init_args.init_from") + 1] == str(pre_ckpt)
    assert ft_argv[:5] == ["fit", "--config", "y.yaml", "--config", "extra.yaml"]
    assert ft_argv[-2:] == ["--trainer.logger.init_args.version", "0"]
    rec = json.loads(record_path(tmp_path, "ev").read_text())
    assert rec["outputs"]["metrics"] == str(run_dir(tmp_path, "ev") / "test_metrics.json")
    with pytest.raises(ValueError, match="needs \\['later'\\]"):
        run_steps([Step("x", ["fit", "{ckpt:later}"]), Step("later", ["fit"])], tmp_path / "o", (), fake)


def test_typed_outputs_and_analysis_steps(tmp_path):
    """An analysis step gets its params with references resolved and the caller's tools; its declared
    overlay is what a later step's {overlay:ID/NAME} becomes; {metrics:ID} is a test's metrics file."""
    seen = {}

    def analyse(ctx, params):
        seen.update(params=params, compose=ctx.tool("compose"), exp_dir=ctx.exp_dir, overlays=ctx.overlays)
        out = Path(params["out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "a.yaml").write_text("data: {}\n")

    steps = [Step("pre", ["fit", "--config", "x.yaml"]),
             Step("ev", ["test", "--ckpt_path", "{ckpt:pre}"], tags={"condition": "c", "seed": 0}),
             Step("plan", ["analysis", "demo"], analysis=analyse,
                  params={"ckpt": "{ckpt:pre}", "metrics": ["{metrics:ev}"], "out": "{exp_dir}/plans"},
                  outputs={"overlay/a": "{exp_dir}/plans/a.yaml"}),
             Step("ft", ["fit", "--config", "y.yaml", "--config", "{overlay:plan/a}"])]
    assert steps[2].needs == ["pre", "ev"] and steps[3].needs == ["plan"]
    fake = FakeCLI()
    compose = object()
    assert run_steps(steps, tmp_path, ["o.yaml"], fake, log=lambda m: None, tools={"compose": compose}) == 4
    assert seen == {"params": {"ckpt": str(run_dir(tmp_path, "pre") / "checkpoints" / "last.ckpt"),
                               "metrics": [str(run_dir(tmp_path, "ev") / "test_metrics.json")],
                               "out": str(tmp_path / "plans")},
                    "compose": compose, "exp_dir": tmp_path, "overlays": ["o.yaml"]}
    assert [c[0] for c in fake.calls] == ["fit", "test", "fit"]  # the analysis is no command
    ft = fake.calls[2]
    assert ft[:7] == ["fit", "--config", "y.yaml", "--config", str(tmp_path / "plans" / "a.yaml"), "--config", "o.yaml"]
    rec = json.loads(record_path(tmp_path, "plan").read_text())
    assert rec["outputs"] == {"overlay/a": str(tmp_path / "plans" / "a.yaml")}
    # same params: skipped; changed params: the analysis and what reads its overlay run again
    assert run_steps(steps, tmp_path, ["o.yaml"], FakeCLI(), log=lambda m: None, tools={"compose": compose}) == 0
    steps[2] = Step("plan", ["analysis", "demo"], analysis=analyse, params={**steps[2].params, "budget": 2},
                    outputs=steps[2].outputs)
    again = FakeCLI()
    assert run_steps(steps, tmp_path, ["o.yaml"], again, log=lambda m: None, tools={"compose": compose}) == 2
    assert [c[0] for c in again.calls] == ["fit"]


def test_a_reference_to_an_undeclared_output_is_refused_before_anything_runs(tmp_path):
    fake = FakeCLI()
    steps = [Step("gen", ["noop", "gen"]), Step("ev", ["test", "--config", "{overlay:gen}"])]
    with pytest.raises(ValueError, match=r"step 'ev' references \{overlay:gen\}, but step 'gen' declares no "
                                         r"overlay output \(it declares: none\)"):
        run_steps(steps, tmp_path, (), fake, log=lambda m: None)
    steps = [Step("pre", ["fit"]), Step("x", ["fit", "--model.init_args.init_from", "{metrics:pre}"])]
    with pytest.raises(ValueError, match=r"step 'pre' declares no metrics output \(it declares: ckpt, log_dir\)"):
        run_steps(steps, tmp_path, (), fake, log=lambda m: None)
    assert fake.calls == [] and not (tmp_path / "steps").exists()
    with pytest.raises(ValueError, match="output 'bad key' must be KIND or KIND/NAME"):
        Step("s", ["noop"], outputs={"bad key": "x"})


def test_a_step_that_does_not_write_a_declared_output_fails(tmp_path):
    steps = [Step("plan", ["analysis", "demo"], analysis=lambda ctx, params: None,
                  outputs={"overlay/a": "{exp_dir}/a.yaml"})]
    with pytest.raises(StepFailed, match=r"step 'plan' failed: it declares the output overlay/a at .*a\.yaml, "
                                         "which it did not write"):
        run_steps(steps, tmp_path, (), FakeCLI(), log=lambda m: None)
    assert not record_path(tmp_path, "plan").exists()
    with pytest.raises(StepFailed, match="step 'fit' failed: it declares the output summary"):
        run_steps([Step("fit", ["fit"], outputs={"summary": "{run_dir}/fit_summary.json"})], tmp_path, (), FakeCLI(),
                  log=lambda m: None)


@pytest.mark.slow
def test_multi_process_launch_rank0_generates_and_records(tmp_path):
    """Under srun/torchrun every rank runs the pipeline: rank 0 alone runs non-Lightning steps and
    writes the records; rank 1 joins every Lightning step and waits for rank 0's records."""
    import threading

    steps = [Step("gen", ["generate", "gen"]), Step("pre", ["fit", "--config", "x.yaml"]),
             Step("ev", ["test", "--ckpt_path", "{ckpt:pre}"], tags={"condition": "c", "seed": 0})]
    r0, r1 = FakeCLI(), FakeCLI()
    ddp = threading.Barrier(2, timeout=30)  # a Lightning step needs every rank, as DDP's collectives

    errors = []

    def joined(fake):
        def run(argv):
            if argv[0] in ("fit", "test"):
                ddp.wait()
            return fake(argv)
        return run

    def rank1():
        try:
            run_steps(steps, tmp_path, (), joined(r1), log=lambda m: None, rank=1, wait_timeout=30)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=rank1)
    t.start()
    run_steps(steps, tmp_path, (), joined(r0), log=lambda m: None, rank=0)
    t.join(60)
    assert not errors and not t.is_alive()
    assert [c[0] for c in r0.calls] == ["generate", "fit", "test"]
    assert [c[0] for c in r1.calls] == ["fit", "test"]  # rank 1 never generates
    ckpt = str(run_dir(tmp_path, "pre") / "checkpoints" / "last.ckpt")
    assert r1.calls[1][r1.calls[1].index("--ckpt_path") + 1] == ckpt  # resolved from rank 0's record
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["ev.json", "gen.json", "pre.json"]
    with pytest.raises(StepFailed, match="rank 0 recorded no result"):
        run_steps([Step("other", ["generate", "x"])], tmp_path / "o", (), FakeCLI(), log=lambda m: None, rank=1,
                  wait_timeout=0.1)


def test_global_rank_from_the_environment(monkeypatch):
    from lemon_pl.experiments.runner import global_rank

    for var in ("RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert global_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert global_rank() == 0  # a one-task allocation: not a multi-process launch
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert global_rank() == 3
    monkeypatch.setenv("RANK", "2")
    assert global_rank() == 2


def test_with_overlays_goes_after_the_last_config():
    argv = ["fit", "--config", "a", "--config", "b", "--k", "v"]
    assert with_overlays(argv, ["o"]) == ["fit", "--config", "a", "--config", "b", "--config", "o", "--k", "v"]
    assert with_overlays(["generate", "--root", "r"], ["o"]) == ["generate", "--root", "r"]


def _fake_result(exp_dir: Path, step_id: str, index: int, tags: dict, families: dict,
                 curve: dict | None = None) -> None:
    metrics = exp_dir / "runs" / step_id / "test_metrics.json"
    metrics.parent.mkdir(parents=True)
    fams = {f: {"rel_l2": v, "rel_l2_first": v / 2, "rel_l2_second": 2 * v, "mse": 0.0} for f, v in families.items()}
    fams["overall"] = {"rel_l2": 99.0, "rel_l2_first": 99.0, "rel_l2_second": 99.0, "mse": 0.0}  # recomputed
    payload = {"stage": "test", "families": fams}
    if curve:
        payload["curve"] = {k: {f: {"rel_l2": v} for f, v in c.items()} for k, c in curve.items()}
    metrics.write_text(json.dumps(payload))
    record_path(exp_dir, step_id).parent.mkdir(parents=True, exist_ok=True)
    record_path(exp_dir, step_id).write_text(json.dumps(
        {"id": step_id, "index": index, "outputs": {"metrics": str(metrics), "log_dir": str(metrics.parent)},
         "tags": tags}))


def test_report_groups_and_adaptation_curves(tmp_path):
    groups = {"unseen operators": ["heat", "advection"], "unseen families": ["kdv"]}
    per_seed = {0: {"heat": 0.1, "advection": 0.3, "kdv": 0.6}, 1: {"heat": 0.2, "advection": 0.4, "kdv": 0.8}}
    for i, (seed, fams) in enumerate(per_seed.items()):
        curve = {"0": {f: 2 * v for f, v in fams.items()}, "5": fams}
        _fake_result(tmp_path, f"t_s{seed}", i, {"condition": "prose LeMON", "group": "LeMON", "model": "prose",
                                                 "seed": seed, "groups": groups}, fams, curve)
    rows = {r["family"]: r for r in report.aggregate(report.load_results(tmp_path))}
    assert list(rows) == ["heat", "advection", "kdv", "unseen operators", "unseen families", "overall"]
    assert rows["unseen operators"]["rel_l2"] == pytest.approx([0.2, 0.3])  # per seed: mean over its families
    assert rows["unseen families"]["rel_l2_mean"] == pytest.approx(0.7)
    assert rows["overall"]["rel_l2"] == pytest.approx([1.0 / 3, 1.4 / 3])
    curves = {(r["family"], r["steps"]): r for r in report.aggregate_curves(report.load_results(tmp_path))}
    assert curves[("unseen operators", 0)]["rel_l2_mean"] == pytest.approx(0.5)
    assert curves[("unseen operators", 5)]["rel_l2_mean"] == pytest.approx(0.25)
    assert curves[("unseen families", 5)]["rel_l2_std"] == pytest.approx(statistics.stdev([0.6, 0.8]))
    paths = report.write_report("init-comparison", tmp_path)
    assert {p.name for p in paths} >= {"table.md", "results.csv", "curve.csv", "error_vs_steps.png",
                                       "init_comparison.png"}
    md = (tmp_path / "table.md").read_text()
    assert "| prose | LeMON | 0.5 ± 0.14 | 0.25 ± 0.071 | 1.4 ± 0.28 | 0.7 ± 0.14 |" in md


def test_report_finetune_costs(tmp_path):
    for i, (variant, n, params, ms, err) in enumerate([("full", 20, 1000, 30.0, 0.3), ("full", 50, 1000, 50.0, 0.2),
                                                        ("lora_r4", 20, 40, 20.0, 0.35),
                                                        ("lora_r4", 50, 40, 40.0, 0.25)]):
        fit_dir = tmp_path / "runs" / f"fit{i}" / "version_0"
        fit_dir.mkdir(parents=True)
        (fit_dir / "fit_summary.json").write_text(json.dumps(
            {"trainable_params": params, "total_params": 1000 + (params if variant != "full" else 0),
             "ms_per_step": ms}))
        record_path(tmp_path, f"fit{i}").parent.mkdir(parents=True, exist_ok=True)
        record_path(tmp_path, f"fit{i}").write_text(json.dumps({"id": f"fit{i}", "index": 2 * i,
                                                                "outputs": {"log_dir": str(fit_dir)}, "tags": {}}))
        _fake_result(tmp_path, f"test{i}", 2 * i + 1, {"condition": f"{variant} N={n}", "group": variant, "x": n,
                                                       "seed": 0, "family": "kdv", "fit": f"fit{i}"}, {"kdv": err})
    paths = report.write_report("finetune", tmp_path)
    assert (tmp_path / "error_vs_n.png") in paths
    md = (tmp_path / "table.md").read_text()
    assert "| full | 0.3 ± 0 | 0.2 ± 0 | 1,000 | 100.00 | 30 | 50 |" in md
    assert "| lora_r4 | 0.35 ± 0 | 0.25 ± 0 | 40 | 3.85 | 20 | 40 |" in md


def test_report_mean_std_over_seeds(tmp_path):
    vals = {0: (0.2, 0.4), 1: (0.3, 0.1), 2: (0.7, 0.4)}
    i = 0
    for seed, (kdv, sg) in vals.items():  # one test step per target family, as the scaling experiment
        for fam, v in (("kdv", kdv), ("Sine_Gordon", sg)):
            i += 1
            _fake_result(tmp_path, f"t_{fam}_s{seed}", i, {"condition": "pretrained k=1", "x": 1,
                                                          "group": "pretrained", "seed": seed, "family": fam},
                         {fam: v, "other": 5.0})  # other families in the file are ignored
    for seed in (0, 1):
        i += 1
        _fake_result(tmp_path, f"s_s{seed}", i, {"condition": "scratch", "group": "scratch", "seed": seed},
                     {"kdv": 1.0 + seed, "Sine_Gordon": 1.0})
    paths = report.write_report("scaling", tmp_path)
    assert [p.name for p in paths] == ["results.csv", "table.md", "scaling.png"] and all(p.exists() for p in paths)
    rows = {(r["condition"], r["family"]): r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    kdv = rows[("pretrained k=1", "kdv")]
    assert float(kdv["rel_l2_mean"]) == pytest.approx(0.4)
    assert float(kdv["rel_l2_std"]) == pytest.approx(statistics.stdev([0.2, 0.3, 0.7]), rel=1e-5)
    assert kdv["n_seeds"] == "3" and kdv["rel_l2_per_seed"] == "0.2 0.3 0.7"
    assert float(kdv["rel_l2_second_mean"]) == pytest.approx(0.8)
    overall = [(a + b) / 2 for a, b in vals.values()]
    assert float(rows[("pretrained k=1", "overall")]["rel_l2_mean"]) == pytest.approx(statistics.fmean(overall))
    assert float(rows[("pretrained k=1", "overall")]["rel_l2_std"]) == pytest.approx(statistics.stdev(overall),
                                                                                    rel=1e-5)
    assert ("pretrained k=1", "other") not in rows
    assert float(rows[("scratch", "overall")]["rel_l2_mean"]) == pytest.approx(1.25)
    assert list(rows)[0] == ("pretrained k=1", "kdv")
    md = (tmp_path / "table.md").read_text()
    assert "| pretrained k=1 | kdv | 3 | 0.4 ± 0.26 |" in md


def test_steps_run_through_the_given_entry_point_with_sys_argv_untouched(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", ["lemon-pl", "experiment", "x"])
    seen = []
    run_steps([noop("a"), Step("b", ["fit", "--k", "1"])], tmp_path, (),
              lambda argv: seen.append((list(argv), list(sys.argv))) or FakeCLI()(argv), log=lambda m: None)
    assert [a[:2] for a, _ in seen] == [["noop", "a"], ["fit", "--k"]]
    assert all(sa == ["lemon-pl", "experiment", "x"] for _, sa in seen)


# ------------------------------------------------------------------------ the CLI, end to end
@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run from an empty folder; the configs/ folder is the repository's, named by LEMON_CONFIGS."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEMON_CONFIGS", str(REPO / "configs"))
    return tmp_path


@pytest.mark.slow  # 40 s: the default suite keeps the finetune and multi-process end-to-end runs
def test_scaling_tiny_end_to_end_and_resume(exp_data, tmp_path, in_tmp, capsys):
    argv = ["experiment", "scaling", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]
    assert main(argv) == 0
    out = tmp_path / "res/scaling/tiny"
    for name in ("table.md", "results.csv", "scaling.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["condition"] for r in rows} == {"pretrained k=1", "pretrained k=2", "scratch"}
    assert all(r["n_seeds"] == "2" for r in rows)
    rec = json.loads((out / "steps/finetune_k2_kdv_s1.json").read_text())
    init = rec["argv"][rec["argv"].index("--model.init_args.init_from") + 1]
    assert init == str((out / "runs/pretrain_k2_s1/version_0/checkpoints/last.ckpt").absolute())
    capsys.readouterr()
    assert main(argv) == 0  # everything is done: nothing reruns
    text = capsys.readouterr().out
    assert text.count("skip") == len(build_steps("scaling", "tiny")) and ": run" not in text
    rec = json.loads((out / "steps/pretrain_k1_s0.json").read_text())
    assert rec["argv"][:3] == ["fit", "--config", str(REPO / "configs" / "pretrain.yaml")]


@pytest.mark.slow  # the scaling experiment runs end to end in the default suite
def test_zero_shot_tiny_end_to_end(exp_data, tmp_path, in_tmp):
    assert main(["experiment", "zero-shot", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "res/zero-shot/tiny/results.csv")))
    assert [r["condition"] for r in rows if r["family"] == "overall"] == ["in-distribution", "unseen", "ood gamma=0.3"]
    assert (tmp_path / "res/zero-shot/tiny/zero_shot.png").exists()


@pytest.mark.slow  # the scaling experiment runs end to end in the default suite
def test_init_comparison_tiny_end_to_end(exp_data, tmp_path, in_tmp):
    assert main(["experiment", "init-comparison", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]) == 0
    out = tmp_path / "res/init-comparison/tiny"
    for name in ("table.md", "results.csv", "curve.csv", "error_vs_steps.png", "init_comparison.png", "examples.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "results.csv")))
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    assert conds == [f"{m} {i}" for m in ("prose", "fno")
                     for i in ("scratch", "pretrained", "LeMON", "LeMONS", "pretrained+LeMONS")]
    groups = {(r["condition"], r["family"]): float(r["rel_l2_mean"]) for r in rows}
    assert all(groups[(c, g)] > 0 for c in conds for g in ("unseen operators", "unseen families"))
    curve = list(csv.DictReader(open(out / "curve.csv")))
    assert {r["adapt_steps"] for r in curve} == {"0", "1", "3"}
    # the few-shot error of each condition is its curve's value at eval_steps
    for c in conds:
        at3 = next(r for r in curve if r["condition"] == c and r["group"] == "unseen families" and r["adapt_steps"] == "3")
        assert float(at3["rel_l2_mean"]) == pytest.approx(groups[(c, "unseen families")], rel=1e-5)
    # LeMONS evaluates with the learned rate head it was trained with
    argv = json.loads((out / "steps/test_prose_LeMONS_s0.json").read_text())["argv"]
    assert argv[argv.index("--model.init_args.inner_lr") + 1] == "learned_symbolic"
    # pretrained+LeMONS: meta-training starts from the shorter pretraining run of the same seed
    argv = json.loads((out / "steps/prose_hybrid_LeMONS_s1.json").read_text())["argv"]
    assert argv[argv.index("--model.init_args.init_from") + 1] == str(
        (out / "runs/prose_hybrid_pretrain_s1/version_0/checkpoints/last.ckpt").absolute())


@pytest.mark.slow  # the scaling experiment runs end to end in the default suite
def test_finetune_tiny_end_to_end(exp_data, tmp_path, in_tmp):
    assert main(["experiment", "finetune", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]) == 0
    out = tmp_path / "res/finetune/tiny"
    for name in ("table.md", "results.csv", "error_vs_n.png", "examples.png"):
        assert (out / name).stat().st_size > 0, name
    costs = finetune.fit_costs(report.load_results(out))
    assert set(costs) == {f"{v} N={n}" for v in ("full", "decoder", "lora_r2") for n in (4, 8)}
    full, dec, lora = (costs[f"{v} N=8"]["trainable_params"] for v in ("full", "decoder", "lora_r2"))
    assert lora < full and dec < full and costs["full N=8"]["trainable_params"] == costs["full N=8"]["total_params"]
    assert all(c["ms_per_step"] > 0 for c in costs.values())
    rec = json.loads((out / "steps/finetune_lora_r2_n8_kdv_s1.json").read_text())["argv"]
    assert rec[rec.index("--model.init_args.lora_rank") + 1] == "2" and rec[rec.index("--model.init_args.lr") + 1] == "0.001"
    assert rec[rec.index("--data.init_args.num_train_samples") + 1] == "8"


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository's root, which holds configs/ (no LEMON_CONFIGS)."""
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LEMON_CONFIGS", raising=False)


def test_dry_run_prints_the_steps(tmp_path, in_repo, capsys):
    code = main(["experiment", "scaling", "--scale", "cpu", "--out", str(tmp_path), "--dry-run",
                 "--config", "configs/trainer/ddp.yaml"])
    out = capsys.readouterr().out
    assert code == 0 and "scaling (cpu): 73 steps" in out  # 1 + 12 pretrain + (12 + 3) x 2 targets x (fine-tune + test)
    assert "todo pretrain_k7_s2" in out and "{ckpt:pretrain_k1_s0}" in out and "trainer/ddp.yaml" in out
    assert not (tmp_path / "scaling").exists()


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown experiment 'nope'"),
    (["finetune", "--scale", "cpu", "--experiment-config", "configs/experiments/scaling.yaml"],
     "the experiment config sets no 'pretrain_families', 'variants' for this scale"),
    (["scaling", "--scale", "cpu", "--config", "missing.yaml", "--dry-run"], "missing.yaml does not exist"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, in_repo, capsys):
    assert main(["experiment", *argv, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lemon-pl experiment: error:") and message in err[0]


def test_output_piped_into_head_stops_quietly(tmp_path, in_repo):
    """`lemon-pl experiment ... --dry-run | head` ends without a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lemon_pl.cli", "experiment", "init-comparison", "--scale",
                             "paper", "--dry-run", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err
