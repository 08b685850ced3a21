"""Every YAML file a user passes is read by one helper (``lemon_pl.core.yamlio.read_yaml``): a syntax
error is one line with the file, line and column; so is a top level that is no mapping, an
empty file, a missing file, a folder, a device, a huge file and bytes that are not UTF-8 text.
The same lines come out of ``lemon-pl fit/test --config`` (and the files they compose through
``defaults:``), ``lemon-pl experiment --experiment-config`` and ``--config`` (and the overlays its
settings name), and ``lemon-pl multilevel plan --config`` (see tests/multilevel/test_plan_hostile.py),
each with exit code 2 and nothing written.

Before: a syntax error in ``--experiment-config`` was a 62-line traceback with exit code 1, and a
broken ``--config`` overlay of ``experiment`` was found only by the first training step."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported at collection, so its log handler writes to the real stderr
import pytest
import yaml

from lemon_pl.cli import main
from lemon_pl.core.yamlio import MAX_BYTES, YamlFileError, config_chain, read_yaml
from tests.conftest import CONFIGS

#: content -> the message of read_yaml ({f}: the file); "config file" is what the file is called
BAD = {
    "unclosed": ("model: [\n", "{f}: YAML syntax error (line 2, column 1): expected the node content, but found "
                               "'<stream end>'"),
    "tab": ("trainer:\n\tmax_epochs: 3\n", "{f}: YAML syntax error (line 2, column 1): found character '\\t' that "
                                           "cannot start any token"),
    "indent": ("trainer:\n  max_epochs: 3\n bad: 1\n", "{f}: YAML syntax error (line 3, column 2): expected "
                                                       "<block end>, but found '<block mapping start>'"),
    "alias": ("a: &x 1\nb: *y\n", "{f}: YAML syntax error (line 2, column 4): found undefined alias 'y'"),
    "python_tag": ("a: !!python/object/apply:os.system [ls]\n",
                   "{f}: unsupported YAML tag (line 1, column 4): could not determine a constructor for the tag "
                   "'tag:yaml.org,2002:python/object/apply:os.system'"),
    "nul": ("a: 1\n\0\n", "{f}: YAML syntax error (line 2, column 1): unacceptable character #x0000: special "
                          "characters are not allowed"),
    "deep": ("[" * 5000, "{f}: not valid YAML (nested too deeply)"),
    "list": ("- a\n- b\n", "{f}: the top level must be a mapping of keys to values, not a list"),
    "string": ("just words\n", "{f}: the top level must be a mapping of keys to values, not a string"),
    "number": ("42\n", "{f}: the top level must be a mapping of keys to values, not a int"),
    "empty": ("", "config file {f} is empty (no settings)"),
    "comments": ("# only a comment\n\n", "config file {f} is empty (no settings)"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "{f}: not UTF-8 text (byte 0x89 at line 1); is it a YAML config "
                                                  "file?"),
    "latin1": ("a: caf\xe9\n".encode("latin-1"),
               "{f}: not UTF-8 text (byte 0xe9 at line 1); is it a YAML config file?"),
}


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_read_yaml_names_the_file_and_where(case, tmp_path):
    content, expected = BAD[case]
    path = _write(tmp_path / f"{case}.yaml", content)
    with pytest.raises(YamlFileError) as err:
        read_yaml(path, empty_ok=False)
    assert str(err.value) == expected.format(f=path)
    assert "\n" not in str(err.value)


def test_read_yaml_refuses_what_is_no_yaml_file(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    with open(tmp_path / "huge.yaml", "wb") as fh:  # sparse: no disk used
        fh.truncate(MAX_BYTES + 1)
    cases = {tmp_path / "missing.yaml": "config file does not exist: {p}",
             tmp_path / "folder.yaml": "config file {p} is a directory, not a YAML file",
             tmp_path / "huge.yaml": f"config file {{p}} holds {MAX_BYTES + 1} bytes, more than a YAML config may "
                                     f"({MAX_BYTES}); is it the right file?"}
    if os.path.exists("/dev/zero"):  # reading it would never end
        cases[type(tmp_path)("/dev/zero")] = "config file {p} is not a regular file"
    for path, expected in cases.items():
        with pytest.raises(YamlFileError) as err:
            read_yaml(path)
        assert str(err.value) == expected.format(p=path)


def test_an_empty_file_is_an_empty_mapping_where_allowed(tmp_path):
    assert read_yaml(_write(tmp_path / "e.yaml", "# nothing\n")) == {}
    assert read_yaml(_write(tmp_path / "v.yaml", "a: 1\n")) == {"a": 1}


def test_defaults_are_followed_and_checked(tmp_path):
    _write(tmp_path / "base.yaml", "a: 1\n")
    _write(tmp_path / "top.yaml", "defaults: [base.yaml]\nb: 2\n")
    assert [p.name for p, _ in config_chain(tmp_path / "top.yaml")] == ["base.yaml", "top.yaml"]
    _write(tmp_path / "loop.yaml", "defaults: [loop.yaml]\n")
    _write(tmp_path / "gone.yaml", "defaults: nope.yaml\n")
    _write(tmp_path / "odd.yaml", "defaults: {a: 1}\n")
    _write(tmp_path / "broken_base.yaml", "defaults: [unclosed.yaml]\n")
    _write(tmp_path / "unclosed.yaml", BAD["unclosed"][0])
    for name, expected in [
            ("loop.yaml", "{d}/loop.yaml: its defaults include it again ({d}/loop.yaml -> {d}/loop.yaml)"),
            ("gone.yaml", "{d}/gone.yaml: its defaults entry nope.yaml does not exist ({d}/nope.yaml)"),
            ("odd.yaml", "{d}/odd.yaml: defaults must be a file name or a list of file names, got {{'a': 1}}"),
            ("broken_base.yaml", BAD["unclosed"][1].replace("{f}", "{d}/unclosed.yaml"))]:
        with pytest.raises(YamlFileError) as err:
            config_chain(tmp_path / name)
        assert str(err.value) == expected.format(d=tmp_path)


def test_every_config_in_the_repository_reads():
    for path in sorted(CONFIGS.rglob("*.yaml")):
        assert config_chain(path)


# ------------------------------------------------------------------------ lemon-pl fit / test


def one_line(capsys, code, prog):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", ["unclosed", "tab", "python_tag", "list", "string", "empty", "comments", "binary",
                                  "deep"])
@pytest.mark.parametrize("command", ["fit", "test"])
def test_a_broken_stage_config_is_one_line(command, case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    content, expected = BAD[case]
    bad = _write(tmp_path / "bad.yaml", content)
    code = main([command, "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(bad)])
    assert one_line(capsys, code, "lemon-pl") == "lemon-pl: error: " + expected.format(f=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no runs/ folder


def test_a_broken_file_reached_through_defaults_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "unclosed.yaml", BAD["unclosed"][0])
    top = _write(tmp_path / "top.yaml", f"defaults: [{CONFIGS / 'pretrain.yaml'}, unclosed.yaml]\n")
    code = main(["fit", "--config", str(top)])
    assert one_line(capsys, code, "lemon-pl") == "lemon-pl: error: " + BAD["unclosed"][1].format(
        f=tmp_path / "unclosed.yaml")
    (tmp_path / "folder.yaml").mkdir()
    code = main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(tmp_path / "folder.yaml")])
    assert one_line(capsys, code, "lemon-pl") == f"lemon-pl: error: config file {tmp_path / 'folder.yaml'} is a " \
                                                 "directory, not a YAML file"


# ------------------------------------------------------------------------ lemon-pl experiment


def _experiment(tmp_path, *extra):
    return ["experiment", "zero-shot", "--scale", "tiny", "--configs", str(CONFIGS), "--out", str(tmp_path / "res"),
            "--data-root", str(tmp_path / "data"), *extra]


@pytest.mark.parametrize("case", list(BAD))
def test_a_broken_experiment_config_is_one_line(case, tmp_path, capsys):
    """The case of issue 22: a syntax error in --experiment-config (before: 62 lines, exit 1)."""
    content, expected = BAD[case]
    bad = _write(tmp_path / "exp.yaml", content)
    code = main(_experiment(tmp_path, "--experiment-config", str(bad)))
    expected = expected.replace("config file", "experiment config").replace("YAML experiment config", "YAML "
                                                                             "experiment config")
    assert one_line(capsys, code, "lemon-pl experiment") == "lemon-pl experiment: error: " + expected.format(f=bad)
    assert not (tmp_path / "res").exists() and not (tmp_path / "data").exists()


def test_experiment_config_sections_and_files_are_checked(tmp_path, capsys):
    (tmp_path / "dir.yaml").mkdir()
    cases = {
        "tiny: 5\n": "{f}: section 'tiny' must be a mapping of settings, not int 5",
        "common: [1]\ntiny: {}\n": "{f}: section 'common' must be a mapping of settings, not list [1]",
        "cpu: {}\n": "{f} has no 'tiny' section (it has cpu)",
    }
    for content, expected in cases.items():
        bad = _write(tmp_path / "exp.yaml", content)
        code = main(_experiment(tmp_path, "--experiment-config", str(bad)))
        assert one_line(capsys, code, "lemon-pl experiment") == "lemon-pl experiment: error: " + expected.format(f=bad)
    for path, expected in [(tmp_path / "dir.yaml", "experiment config {p} is a directory, not a YAML file"),
                           (tmp_path / "no.yaml", "experiment config does not exist: {p}")]:
        code = main(_experiment(tmp_path, "--experiment-config", str(path)))
        assert one_line(capsys, code, "lemon-pl experiment") == "lemon-pl experiment: error: " + expected.format(p=path)
    assert not (tmp_path / "res").exists()


def test_broken_overlays_of_an_experiment_are_refused_before_the_first_step(tmp_path, capsys):
    """--config overlays (and the files they compose) and the overlays the settings name are read
    before any step runs; before, the first fit step found them (after data generation)."""
    unclosed = _write(tmp_path / "unclosed.yaml", BAD["unclosed"][0])
    wrapper = _write(tmp_path / "wrapper.yaml", "defaults: [unclosed.yaml]\n")
    expected = "lemon-pl experiment: error: " + BAD["unclosed"][1].format(f=unclosed)
    for overlay in (unclosed, wrapper):
        code = main(_experiment(tmp_path, "--config", str(overlay)))
        assert one_line(capsys, code, "lemon-pl experiment") == expected
    settings = yaml.safe_load((CONFIGS / "experiments" / "zero_shot.yaml").read_text())
    settings["tiny"]["overlays"] = ["trainer/cpu.yaml", str(unclosed)]
    exp = _write(tmp_path / "exp.yaml", yaml.safe_dump(settings))
    code = main(_experiment(tmp_path, "--experiment-config", str(exp)))
    assert one_line(capsys, code, "lemon-pl experiment") == expected
    assert not (tmp_path / "res").exists() and not (tmp_path / "data").exists()


def test_an_inline_yaml_config_longer_than_a_file_name_is_passed_through():
    """``--config`` also takes a YAML document; one longer than the OS's 255-byte name limit must not
    be probed as a path (ENAMETOOLONG), and keeps its place among the files."""
    from lemon_pl.cli.lightning import compose_defaults

    inline = "trainer:\n  max_epochs: 1\n" + "# a comment long enough\n" * 20
    assert len(inline) > 300
    assert compose_defaults(["fit", "--config", inline, "--trainer.max_steps", "2"]) == \
        ["fit", "--config", inline, "--trainer.max_steps", "2"]


@pytest.mark.parametrize("out,expect", [
    ("/proc/lemon_results", "--out /proc/lemon_results: cannot write the results into /proc (No such file or directory)"),
    ("{tmp}/a_file/res", "--out {tmp}/a_file/res: {tmp}/a_file is a file, not a folder"),
])
def test_an_experiment_results_folder_that_takes_no_files_is_refused_before_any_step(out, expect, tmp_path, capsys):
    """Before: `--out /proc/...` passed, and the first step record failed with a raw errno message."""
    from lemon_pl.cli import main

    if out.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    (tmp_path / "a_file").write_text("x")
    out, expect = out.format(tmp=tmp_path), expect.format(tmp=tmp_path)
    code = main(["experiment", "scaling", "--scale", "tiny", "--configs", str(CONFIGS), "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"lemon-pl experiment: error: {expect}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
