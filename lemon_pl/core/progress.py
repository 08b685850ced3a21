"""Progress bars that stay readable when the output is not a terminal.

On a terminal, tqdm redraws one line in place with carriage returns, which is what a person
watching wants. In a log (CI, a batch job, ``| tee``) every redraw is kept: thousands of
``\\r``-separated updates in one enormous "line". This module's one job is the policy that
tells the two apart and, off a terminal, turns bars into a few newline-terminated lines:

* :func:`interactive` -- is the stream a TTY (``LEMON_PROGRESS=tty|1`` or ``log|0`` overrides)?
* :func:`bar_kwargs` -- the keyword arguments to give ``tqdm(...)`` for that stream: none on a
  TTY; off one, a long ``mininterval`` (:data:`LOG_INTERVAL`), ``ascii=True``, and a
  :class:`LineWriter` as ``file``, which writes each shown update as its own line, at most one
  per interval, plus the bar's final state when it closes.
* :class:`LogFriendlyProgressBar` -- Lightning's ``TQDMProgressBar`` with the same policy
  (identical to it on a TTY).
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from typing import Any, Callable, TextIO

#: Environment variable that overrides TTY detection: ``tty``/``1`` or ``log``/``0``.
ENV_VAR = "LEMON_PROGRESS"
#: Off a TTY, at most one progress line per this many seconds (plus each bar's final line).
LOG_INTERVAL = 30.0

_FORCE_TTY = {"tty", "1"}
_FORCE_LOG = {"log", "0"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # tqdm's cursor moves (nested bars)
_BREAKS = re.compile(r"([\r\n])")


def interactive(stream: TextIO | None = None) -> bool:
    """Whether progress on ``stream`` (default ``sys.stderr``, where tqdm writes) is for a person
    at a terminal. ``LEMON_PROGRESS=tty`` (or ``1``) forces yes, ``log`` (or ``0``) forces no;
    anything else (or unset) asks ``stream.isatty()``."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in _FORCE_TTY:
        return True
    if forced in _FORCE_LOG:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


