"""The experiment pipeline: resumable steps, placeholders, the report and `lemon-pl experiment`."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import report
from lemon_pl.experiments.runner import Step, StepFailed, record_path, run_dir, run_steps, with_overlays
from lemon_pl.experiments.specs import build_steps


class FakeCLI:
    """Stands in for lemon_pl.cli.main: records calls; `fit` writes a checkpoint, `test` metrics."""

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
    assert run_steps(steps, tmp_path, main=fake) == 2
    assert [c[1] for c in fake.calls] == ["a", "b"]
    rec = json.loads(record_path(tmp_path, "a").read_text())
    assert rec["argv"] == ["noop", "a"] and rec["seconds"] >= 0
    assert not list((tmp_path / "steps").glob(".*tmp"))  # atomic write leaves no temp file
    capsys.readouterr()
    assert run_steps(steps, tmp_path, main=fake) == 0
    assert len(fake.calls) == 2
    assert capsys.readouterr().out.count("skip") == 2


def test_failing_step_stops_and_keeps_completed(tmp_path):
    steps = [noop("a"), noop("b"), noop("c")]
    with pytest.raises(StepFailed, match="step 'b' failed: exit code 2"):
        run_steps(steps, tmp_path, main=FakeCLI(fail={"b"}), log=lambda m: None)
    assert record_path(tmp_path, "a").exists() and not record_path(tmp_path, "b").exists()
    assert not record_path(tmp_path, "c").exists()
    with pytest.raises(StepFailed, match="step 'b' failed: RuntimeError: boom"):
        run_steps(steps, tmp_path, main=FakeCLI(crash={"b"}), log=lambda m: None)
    resume = FakeCLI()
    assert run_steps(steps, tmp_path, main=resume, log=lambda m: None) == 2
    assert [c[1] for c in resume.calls] == ["b", "c"]


def test_ckpt_placeholder_resolves_to_last_ckpt(tmp_path):
    steps = [Step("pre", ["fit", "--config", "x.yaml"]),
             Step("ft", ["fit", "--config", "y.yaml", "--model.init_args.init_from", "{ckpt:pre}"]),
             Step("ev", ["test", "--ckpt_path", "{ckpt:ft}"], tags={"condition": "c", "seed": 0})]
    assert steps[1].needs == ["pre"] and steps[2].needs == ["ft"]
    fake = FakeCLI()
    run_steps(steps, tmp_path, overlays=["extra.yaml"], main=fake, log=lambda m: None)
    ft_argv = fake.calls[1]
    pre_ckpt = run_dir(tmp_path, "pre") / "checkpoints" / "last.ckpt"
    assert ft_argv[ft_argv.index("--model.init_args.init_from") + 1] == str(pre_ckpt)
    assert ft_argv[:5] == ["fit", "--config", "y.yaml", "--config", "extra.yaml"]
    assert ft_argv[-2:] == ["--trainer.logger.init_args.version", "0"]
    rec = json.loads(record_path(tmp_path, "ev").read_text())
    assert rec["outputs"]["metrics"] == str(run_dir(tmp_path, "ev") / "test_metrics.json")
    with pytest.raises(ValueError, match="needs \\['later'\\]"):
        run_steps([Step("x", ["fit", "{ckpt:later}"]), Step("later", ["fit"])], tmp_path / "o", main=fake)


def test_with_overlays_goes_after_the_last_config():
    argv = ["fit", "--config", "a", "--config", "b", "--k", "v"]
    assert with_overlays(argv, ["o"]) == ["fit", "--config", "a", "--config", "b", "--config", "o", "--k", "v"]
    assert with_overlays(["generate", "--root", "r"], ["o"]) == ["generate", "--root", "r"]


def _fake_result(exp_dir: Path, step_id: str, index: int, tags: dict, families: dict) -> None:
    metrics = exp_dir / "runs" / step_id / "test_metrics.json"
    metrics.parent.mkdir(parents=True)
    fams = {f: {"rel_l2": v, "rel_l2_first": v / 2, "rel_l2_second": 2 * v, "mse": 0.0} for f, v in families.items()}
    fams["overall"] = {"rel_l2": 99.0, "rel_l2_first": 99.0, "rel_l2_second": 99.0, "mse": 0.0}  # recomputed
    metrics.write_text(json.dumps({"stage": "test", "families": fams}))
    record_path(exp_dir, step_id).parent.mkdir(parents=True, exist_ok=True)
    record_path(exp_dir, step_id).write_text(json.dumps(
        {"id": step_id, "index": index, "outputs": {"metrics": str(metrics)}, "tags": tags}))


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


# ------------------------------------------------------------------------ the CLI, end to end
@pytest.fixture(scope="session")
def exp_data(tmp_path_factory) -> Path:
    """Only the families the tiny experiments use, tiny preset."""
    from lemon_pl.data.generate import generate

    root = tmp_path_factory.mktemp("exp_data")
    generate(root, "tiny", ["heat", "advection", "kdv"], progress=False)
    return root


def test_scaling_tiny_end_to_end_and_resume(exp_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
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


def test_zero_shot_tiny_end_to_end(exp_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "zero-shot", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "res/zero-shot/tiny/results.csv")))
    assert [r["condition"] for r in rows if r["family"] == "overall"] == ["in-distribution", "unseen", "ood gamma=0.3"]
    assert (tmp_path / "res/zero-shot/tiny/zero_shot.png").exists()


def test_dry_run_prints_the_steps(tmp_path, capsys):
    code = main(["experiment", "scaling", "--scale", "cpu", "--out", str(tmp_path), "--dry-run",
                 "--config", "configs/trainer/ddp.yaml"])
    out = capsys.readouterr().out
    assert code == 0 and "scaling (cpu): 73 steps" in out  # 1 + 12 pretrain + (12 + 3) x 2 targets x (fine-tune + test)
    assert "todo pretrain_k7_s2" in out and "{ckpt:pretrain_k1_s0}" in out and "trainer/ddp.yaml" in out
    assert not (tmp_path / "scaling").exists()


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown experiment 'nope'"),
    (["init-comparison", "--scale", "cpu"], "experiment 'init-comparison' is not implemented yet in this version"),
    (["finetune"], "experiment 'finetune' is not implemented yet in this version"),
    (["scaling", "--scale", "cpu", "--config", "missing.yaml", "--dry-run"], "missing.yaml does not exist"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(["experiment", *argv, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lemon-pl experiment: error:") and message in err[0]
