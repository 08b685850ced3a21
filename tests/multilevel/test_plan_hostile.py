"""``lemon-pl multilevel plan`` under hostile input (issue 22): every bad budget, pilot list,
output path, config file and value is refused in one line *before the first pilot fit* (the
pilot folder is never created), no budget hangs or crashes the allocators, two plans never share
a pilot folder, and a full disk while writing the plan leaves the previous plan byte-identical.

The pilot fits are stood in for by their finished summaries (``fit_summary.json`` of every
pilot run, which ``plan`` reuses), so everything after them runs for real in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported at collection, so its log handler writes to the real stderr
import numpy as np
import pytest

from lemon_pl.cli import main
from lemon_pl.multilevel import allocate as al
from tests.cli.test_full_disk import fill, snapshot, tmpfs
from tests.conftest import CONFIGS

STAGE = str(CONFIGS / "multilevel/schrodinger.yaml")
TINY = str(CONFIGS / "multilevel/tiny.yaml")
PILOT = "4,8,16"
ERR = "lemon-pl multilevel: error: "


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_plan")
    assert main(["generate", "--root", str(root), "--preset", "tiny", "--families", "schrodinger", "--levels",
                 "32,64", "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def two_levels(tmp_path_factory):
    path = tmp_path_factory.mktemp("two") / "two.yaml"
    path.write_text("data:\n  init_args:\n    levels: [32, 64]\n    n_samples: [16, 8]\n    epochs: [1, 1]\n")
    return [STAGE, TINY, str(path)]


@pytest.fixture(scope="module")
def pilots(tmp_path_factory):
    """Finished pilot runs for --pilot 4,8,16 and seed 0: e(N) = b + a N^-0.5 per level, and the
    curriculum pilot."""
    folder = tmp_path_factory.mktemp("pilots")
    runs = {f"level1_n32_N{n}_s0": 0.05 + 0.5 * n ** -0.5 for n in (4, 8, 16)}
    runs |= {f"level2_n64_N{n}_s0": 0.01 + 0.6 * n ** -0.5 for n in (4, 8, 16)}
    runs["chain_N16_N8_s0"] = 0.08
    for name, err in runs.items():
        (folder / name / "version_0").mkdir(parents=True)
        (folder / name / "version_0" / "fit_summary.json").write_text(json.dumps({"level_val_rel_l2": {"2": err}}))
    return folder


def plan_argv(configs, root, pilot_dir, *extra):
    return ["multilevel", "plan", *[x for c in configs for x in ("--config", c)], "--root", str(root),
            "--pilot", PILOT, "--pilot-dir", str(pilot_dir), *extra]


def one_line(capsys, code) -> str:
    """The run ended with exit 2 and exactly one stderr line, the error; no pilot fit ran."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(ERR), err
    assert not any(ln.startswith("pilot fit ") for ln in lines) and "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------ 1. numbers, before anything runs

BUDGETS = {
    "nan": "--budget must be positive and finite, got 'nan'",
    "inf": "--budget must be positive and finite, got 'inf'",
    "-inf": "--budget must be positive and finite, got '-inf'",
    "-1": "--budget must be positive and finite, got '-1'",
    "0": "--budget must be positive and finite, got '0'",
    "4,nan": "--budget must be positive and finite, got '4,nan'",
    "1e300": "--budget 1e+300 is above the most a plan takes (1e+12, in seconds or, with --budget-unit fine, "
             "finest samples)",
    "1e308": "--budget 1e+308 is above the most a plan takes (1e+12, in seconds or, with --budget-unit fine, "
             "finest samples)",
    "1e999": "--budget must be positive and finite, got '1e999'",
    "x": "--budget takes comma-separated numbers, got 'x'",
    ",": "--budget takes comma-separated numbers, got ','",
    "4,4.0": "--budget lists 4 twice",
}


