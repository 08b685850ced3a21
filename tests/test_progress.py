"""Progress bars off a terminal: a few newline-terminated lines, not a flood of \\r redraws."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from tqdm import tqdm

from lemon_pl.core import progress
from lemon_pl.core.progress import LineWriter, bar_kwargs, interactive


class Pipe(io.StringIO):
    """A non-TTY text stream (like a CI log)."""

    def isatty(self):
        return False


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)


def _updates(raw: bytes) -> int:
    """Bar draws in raw output: every \\r redraw and every line counts once."""
    return len([p for p in raw.replace(b"\n", b"\r").split(b"\r") if p.strip()])


# ----------------------------------------------------------------------------- policy


def test_interactive_follows_the_stream_and_the_override(monkeypatch):
    assert interactive(FakeTTY()) is True
    assert interactive(Pipe()) is False
    assert interactive(object()) is False  # no isatty at all
    closed = Pipe()
    closed.close()
    assert interactive(closed) is False
    for value in ("tty", "1", " TTY "):
        monkeypatch.setenv(progress.ENV_VAR, value)
        assert interactive(Pipe()) is True
    for value in ("log", "0", "LOG"):
        monkeypatch.setenv(progress.ENV_VAR, value)
        assert interactive(FakeTTY()) is False
    monkeypatch.setenv(progress.ENV_VAR, "auto")  # anything else: ask the stream
    assert interactive(FakeTTY()) is True and interactive(Pipe()) is False


def test_interactive_defaults_to_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert interactive() is True
    monkeypatch.setattr(sys, "stderr", Pipe())
    assert interactive() is False


def test_bar_kwargs_nothing_special_on_a_tty():
    assert bar_kwargs(FakeTTY()) == {}


def test_bar_kwargs_off_a_tty():
    stream = Pipe()
    kw = bar_kwargs(stream)
    assert kw["mininterval"] >= 10 and kw["ascii"] is True
    assert isinstance(kw["file"], LineWriter) and kw["file"].stream is stream
    assert bar_kwargs(stream)["file"] is not kw["file"]  # one writer per bar


def test_tqdm_off_a_tty_prints_only_its_final_line():
    stream = Pipe()
    with tqdm(total=1000, desc="work", **bar_kwargs(stream)) as bar:
        for i in range(1000):
            bar.update(1)
            if i % 100 == 0:
                bar.set_description(f"work {i}")  # each one a forced refresh in tqdm
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "1000/1000" in out and "#" in out  # the final state, drawn in ASCII
    # the same bar on a terminal redraws in place many times
    tty = FakeTTY()
    with tqdm(total=1000, desc="work", file=tty, **bar_kwargs(tty)) as bar:
        for i in range(1000):
            bar.update(1)
            if i % 100 == 0:
                bar.set_description(f"work {i}")
    assert tty.getvalue().count("\r") > 10


def test_every_shown_update_is_its_own_line():
    stream = Pipe()
    for _ in tqdm(range(5), desc="x", **bar_kwargs(stream, interval=0)):
        pass
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and "\r" not in stream.getvalue()
    counts = [ln.split("|")[2].split()[0] for ln in lines[:-1]]
    # the final state may show twice: last update, then close() (overall rate)
    assert list(dict.fromkeys(counts)) == [f"{i}/5" for i in range(6)] and len(counts) <= 7


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_line_writer_throttles_and_keeps_the_final_line():
    clock, stream = Clock(), Pipe()
    w = LineWriter(stream, interval=30, clock=clock)
    for second in range(95):  # a 95 s job redrawn every second
        clock.t = second
        w.write(f"\rstep {second}   ")
    w.write("\rstep 95")
    w.write("\n")  # tqdm's close(leave=True)
    assert stream.getvalue() == "step 30\nstep 60\nstep 90\nstep 95\n"


def test_line_writer_drops_clears_escapes_and_repeats():
    clock, stream = Clock(), Pipe()
    w = LineWriter(stream, interval=30, clock=clock)
    w.write("\rhalf")
    w.write("\r    ")  # clear(): blank redraw, then \r
    w.write("\r")
    w.write("\n")
    assert stream.getvalue() == ""  # the cleared text is not resurrected
    w.write("\n\x1b[A\rdone  ")  # a nested bar's cursor moves
    w.commit()
    w.write("\rdone")
    w.write("\n")
    assert stream.getvalue() == "done\n"
    w.write("message")
    w.write("\n")  # a plain write through the bar's file
    assert stream.getvalue() == "done\nmessage\n"


# ----------------------------------------------------------------------------- lemon-pl generate


def _generate(tmp_path, env_value):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    env.pop(progress.ENV_VAR, None)
    if env_value is not None:
        env[progress.ENV_VAR] = env_value
    res = subprocess.run([sys.executable, "-m", "lemon_pl.cli", "generate", "--preset", "tiny",
                          "--families", "heat,kdv", "--root", str(tmp_path / (env_value or "auto")),
                          "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert res.returncode == 0, res.stderr.decode()
    assert b"6 files" in res.stdout
    return res.stderr  # bytes: text mode would turn \r into \n


def test_generate_piped_logs_a_few_lines(tmp_path):
    err = _generate(tmp_path, None)
    assert b"\r" not in err
    lines = err.decode().splitlines()
    assert 1 <= len(lines) <= 3, lines
    assert "16/16" in lines[-1] and "kdv/test" in lines[-1]
    # forcing terminal behaviour on the same pipe brings the redraws back: the check can fail
    tty = _generate(tmp_path, "tty")
    assert tty.count(b"\r") >= 8  # first draw + one per split (6) + final, at least
    assert _updates(tty) >= 3 * _updates(err)


# ----------------------------------------------------------------------------- Lightning


def _fit(bar, epochs=1, validate=False):
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.lin(batch[0]).pow(2).mean()
            self.log("loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", self.lin(batch[0]).pow(2).mean(), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def loader(n):
        return DataLoader(TensorDataset(torch.randn(n, 2)), batch_size=1)

    torch.manual_seed(0)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[bar], logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Tiny(), loader(200), loader(4))
    if validate:
        trainer.validate(trainer.lightning_module, loader(4), verbose=False)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lightning_bar_off_a_tty_logs_a_line_per_epoch(monkeypatch):
    out = Pipe()
    monkeypatch.setattr(sys, "stdout", out)  # where Lightning's bars write
    _fit(progress.LogFriendlyProgressBar(), epochs=2, validate=True)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("Epoch 0: 100%|") and "200/200" in lines[0] and "val_loss=" in lines[0]
    assert lines[1].startswith("Epoch 1: 100%|") and "200/200" in lines[1]
    assert lines[2].startswith("Validation DataLoader 0: 100%|") and "4/4" in lines[2]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_plain_lightning_bar_floods_a_pipe(monkeypatch):
    """What the policy prevents (and what LogFriendlyProgressBar does on a terminal)."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    counts = {}
    for name, bar, env in (("plain", TQDMProgressBar(), None), ("forced", None, "tty"), ("tty", None, None)):
        out = FakeTTY() if name == "tty" else Pipe()
        monkeypatch.setattr(sys, "stdout", out)
        if env:
            monkeypatch.setenv(progress.ENV_VAR, env)
        _fit(bar or progress.LogFriendlyProgressBar())
        monkeypatch.delenv(progress.ENV_VAR, raising=False)
        counts[name] = out.getvalue().count("\r")
    assert counts["plain"] >= 200  # at least one redraw per batch
    assert counts["forced"] == counts["tty"] == counts["plain"]  # on a TTY: exactly TQDMProgressBar


