"""One line for a config error: which file (or the command line), which key, what is wrong.

jsonargparse reports config problems as multi-line reports (and argparse adds a screen of
usage); :func:`describe` turns its ``ArgumentError`` into one line, with the closest valid
option for a misspelled one.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Any, Sequence



def config_files(argv: Sequence[str]) -> list[Path]:
    """The ``--config`` files of an argument list, in order."""
    out = []
    for i, a in enumerate(argv):
        if a in ("--config", "-c") and i + 1 < len(argv):
            out.append(Path(argv[i + 1]))
        elif a.startswith("--config="):
            out.append(Path(a.split("=", 1)[1]))
    return out


def _load(path: Path) -> Any:
    from lemon_pl.core.yamlio import YamlFileError, read_yaml

    try:
        return read_yaml(path, mapping=False)
    except YamlFileError:
        return None


def _has_key(tree: Any, key: str) -> bool:
    """Whether a YAML tree sets the dotted ``key`` (``init_args`` levels may be written or not)."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict):
            return False
        if part not in node and isinstance(node.get("init_args"), dict):
            node = node["init_args"]
        if part not in node:
            return False
        node = node[part]
    return True


def where(key: str, argv: Sequence[str]) -> str:
    """``in FILE`` for the last config file that sets ``key``, else ``on the command line``."""
    flag = f"--{key}"
    if any(a == flag or a.startswith(flag + "=") for a in argv):
        return "on the command line"
    for path in reversed(config_files(argv)):
        if _has_key(_load(path), key):
            return f"in {path}"
    return "in the config"


def _class_params(class_path: str) -> list[str]:
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [n for n in inspect.signature(cls).parameters if n not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def _candidates(key: str, parser, argv: Sequence[str]) -> list[str]:
    """Valid option names near ``key``: the parser's, and the init arguments of named classes."""
    names = [a.dest for a in getattr(parser, "_actions", []) if isinstance(getattr(a, "dest", None), str)]
    head, _, _ = key.rpartition(".")
    if ".init_args" in key or head in ("model", "data") or head.startswith(("model.", "data.")):
        owner = head[: -len(".init_args")] if head.endswith(".init_args") else head
        for path in config_files(argv):
            node: Any = _load(path)
            for part in owner.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get("class_path"):
                names += [f"{owner}.init_args.{n}" for n in _class_params(node["class_path"])]
    return names


def describe(err: BaseException, argv: Sequence[str], parser=None) -> str:
    """One line for a jsonargparse/argparse error of a ``lemon-pl`` Lightning command."""
    msg = str(err).strip()
    files = config_files(argv)
    if msg.startswith("Unexpected config") or msg == "":
        empty = [f for f in files if f.is_file() and not (f.read_text().strip())]
        if empty:
            return f"config file {empty[0]} is empty"
        return f"a config file holds no settings ({msg or 'nothing parsed'})"
    if msg.startswith("Problems parsing config"):
        from lemon_pl.core.yamlio import YamlFileError, read_yaml

        for f in files:
            try:
                read_yaml(f, mapping=False)
            except YamlFileError as y:
                return str(y)
        return msg.splitlines()[0]
    m = re.search(r"does not accept option '([^']+)'", msg) or re.search(r"[Uu]nrecognized arguments: (\S+)", msg)
    if m:
        key = m.group(1).lstrip("-").split("=")[0]
        close = difflib.get_close_matches(key, _candidates(key, parser, argv), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown option {key} {where(key, argv)}{hint}"
    m = re.match(r'Parser key "([^"]+)":\s*(.*)', msg, re.S)
    if m:
        key, body = m.group(1), m.group(2)
        if key == "config":
            return body.splitlines()[0].replace("File does not exist", "config file does not exist")
        key, cls, detail, given = _dig(key, body)
        bad = re.match(r"Option '([\w.]+)' is not accepted", detail or "")
        if bad:
            full = f"{key}.init_args.{bad.group(1)}"
            close = difflib.get_close_matches(full, _candidates(full, parser, argv), n=1, cutoff=0.6)
            return f"unknown option {full} {where(full, argv)}" + (f"; did you mean {close[0]}?" if close else "")
        what = f"{cls}: {detail}" if cls and detail and "class" not in detail else (detail or "invalid value")
        if given is not None and detail and detail.startswith("Expected") and "Got value" not in detail:
            what += f", got {given!r}"
        return f"{key} {where(key, argv)}: {what}"
    return msg.splitlines()[0]


_STRUCTURE = ("Does not validate", "Subtypes:", "Errors:", "Given value type", "Expected a <class 'NoneType'>")


def _dig(key: str, body: str) -> tuple[str, str | None, str | None, str | None]:
    """The innermost key (``a.init_args.b``), class and message of a nested jsonargparse report."""
    path, cls, detail, given = [key], None, None, None
    for raw in body.splitlines():
        t = raw.strip().lstrip("- ").strip()
        if not t:
            continue
        m = re.match(r'Parser key "([^"]+)":\s*(.*)', t)
        if m:
            path.append(m.group(1))
            if m.group(2):
                detail = m.group(2)
            continue
        m = re.match(r"Problem with given class_path '([^']+)':?\s*(.*)", t)
        if m:
            cls = m.group(1)
            if m.group(2):
                detail = m.group(2)
            continue
        if t.startswith("Given value:"):
            given = given if given is not None else t.split(":", 1)[1].strip()
            continue
        if t.startswith(_STRUCTURE):
            continue
        if detail is None:
            detail = t
    return ".init_args.".join(path), cls, detail, given