@pytest.mark.parametrize("unit", ["s", "fine"])
@pytest.mark.parametrize("budget", list(BUDGETS))
def test_a_bad_budget_is_refused_before_any_file_is_read(budget, unit, two_levels, tmp_path, capsys):
    """Before: nan was refused only after every pilot fit ran; 1e308 with --budget-unit fine was a
    scipy traceback and 1e300 hung in the allocator."""
    pilot_dir = tmp_path / "pilots"
    code = main(plan_argv(two_levels, tmp_path / "no_data", pilot_dir, f"--budget={budget}", "--budget-unit", unit,
                          "--out-dir", str(tmp_path / "plans")))
    assert one_line(capsys, code) == ERR + BUDGETS[budget]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no pilot folder, no plan folder


PILOTS = {
    "4,8": "--pilot needs 3 to 10 sample counts (the error model has 3 parameters; every count is one fit per "
           "level), got 2",
    "0,4,8": "--pilot counts must be between 1 and 1000000000, got 0 in '0,4,8'",
    "-4,8,16": "--pilot counts must be between 1 and 1000000000, got -4 in '-4,8,16'",
    "4,8,99999999999": "--pilot counts must be between 1 and 1000000000, got 99999999999 in '4,8,99999999999'",
    "4,8,x": "--pilot takes comma-separated whole numbers of samples, got '4,8,x'",
    "4.5,8,16": "--pilot takes comma-separated whole numbers of samples, got '4.5,8,16'",
    "1e3,8,16": "--pilot takes comma-separated whole numbers of samples, got '1e3,8,16'",
    "4,4,8": "--pilot lists 4 twice",
    "1,2,3,4,5,6,7,8,9,10,11": "--pilot needs 3 to 10 sample counts (the error model has 3 parameters; every count "
                               "is one fit per level), got 11",
}


@pytest.mark.parametrize("pilot", list(PILOTS))
def test_a_bad_pilot_list_is_refused_before_any_pilot_fit(pilot, two_levels, root, tmp_path, capsys):
    code = main([*plan_argv(two_levels, root, tmp_path / "pilots", "--budget", "4"), f"--pilot={pilot}"])
    assert one_line(capsys, code) == ERR + PILOTS[pilot]
    assert not (tmp_path / "pilots").exists()


def test_pilot_counts_the_files_cannot_provide_are_refused_before_any_pilot_fit(two_levels, root, tmp_path, capsys):
    """Each level file holds 64 samples: 64,128,256 leaves one distinct count. Before, the second
    level's refusal came after the first level's pilots had run."""
    code = main([*plan_argv(two_levels, root, tmp_path / "pilots", "--budget", "4"), "--pilot", "64,128,256"])
    assert one_line(capsys, code) == (ERR + "level 1 (n=32) has 64 training samples: too few for 3 distinct pilot "
                                      "sizes from --pilot 64,128,256")
    assert not (tmp_path / "pilots").exists()


def test_a_bad_seed_is_refused(two_levels, root, tmp_path, capsys):
    code = main(plan_argv(two_levels, root, tmp_path / "pilots", "--budget", "4", "--seed", "-1"))
    assert one_line(capsys, code) == ERR + "--seed must be between 0 and 4294967295, got -1"


# ------------------------------------------------------------------------ 2. outputs that cannot be written


@pytest.mark.parametrize("case", ["out_is_a_folder", "out_under_a_file", "out_dir_is_a_file", "out_dir_under_a_file",
                                  "pilot_dir_is_a_file", "out_on_a_read_only_disk", "out_dir_on_a_read_only_disk",
                                  "out_in_proc"])