def test_lightning_bar_on_a_tty_builds_lightnings_bars(monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar

    monkeypatch.setattr(sys, "stdout", FakeTTY())
    ours, theirs = progress.LogFriendlyProgressBar(), TQDMProgressBar()
    for init in ("init_train_tqdm", "init_sanity_tqdm", "init_predict_tqdm", "init_test_tqdm"):
        a, b = getattr(ours, init)(), getattr(theirs, init)()
        keys = ("fp", "pos", "leave", "mininterval", "maxinterval", "ascii", "dynamic_ncols", "bar_format",
                "smoothing", "desc")
        same = {k: bool(getattr(a, k)) if k == "dynamic_ncols" else getattr(a, k) for k in keys}
        assert same == {k: bool(getattr(b, k)) if k == "dynamic_ncols" else getattr(b, k) for k in keys}, init
        a.close(), b.close()
    assert ours._should_update(1, 200) and ours._should_update(2, 200)


def test_lightning_bar_off_a_tty_redraws_at_most_once_per_interval(monkeypatch):
    monkeypatch.setattr(sys, "stdout", Pipe())
    bar = progress.LogFriendlyProgressBar()
    bar.init_train_tqdm().close()  # records the mode
    assert [bar._should_update(n, 200) for n in range(1, 201)].count(True) == 2  # first, last
    assert progress.LogFriendlyProgressBar(refresh_rate=0)._should_update(200, 200) is False


def test_lightning_bar_is_importable_by_name():
    """``class_path: lemon_pl.core.progress.LogFriendlyProgressBar`` in a config, and pickling."""
    import importlib
    import pickle

    from lightning.pytorch.callbacks import TQDMProgressBar

    cls = getattr(importlib.import_module("lemon_pl.core.progress"), "LogFriendlyProgressBar")
    assert issubclass(cls, TQDMProgressBar) and cls is progress.LogFriendlyProgressBar
    assert type(pickle.loads(pickle.dumps(cls(interval=5)))) is cls
