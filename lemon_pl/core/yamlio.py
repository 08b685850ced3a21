"""Reading the YAML files a user passes, with one line for every way one can be unusable.

Every YAML file that a user names (stage configs and overlays of ``lemon-pl fit|test|...
--config``, the files they compose through ``defaults:``, ``lemon-pl experiment
--experiment-config`` and ``--config``, ``lemon-pl multilevel plan --config``) is read by
:func:`read_yaml`. It raises :class:`YamlFileError`, a ``ValueError`` whose message is one line
that names the file and says what is wrong:

* a syntax error: ``FILE: YAML syntax error (line L, column C): PROBLEM``;
* a missing file, a folder, something that is no regular file (``/dev/zero``), a file too big to
  be a config (more than :data:`MAX_BYTES`), unreadable bytes (not UTF-8 text);
* an empty file (only comments) where settings are needed, a top level that is not a mapping.

:func:`config_chain` also follows ``defaults:`` (paths relative to the file that lists them,
applied before it), refusing a missing entry and a file that includes itself. Files are read
with ``yaml.safe_load``: no tag can build a Python object.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

#: the largest YAML file read (bytes); config files are a few kilobytes
MAX_BYTES = 16 * 1024 * 1024


class YamlFileError(ValueError):
    """A user's YAML file cannot be used; ``str(err)`` is one line naming the file."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.path, self.line, self.column = path, line, column


def _text(path: Path, what: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise YamlFileError(f"{what} does not exist: {path}", path) from None
    except OSError as err:
        raise YamlFileError(f"cannot read {what} {path}: {err.strerror or err}", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise YamlFileError(f"{what} {path} is a directory, not a YAML file", path)
    if not stat.S_ISREG(st.st_mode):
        raise YamlFileError(f"{what} {path} is not a regular file", path)
    if st.st_size > MAX_BYTES:
        raise YamlFileError(f"{what} {path} holds {st.st_size} bytes, more than a YAML config may "
                            f"({MAX_BYTES}); is it the right file?", path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise YamlFileError(f"cannot read {what} {path}: {err.strerror or err}", path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise YamlFileError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}); "
                            f"is it a YAML {what}?", path, line) from None


def _syntax_error(path: Path, err: Exception, text: str) -> YamlFileError:
    import yaml

    if isinstance(err, yaml.reader.ReaderError):  # a control character: no mark, a position
        before = text[: err.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
        return YamlFileError(f"{path}: YAML syntax error (line {line}, column {column}): unacceptable character "
                             f"#x{char:04x}: {err.reason}", path, line, column)
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or str(err).splitlines()[0]
    # a tag safe_load does not build (``!!python/object``...) is refused like a syntax error
    kind = "unsupported YAML tag" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
    if mark is not None:
        return YamlFileError(f"{path}: {kind} (line {mark.line + 1}, column {mark.column + 1}): {problem}",
                             path, mark.line + 1, mark.column + 1)
    return YamlFileError(f"{path}: {kind}: {problem}", path)


def read_yaml(path: str | os.PathLike, what: str = "config file", mapping: bool = True,
              empty_ok: bool = True) -> Any:
    """The content of a user's YAML file (``yaml.safe_load``), or one :class:`YamlFileError`.

    ``mapping``: the top level must be a mapping (an empty file gives ``{}``); ``empty_ok=False``
    refuses a file without content (empty or only comments). ``what`` names the file in
    messages (``config file``, ``experiment config``)."""
    import yaml

    path = Path(path)
    text = _text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _syntax_error(path, err, text) from None
    except RecursionError:
        raise YamlFileError(f"{path}: not valid YAML (nested too deeply)", path) from None
    except (ValueError, OverflowError) as err:  # e.g. a date no calendar has
        raise YamlFileError(f"{path}: not valid YAML ({type(err).__name__}: {str(err)[:120]})", path) from None
    if data is None:
        if not empty_ok:
            raise YamlFileError(f"{what} {path} is empty (no settings)", path)
        return {} if mapping else None
    if mapping and not isinstance(data, dict):
        kind = {list: "a list", str: "a string"}.get(type(data), f"a {type(data).__name__}")
        raise YamlFileError(f"{path}: the top level must be a mapping of keys to values, not {kind}", path, 1, 1)
    return data


def defaults_of(path: str | os.PathLike, data: dict) -> list[Path]:
    """The files named by the ``defaults:`` entry of ``data`` (read from ``path``), relative to it."""
    path = Path(path)
    entries = data.get("defaults")
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        raise YamlFileError(f"{path}: defaults must be a file name or a list of file names, got {entries!r}"[:300],
                            path)
    out = []
    for entry in entries:
        dep = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not dep.exists():
            raise YamlFileError(f"{path}: its defaults entry {entry} does not exist ({dep})", path)
        out.append(dep)
    return out


def config_chain(path: str | os.PathLike, what: str = "config file", empty_ok: bool = False,
                 _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """``path`` and every file it composes through ``defaults:``, in the order they apply
    (defaults first, depth first, then the file), each read by :func:`read_yaml`."""
    path = Path(path)
    data = read_yaml(path, what, mapping=True, empty_ok=empty_ok)
    resolved = path.resolve()
    if resolved in _seen:
        raise YamlFileError(f"{path}: its defaults include it again ({' -> '.join(map(str, (*_seen, resolved)))})",
                            path)
    out: list[tuple[Path, dict]] = []
    for dep in defaults_of(path, data):
        out += config_chain(dep, what, empty_ok, (*_seen, resolved))
    return out + [(path, data)]


def merged(base: dict, over: dict | None) -> dict:
    """``base`` with ``over`` laid on top, mappings merged key by key at every depth (later wins);
    neither input is modified. How the sections of one YAML file combine (e.g. an experiment
    config's ``common`` and a scale)."""
    out = dict(base)
    for key, value in (over or {}).items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


__all__ = ["MAX_BYTES", "YamlFileError", "config_chain", "defaults_of", "merged", "read_yaml"]