def test_an_output_that_cannot_be_written_is_refused_before_any_pilot_fit(case, two_levels, root, tmp_path, capsys):
    """Before: an unwritable --out was found only when the plan was written, after every pilot fit."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.yaml").write_text("kept: true\n")
    (tmp_path / "a_file").write_text("not a folder\n")
    pilot_dir = tmp_path / "pilots"
    ro = tmp_path / "ro"
    flags = {"out_is_a_folder": ["--out", str(tmp_path / "folder")],
             "out_under_a_file": ["--out", str(tmp_path / "a_file" / "plan.yaml")],
             "out_dir_is_a_file": ["--out-dir", str(tmp_path / "a_file")],
             "out_dir_under_a_file": ["--out-dir", str(tmp_path / "a_file" / "plans")],
             "pilot_dir_is_a_file": ["--pilot-dir", str(tmp_path / "a_file")],
             "out_on_a_read_only_disk": ["--out", str(ro / "plan.yaml")],
             # root may write anywhere by permission bits, and os.access says yes to /proc: the check must
             # create a file to know (before: every pilot fit ran, then the write failed)
             "out_in_proc": ["--out", "/proc/plan.yaml"],
             "out_dir_on_a_read_only_disk": ["--out-dir", str(ro / "new" / "plans")]}[case]
    expected = {"out_is_a_folder": f"--out {tmp_path / 'folder'} is a folder; give the overlay's file name (or use "
                                   "--out-dir)",
                "out_under_a_file": f"--out {tmp_path / 'a_file' / 'plan.yaml'}: {tmp_path / 'a_file'} is a file, "
                                    "not a folder",
                "out_dir_is_a_file": f"--out-dir {tmp_path / 'a_file'} is a file, not a folder",
                "out_dir_under_a_file": f"--out-dir {tmp_path / 'a_file' / 'plans'}: {tmp_path / 'a_file'} is a "
                                        "file, not a folder",
                "pilot_dir_is_a_file": f"--pilot-dir {tmp_path / 'a_file'} is a file, not a folder",
                "out_on_a_read_only_disk": f"--out {ro / 'plan.yaml'}: cannot write into {ro} (Read-only file system)",
                "out_dir_on_a_read_only_disk": f"--out-dir {ro / 'new' / 'plans'}: cannot write into {ro} "
                                               "(Read-only file system)",
                "out_in_proc": "--out /proc/plan.yaml: cannot write into /proc (No such file or directory)"}[case]

    def run():
        before = snapshot(tmp_path)
        code = main([*plan_argv(two_levels, root, pilot_dir, "--budget", "4", "--budget-unit", "fine"), *flags])
        assert one_line(capsys, code) == ERR + expected
        assert snapshot(tmp_path) == before and not pilot_dir.exists()  # nothing written, no pilot fit

    if case == "out_in_proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    if "read_only" in case:
        with tmpfs(ro, "1m", read_only=True):
            run()
    else:
        run()


# ------------------------------------------------------------------------ 3. config files and values


@pytest.mark.parametrize("content, expected", [
    ("data: [\n", "{f}: YAML syntax error (line 2, column 1): expected the node content, but found '<stream end>'"),
    ("data:\n  init_args:\n\tlevels: [32]\n",
     "{f}: YAML syntax error (line 3, column 1): found character '\\t' that cannot start any token"),
    ("- 1\n- 2\n", "{f}: the top level must be a mapping of keys to values, not a list"),
    ("# nothing\n", "config file {f} is empty (no settings)"),
    ("defaults: [missing.yaml]\n", "{f}: its defaults entry missing.yaml does not exist ({d}/missing.yaml)"),
    ("defaults: [broken.yaml]\n", "{d}/broken.yaml: YAML syntax error (line 1, column 9): expected ',' or ']', but "
                                  "got '<stream end>'"),
    # the config is composed by `lemon-pl fit`'s composer: its errors are fit's, word for word
    ("data:\n  init_args:\n    levels: [32, x]\n",
     "data.init_args.levels in {f}: Expected a <class 'int'>. Got value: x"),
    ("data:\n  init_args:\n    epochs: [1]\n", "{f}: data.init_args.epochs has 1 values for 2 levels [32, 64]"),
    ("data:\n  init_args:\n    levels: [64, 32]\n", "{f}: data.init_args.levels [64, 32] must be distinct grids, "
                                                     "coarse to fine"),
    ("data:\n  init_args:\n    family: 7\n", "data.init_args.family in {f}: Expected a <class 'str'>. Got value: 7"),
    ("data:\n  init_args:\n    family: ''\n", "{f}: data.init_args.family must be a family name, got ''"),
    ("data:\n  class_path: lemon_pl.data.datamodule.OperatorFamilyDataModule\n",
     "{f}: data.class_path is lemon_pl.data.datamodule.OperatorFamilyDataModule, not the multi-level data module"),
    ("data:\n  class_path: lemon_pl.data.datamodule.NoSuchModule\n",
     "data in {f}: lemon_pl.data.datamodule.NoSuchModule: module 'lemon_pl.data.datamodule' has no attribute "
     "'NoSuchModule'"),
    ("data:\n  init_args:\n    nope: 1\n",
     "unknown option data.init_args.nope in {f}; did you mean data.init_args.native?"),
    ("trainer:\n  max_epochs: abc\n",
     "trainer.max_epochs in {f}: Expected a <class 'int'>, got 'abc'"),
    # the pilot fits' own config, built (not run) before the first one: the constructors' checks
    ("model:\n  init_args:\n    lr: -1\n",
     "the pilot fits' config would fail: model.lr must be positive, got [-1.0, -1.0]"),
])
def test_a_bad_config_is_refused_before_any_pilot_fit(content, expected, two_levels, root, tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("a: [1, 2")
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    pilot_dir = tmp_path / "pilots"
    code = main(plan_argv([*two_levels, str(bad)], root, pilot_dir, "--budget", "4", "--budget-unit", "fine"))
    assert one_line(capsys, code) == ERR + expected.format(f=bad, d=tmp_path, s=STAGE)
    assert not pilot_dir.exists()


def test_binary_missing_and_folder_configs_are_one_line(two_levels, root, tmp_path, capsys):
    (tmp_path / "bin.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (tmp_path / "dir.yaml").mkdir()
    for name, expected in [("bin.yaml", "{p}: not UTF-8 text (byte 0x89 at line 1); is it a YAML config file?"),
                           ("dir.yaml", "config file {p} is a directory, not a YAML file"),
                           ("nope.yaml", "config file does not exist: '{p}'")]:
        path = tmp_path / name
        code = main(plan_argv([*two_levels, str(path)], root, tmp_path / "pilots", "--budget", "4"))
        assert one_line(capsys, code) == ERR + expected.format(p=path)
    assert not (tmp_path / "pilots").exists()


# ------------------------------------------------------------------------ 4. budgets no allocator can hang on


@pytest.mark.parametrize("costs", [[0.000197, 0.000266], [1e-6, 1e-4, 3e-2], [1e-300, 1e300], [1.0, 1e9]])
@pytest.mark.parametrize("budget", [1e9, 1e15, 1e20, 1e300, 1.7e308])
def test_no_budget_hangs_or_overflows_the_allocators(costs, budget):
    """The root cause of the hang: past 2**53 samples adding one sample no longer changed the
    float sum spent, so the greedy rounding never ended; past 2**63 the counts wrapped negative.
    Counts are capped at MAX_SAMPLES (or the files' counts) and the remaining budget is a
    running difference, so every allocator ends at once with counts that fit."""
    c = np.asarray(costs)
    if budget < c.max():
        return
    models = [al.LevelModel(1.0, 0.5, 0.1 / (l + 1)) for l in range(c.size)]
    variances = [1.0] + [1e-3] * (c.size - 1)
    for upper in (None, [64] * c.size):
        t0 = time.perf_counter()
        plans = {"allocator": al.optimal_allocation(models, c, budget, upper=upper),
                 "mlmc": al.mlmc_allocation(c, variances, budget, min_samples=0, upper=upper),
                 "equal": al.equal_split(c, budget, upper=upper)}
        assert time.perf_counter() - t0 < 5
        cap = al.MAX_SAMPLES if upper is None else 64
        for name, n in plans.items():
            assert n.dtype == np.int64 and np.all(n >= 0) and np.all(n <= cap), (name, n)
            assert float(n @ c) <= budget * (1 + 1e-9), name
        if upper is not None and float(np.dot(upper, c)) <= budget:  # everything the files hold is affordable
            assert plans["allocator"].tolist() == upper


def test_a_budget_beyond_the_files_plans_every_sample_they_hold(two_levels, root, pilots, tmp_path, capsys):
    """1e12 seconds (and 1e12 finest samples) buys far more than the 64 samples per level the files
    hold: every method is capped there, says so, and the plan is written at once."""
    for unit in ("s", "fine"):
        out = tmp_path / unit
        t0 = time.perf_counter()
        assert main(plan_argv(two_levels, root, pilots, "--budget", "1e12", "--budget-unit", unit,
                              "--out-dir", str(out))) == 0
        assert time.perf_counter() - t0 < 60
        plan = json.loads((out / "plan.json").read_text())
        entry = plan["budgets"]["1e+12"]
        assert entry["allocator"]["n_samples"] == [64, 64]
        assert entry["fine_only"]["n_samples"] == [0, 64] and entry["coarse_only"]["n_samples"] == [64, 0]
        for v in entry.values():
            assert all(0 <= n <= 64 for n in v["n_samples"]) and v["spent"] <= v["budget_seconds"]
        assert ("level 2 uses all 64 samples its file holds; the budget would buy more (generate more with "
                "--n-samples / --n-operators)") in entry["allocator"]["notes"]
    assert "\npilot fit " not in "\n" + capsys.readouterr().err  # the finished pilots were reused


# ------------------------------------------------------------------------ 5. one plan per pilot folder

HOLDER = """
import sys, time
from pathlib import Path
from lemon_pl.multilevel.plan import lock_pilots
lock = lock_pilots(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_plan_on_the_same_pilot_folder_is_refused(two_levels, root, pilots, tmp_path, capsys):
    """Before, two plans on one pilot folder ran the same pilots into the same run folders."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(pilots)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(pilots, skip=(".plan.lock",))
        argv = plan_argv(two_levels, root, pilots, "--budget", "4", "--budget-unit", "fine",
                         "--out-dir", str(tmp_path / "plans"))
        assert one_line(capsys, main(argv)) == (f"{ERR}another plan is using {pilots} (pid {holder.pid}); wait for it "
                                                "or use another --pilot-dir")
        assert snapshot(pilots, skip=(".plan.lock",)) == before and not (tmp_path / "plans").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0 and (tmp_path / "plans" / "plan.json").is_file()  # released with its process


# ------------------------------------------------------------------------ 6. a full disk while writing the plan


def test_a_full_disk_while_writing_the_plan_keeps_the_previous_plan(two_levels, root, pilots, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        base = plan_argv(two_levels, root, pilots, "--budget-unit", "fine")
        assert main([*base, "--budget", "4", "--out-dir", str(disk / "plans")]) == 0
        before = snapshot(disk / "plans")
        assert "plan.json" in before and len(before) == 6
        fill(disk)
        capsys.readouterr()
        # the overlays of budget 4 and 8 and plan.json: none is replaced unless all are written
        code = main([*base, "--budget", "4,8", "--out-dir", str(disk / "plans")])
        line = one_line(capsys, code)
        assert line.startswith(f"{ERR}could not write {disk / 'plans'}/") and line.endswith(
            ": No space left on device; nothing was changed (the plan above was not saved; free some space or choose "
            "another --out/--out-dir)")
        assert snapshot(disk / "plans") == before  # same files (no temporary one), same bytes
        code = main([*base, "--budget", "8", "--out", str(disk / "new" / "plan.yaml")])
        assert one_line(capsys, code) == (f"{ERR}could not write {disk / 'new' / 'plan.yaml'}: No space left on "
                                          "device; nothing was changed (the plan above was not saved; free some "
                                          "space or choose another --out/--out-dir)")
        assert not (disk / "new").exists()