class LineWriter:
    """A file-like ``tqdm(file=...)`` target that turns in-place redraws into log lines.

    tqdm draws a bar as ``"\\r" + text`` (padded with spaces) and ends a kept bar with
    ``"\\n"``. This writer keeps the latest drawn text and writes it to ``stream`` as one
    newline-terminated line when at least ``interval`` seconds have passed since its last
    line, or when tqdm ends the line (a bar closed with ``leave=True``), or on
    :meth:`commit`. Superseded redraws are dropped, blank redraws (a bar clearing itself)
    print nothing, cursor-movement escapes are stripped, and a line equal to the previous one
    is not repeated. So a short job logs just its final line and a long one about one line
    per ``interval``.
    """

    def __init__(self, stream: TextIO, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval = interval
        self._clock = clock
        self._lock = threading.RLock()
        self._pending = ""        # the text of the current (last drawn) line
        self._unshown = False     # whether _pending holds something not yet written
        self._last_line: str | None = None
        self._last_t = clock()    # the clock starts now: the first line waits an interval too

    def write(self, s: str) -> int:
        with self._lock:
            for part in _BREAKS.split(_ANSI.sub("", str(s))):
                if part == "\r":      # a redraw starts: forget the superseded text
                    self._pending, self._unshown = "", False
                elif part == "\n":    # tqdm ends the line (close with leave=True): keep it
                    self.commit()
                    self._pending = ""
                elif part:
                    self._pending += part
                    self._unshown = self._unshown or bool(part.strip())
            if self._unshown and self._clock() - self._last_t >= self.interval:
                self.commit()
        return len(s)

    def commit(self) -> None:
        """Write the latest drawn text now, if it has not been written yet."""
        with self._lock:
            line = self._pending.strip()
            if self._unshown and line and line != self._last_line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_line = line
                self._last_t = self._clock()
            self._unshown = False

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str | None:
        return getattr(self.stream, "encoding", None)


def bar_kwargs(stream: TextIO | None = None, interval: float = LOG_INTERVAL) -> dict[str, Any]:
    """Keyword arguments for ``tqdm(...)`` writing to ``stream`` (default ``sys.stderr``).

    ``{}`` when :func:`interactive`; otherwise ``file`` (a :class:`LineWriter` around
    ``stream``), ``mininterval``/``maxinterval`` of ``interval`` seconds and ``ascii=True``.
    Call it once per bar (each bar gets its own writer).
    """
    stream = sys.stderr if stream is None else stream
    if interactive(stream):
        return {}
    return {"file": LineWriter(stream, interval), "mininterval": interval, "maxinterval": interval,
            "ascii": True}


def _define_progress_bar():
    # Lightning (and torch) are imported only when the bar is asked for, so the tools that use
    # just ``bar_kwargs`` (``lemon-pl generate``) do not pay seconds of imports for it.
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class LogFriendlyProgressBar(TQDMProgressBar):
        """Lightning's TQDM progress bar, readable in logs.

        On a TTY (Lightning's bars write to ``sys.stdout``; see :func:`interactive`) it is exactly
        ``TQDMProgressBar``. Off one, each bar is built with :func:`bar_kwargs` (a
        :class:`LineWriter`, at position 0 so there are no cursor moves, no dynamic width), bars
        are redrawn at most once per ``interval`` seconds instead of every ``refresh_rate``
        batches (and always at a loop's last batch), and each finished training epoch leaves one
        line. A short ``fit`` then logs one line per epoch; a long epoch about one per interval.
        ``validate``/``test``/``predict`` leave their final line, as on a terminal; the sanity
        check and the validation inside ``fit`` (whose metrics reach the epoch line) leave none.
        """

        def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                     interval: float = LOG_INTERVAL):
            super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
            self.interval = interval
            self._log_mode = False
            self._last_redraw = -math.inf

        # -- bars
        def _log_kwargs(self) -> dict[str, Any]:
            """``bar_kwargs`` for ``sys.stdout`` (``{}`` on a TTY); records the mode."""
            kw = bar_kwargs(sys.stdout, self.interval)
            self._log_mode = bool(kw)
            if kw:
                kw.update(position=0, dynamic_ncols=False, disable=self.is_disabled,
                          bar_format=self.BAR_FORMAT)
            return kw

        def init_sanity_tqdm(self) -> Tqdm:
            kw = self._log_kwargs()
            if not kw:
                return super().init_sanity_tqdm()
            return Tqdm(desc=self.sanity_check_description, leave=False, **kw)

        def init_train_tqdm(self) -> Tqdm:
            kw = self._log_kwargs()
            if not kw:
                return super().init_train_tqdm()
            return Tqdm(desc=self.train_description, leave=True, smoothing=0, **kw)

        def init_predict_tqdm(self) -> Tqdm:
            kw = self._log_kwargs()
            if not kw:
                return super().init_predict_tqdm()
            return Tqdm(desc=self.predict_description, leave=True, smoothing=0, **kw)

        def init_validation_tqdm(self) -> Tqdm:
            kw = self._log_kwargs()
            if not kw:
                return super().init_validation_tqdm()
            return Tqdm(desc=self.validation_description, leave=self.trainer.state.fn == "validate", **kw)

        def init_test_tqdm(self) -> Tqdm:
            kw = self._log_kwargs()
            if not kw:
                return super().init_test_tqdm()
            return Tqdm(desc="Testing", leave=True, **kw)

        # -- policy off a TTY
        def _should_update(self, current: int, total: int) -> bool:
            if not super()._should_update(current, total):
                return False
            if not self._log_mode or current == total:
                return True
            now = time.monotonic()
            if now - self._last_redraw < self.interval:
                return False
            self._last_redraw = now
            return True

        def on_train_epoch_start(self, trainer, *args: Any) -> None:
            # the epoch that just ended leaves its line (last batch + epoch-end metrics) before the reset
            bar = self._train_progress_bar
            if self._log_mode and bar is not None and not bar.disable and bar.n > 0:
                writer = getattr(bar.fp, "_wrapped", bar.fp)  # tqdm wraps the file
                if isinstance(writer, LineWriter):
                    writer.commit()
            super().on_train_epoch_start(trainer, *args)

    return LogFriendlyProgressBar


def __getattr__(name: str):
    if name == "LogFriendlyProgressBar":
        cls = globals()["LogFriendlyProgressBar"] = _define_progress_bar()
        cls.__module__, cls.__qualname__ = __name__, name  # importable and picklable by this name
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENV_VAR", "LOG_INTERVAL", "LineWriter", "LogFriendlyProgressBar", "bar_kwargs", "interactive"]
