"""The Lightning CLI behind ``lemon-pl fit|validate|test|predict``.

Any ``LightningModule`` (``model.class_path``) and any ``LightningDataModule``
(``data.class_path``) can be run. Values derived from the data reach the model through
instantiation links: a data module declares their names in a class attribute ``model_links``
(e.g. ``("nx", "vocab_size", "unit")``), and each one is linked from the instantiated data
module's attribute of that name to the stage's constructor argument of that name and to its
network's (``model.init_args.net``), wherever that constructor takes it - nowhere else.

Config files compose: a config may list ``defaults`` (paths relative to it), which are applied
before it, so that its own keys, later ``--config`` overlays and ``--key value`` flags win. This
is how the network (``configs/model/prose.yaml``) and the callbacks
(``configs/callbacks/default.yaml``) are defined once for every stage config. (The defaults are
spliced into the argument list as ``--model CLASS --config DEFAULT ...`` before the file: the
network can only be parsed once the stage class is known.)
"""

from __future__ import annotations

import errno
import importlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from lemon_pl.core.loggers import wandb_logger

#: where a linked value may land: the stage's own argument, and its network's
LINK_TARGETS = ("model.init_args.{name}", "model.init_args.net.init_args.{name}")


def _run_file(trainer: Trainer, name: str) -> Path:
    """Where the resolved config goes: the W&B run's files folder (uploaded with the run; W&B keeps
    its own ``config.yaml`` there, hence the prefix), else the logger's versioned log_dir."""
    lg = wandb_logger(trainer)
    folder = getattr(lg.experiment, "dir", None) if lg is not None else None
    if folder:
        return Path(folder) / f"lemon_{name}"
    return Path(trainer.log_dir or "runs") / name


class LemonSaveConfig(SaveConfigCallback):
    """Write the resolved config into the run's own folder (never a shared root) and to W&B."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = _run_file(trainer, self.config_filename)
        self.config.defaults = None  # already applied: the saved config is complete on its own
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.multifile:
                self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=True)
            else:  # complete or not there; a full disk is one line
                from lemon_pl.core.checkpointing import atomic_write

                atomic_write(path, self.parser.dump(self.config, skip_none=False))
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        lg = wandb_logger(trainer)
        if lg is not None:
            cfg = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            lg.experiment.config.update(cfg, allow_val_change=True)


_PARSER = None  # the parser of the current command (for one-line config errors)
_TRAINER = None  # the trainer of the current command (to tidy its run folder after a failure)


def _default(class_path: str | None, name: str) -> Any:
    """The constructor default of argument ``name`` of ``class_path``, looked up through the base
    classes when a constructor passes ``**kwargs`` on (``inspect._empty`` if none)."""
    import inspect

    if not class_path:
        return inspect.Parameter.empty
    module, _, cls_name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError, ValueError):
        return inspect.Parameter.empty
    for klass in getattr(cls, "__mro__", (cls,)):
        try:
            param = inspect.signature(klass).parameters.get(name)
        except (ValueError, TypeError):
            continue
        if param is not None and param.kind is not param.VAR_KEYWORD:
            return param.default
    return inspect.Parameter.empty


def preflight_checkpoint(model: LightningModule, ckpt_path: str) -> None:
    """Refuse a checkpoint that cannot load into ``model`` before the run writes anything."""
    from lemon_pl.core.checkpointing import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    hook = getattr(model, "on_load_checkpoint", None)
    if hook is not None:
        hook(dict(ckpt))  # the stages' hooks check (and may rewrite) a shallow copy


def model_links(data_class_path: str | None) -> tuple[str, ...]:
    """The names a data module class declares in ``model_links`` (empty if it declares none)."""
    if not data_class_path:
        return ()
    module, _, name = str(data_class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return ()  # jsonargparse reports an unknown class path itself
    return tuple(getattr(cls, "model_links", ()))


def compose_defaults(argv: Sequence[str], notes: list[str] | None = None) -> list[str]:
    """``argv`` with every ``--config FILE`` that lists ``defaults`` preceded by them (see module doc),
    and every file that names classes of an earlier lemon-pl (``lemon_pl.modules...``) passed as
    its translated content (:mod:`lemon_pl.cli.legacy`; one line per such file appended to ``notes``).
    This is the one place ``--config`` files are composed: ``fit|validate|test|predict``, the
    experiment steps and the multi-level planner's pilot fits all come through it."""
    out: list[str] = []
    i = 0
    argv = list(argv)
    notes = [] if notes is None else notes
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            out += _expand(Path(argv[i + 1]), arg, seen=(), notes=notes)
            i += 2
            continue
        if arg.startswith("--config="):
            out += _expand(Path(arg.split("=", 1)[1]), "--config", seen=(), notes=notes)
        else:
            out.append(arg)
        i += 1
    return out


def _expand(path: Path, flag: str, seen: tuple[Path, ...], notes: list[str]) -> list[str]:
    """``[flag, path]`` preceded by the expansion of the files ``path`` lists in ``defaults``. Every
    file is read by :func:`lemon_pl.core.yamlio.read_yaml`: a syntax error, an empty file, a top level
    that is no mapping, unreadable bytes, a folder are one :class:`~lemon_pl.core.yamlio.YamlFileError`
    line naming the file (and line and column). A missing file is left to jsonargparse, which
    reports it (``config file does not exist``); so is an inline YAML string. A file naming old
    class paths is passed as its translated YAML text."""
    from lemon_pl.cli.legacy import note, translate_class_path, translate_config
    from lemon_pl.core.yamlio import defaults_of, read_yaml

    try:  # an inline YAML document is no path (a long one is ENAMETOOLONG to the OS)
        on_disk = "\n" not in str(path) and (path.exists() or path.is_symlink())
    except OSError:
        on_disk = False
    if not on_disk:
        return [flag, str(path)]
    raw = read_yaml(path, "config file", mapping=True, empty_ok=False)
    translated, changed = translate_config(raw)
    this = [flag, str(path)]
    if changed:
        notes.append(note(str(path), changed))
        this = [flag, yaml.safe_dump(translated, sort_keys=False)]
    defaults = defaults_of(path, raw)
    if not defaults:
        return this
    if path.resolve() in seen:
        raise ValueError(f"{path}: its defaults include it again ({' -> '.join(map(str, seen))})")
    model = raw.get("model")
    out = (["--model", translate_class_path(model["class_path"])]
           if isinstance(model, dict) and model.get("class_path") else [])
    for dep in defaults:
        out += _expand(dep, flag, (*seen, path.resolve()), notes)
    return out + this


class LemonCLI(LightningCLI):
    def __init__(self, args: Sequence[str] | None = None, run: bool = True):
        notes: list[str] = []
        args = compose_defaults(sys.argv[1:] if args is None else args, notes)
        for line in dict.fromkeys(notes):
            print(f"lemon-pl: note: {line}", file=sys.stderr, flush=True)
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LemonSaveConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "yaml", "exit_on_error": False, "allow_abbrev": False},
            auto_configure_optimizers=False,  # each stage builds its optimiser (see modules.optim)
            args=args,
            run=run,
        )

    def parse_arguments(self, parser, args) -> None:
        global _PARSER
        _PARSER = parser
        subs = getattr(self, "_subcommand_parsers", {})
        if args and args[0] in subs:
            _PARSER = subs[args[0]]
        super().parse_arguments(parser, args)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--defaults", type=Optional[list[str]], default=None,
                            help="config files applied before this one (paths relative to it)")

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        from lemon_pl.core.checkpointing import AtomicCheckpointIO, RunIdentity
        from lemon_pl.core.progress import LogFriendlyProgressBar

        if not config.get("plugins"):
            config["plugins"] = [AtomicCheckpointIO()]  # checkpoints are written atomically
        from lemon_pl.core.callbacks import SaveOnInterrupt

        extra = [RunIdentity(), SaveOnInterrupt()]
        if self.subcommand == "predict":  # prediction.npz, figures and a summary, as `lemon-pl predict` writes
            from lemon_pl.predict.lightning import PredictionWriter

            if not any(isinstance(c, PredictionWriter) for c in [*callbacks, *(config.get("callbacks") or [])]):
                extra.append(PredictionWriter())
        from lightning.pytorch.callbacks import ProgressBar

        if config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])]):
            extra.append(LogFriendlyProgressBar())  # one line per ~30 s when output is not a terminal
        trainer = super()._instantiate_trainer(config, [*callbacks, *extra])
        logger = trainer.loggers[0] if trainer.loggers else None
        folder = getattr(logger, "log_dir", None) if logger is not None else None  # no collective call
        trainer._lemon_new_log_dir = Path(folder) if folder and not Path(folder).exists() else None
        return trainer

    def _subcommand_config(self):
        sub = self.config.get("subcommand") if hasattr(self, "_subcommand_parsers") else None  # run=False: none
        return sub, (self.config[sub] if sub else self.config)

    def before_instantiate_classes(self) -> None:
        sub, cfg = self._subcommand_config()
        self._linked = self._link_data_to_model(self._parser(sub), cfg)
        self._continue_wandb_run(sub, cfg)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        self._check_linked_values()
        global _TRAINER
        _TRAINER = getattr(self, "trainer", None)

    def _check_linked_values(self) -> None:
        """A value given for a linked argument that differs from the data's is an error (it would
        be replaced silently)."""
        for name, key, given, default in getattr(self, "_linked", []):
            value = getattr(self.datamodule, name, None)
            if given is not None and given != default and given != value and value is not None:
                raise ValueError(f"{key} is set to {given!r}, but it is linked from the data ({name} = {value!r}); "
                                 f"remove it (the data module sets it) or change data.init_args.{name}")

    def _run_subcommand(self, subcommand: str) -> None:
        """Checks that can fail run before anything is written into a run folder."""
        sub_cfg = self.config.get(subcommand, {})
        ckpt = sub_cfg.get("ckpt_path") if hasattr(sub_cfg, "get") else None
        if ckpt and ckpt not in ("best", "last", "hpc", "registry"):
            preflight_checkpoint(self.model, ckpt)
        elif subcommand in ("validate", "test", "predict") and not getattr(self.model.hparams, "init_from", None):
            print(f"lemon-pl: warning: `{subcommand}` without --ckpt_path evaluates the model as constructed "
                  "(random weights unless init_from is set)", file=sys.stderr, flush=True)
        super()._run_subcommand(subcommand)

    @staticmethod
    def _link_data_to_model(parser, cfg) -> list[tuple[str, str, Any, Any]]:
        """Instantiation links for the names the chosen data module declares (see module doc).

        A target exists only if the chosen class's constructor takes it, so a network without a
        ``vocab_size`` argument never receives one."""
        data = cfg.get("data")
        linked = []
        for name in model_links(getattr(data, "class_path", None)):
            for target in LINK_TARGETS:
                key = target.format(name=name)
                if key in cfg:  # the parsed config holds exactly the arguments each constructor takes
                    parser.link_arguments(f"data.{name}", key, apply_on="instantiate")
                    owner = cfg.get(key.rsplit(".init_args.", 1)[0])
                    linked.append((name, key, cfg[key], _default(getattr(owner, "class_path", None), name)))
        return linked

    @staticmethod
    def _continue_wandb_run(sub, cfg) -> None:
        """Resuming with --ckpt_path continues the same W&B run (its id is stored in checkpoints)."""
        ckpt = cfg.get("ckpt_path") if sub else None
        logger = cfg.get("trainer", {}).get("logger") if hasattr(cfg, "get") else None
        if not ckpt or logger is None or isinstance(logger, (bool, list)):
            return
        if str(getattr(logger, "class_path", "")).endswith("WandbLogger"):
            args = logger.init_args
            if not args.get("id") and not args.get("version"):
                from lemon_pl.core.checkpointing import wandb_run_id

                run_id = wandb_run_id(ckpt)
                if run_id:
                    args["id"] = run_id

    def _parse_ckpt_path(self) -> None:
        """Keep the user's config: a checkpoint provides weights and training state only.

        (Lightning would overwrite the model's arguments with the checkpoint's hyperparameters,
        which breaks evaluating a pretraining checkpoint with few-shot settings.)
        """


def run_lightning_cli(argv: Sequence[str] | None = None) -> int:
    """Run the Lightning CLI; known user errors become one line on stderr and exit code 2."""
    global _PARSER, _TRAINER
    _PARSER = _TRAINER = None
    argv = list(sys.argv[1:] if argv is None else argv)
    failed = True
    try:
        with warnings.catch_warnings():  # argv is always passed explicitly (pipelines run steps in-process)
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            LemonCLI(args=argv)
        failed = False
    except _user_errors() as err:  # user errors: one line (LEMON_TRACEBACK=1 shows the traceback)
        if os.environ.get("LEMON_TRACEBACK"):
            raise
        print(f"lemon-pl: error: {error_line(err, argv)}", file=sys.stderr)
        return 2
    except OSError as err:  # a write no lemon-pl writer makes (a logger's file, ...) on a full or read-only disk
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or os.environ.get("LEMON_TRACEBACK"):
            raise
        where = f" while writing {err.filename}" if err.filename else ""
        print(f"lemon-pl: error: {os.strerror(err.errno)}{where}; free some space (or choose another "
              "--trainer.logger.init_args.save_dir) and resume with --ckpt_path <run>/checkpoints/last.ckpt",
              file=sys.stderr)
        return 2
    except SystemExit as err:
        if getattr(_TRAINER, "_lemon_interrupted", False):
            return 130  # Ctrl-C: the stage said where the state was saved
        raise
    finally:
        if failed:
            _tidy_failed_run(_TRAINER)
        _destroy_process_group()
    return 0


class BuildError(ValueError):
    """The model/data sections of a config cannot be built (one line: the root cause)."""


def build(model: dict, data: dict) -> tuple[LightningModule, LightningDataModule]:
    """The stage and data module that ``lemon-pl fit`` would build from a config's ``model`` and
    ``data`` sections (class paths, linked arguments, ``defaults`` already applied), without a
    trainer and without seeding. The sections are passed as ``--model JSON --data JSON``, not as an
    inline ``--config`` document. Raises :class:`BuildError` with the root cause in one line."""
    import json

    class _Build(LemonCLI):
        def instantiate_trainer(self, **kwargs):  # the stage and data only
            return None

    from lemon_pl.cli.legacy import translate_config

    model, data = translate_config(model)[0], translate_config(data)[0]  # a run of an earlier lemon-pl
    try:
        args = ["--model", json.dumps(model), "--data", json.dumps(data), "--seed_everything", "false"]
    except (TypeError, ValueError) as err:  # YAML dates, sets, ...: not a config the CLI wrote
        raise BuildError(f"the model/data sections hold values that are no plain data ({str(err).splitlines()[0]})"
                         ) from None
    try:
        with warnings.catch_warnings():  # args are passed explicitly, on purpose
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            cli = _Build(args=args, run=False)
    except SystemExit as err:
        raise BuildError(f"the model/data sections do not parse ({err})") from None
    except Exception as err:  # noqa: BLE001 - jsonargparse wraps constructor errors: report the root
        from argparse import ArgumentError

        if isinstance(err, (ArgumentError, ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError)):
            raise BuildError(f"cannot rebuild the stage ({_root_message(err)})") from None
        raise
    return cli.model, cli.datamodule


class ComposeError(ValueError):
    """A config cannot be composed (one line, as ``lemon-pl fit`` would print it after ``error:``)."""


def compose(argv: Sequence[str]) -> tuple[dict, dict[str, str]]:
    """The config ``lemon-pl fit ARGV`` would run with, composed and parsed by the same CLI
    (``defaults:``, later ``--config`` files and ``--key value`` flags win, old class paths read as
    today's, every class's defaults filled in) but nothing built: ``(config, sources)``, the config
    as the plain mapping a run's ``config.yaml`` holds and, for every dotted key a ``--config`` file
    sets, the last file that sets it (for messages). A config that does not parse is one
    :class:`ComposeError` line. Every lemon-pl tool that reads stage configs composes them here."""
    from lemon_pl.core.yamlio import read_yaml

    argv = list(argv)
    body = argv[1:] if argv and argv[0] in ("fit", "validate", "test", "predict") else argv

    class _Parse(LemonCLI):
        def _set_seed(self) -> None:  # composing never seeds the caller's random state
            pass

        def before_instantiate_classes(self) -> None:  # nothing is built: no links, no W&B run
            pass

        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

    global _PARSER
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            cli = _Parse(args=body, run=False)
        config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False, skip_validation=True))
    except _user_errors() as err:
        raise ComposeError(error_line(err, ["fit", *body]).splitlines()[0]) from None
    finally:
        _PARSER = None
    sources: dict[str, str] = {}
    expanded = compose_defaults(body)
    for flag, value in zip(expanded, expanded[1:]):
        if flag in ("--config", "-c") and "\n" not in value and Path(value).is_file():
            for key in _dotted(read_yaml(value, "config file", mapping=True, empty_ok=False)):
                sources[key] = value
    return config, sources


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.append(key)
        if isinstance(v, dict):
            out += _dotted(v, key + ".")
    return out


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are a user's error (a bad config, file, value): one line, exit 2."""
    from argparse import ArgumentError

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lemon_pl.data.io import DataFileError
    from lemon_pl.core.errors import CheckpointMismatchError, CheckpointWriteError, NonFiniteLossError

    return (ArgumentError, DataFileError, CheckpointMismatchError, CheckpointWriteError, NonFiniteLossError,
            FileNotFoundError, MisconfigurationException, ValueError, KeyError)


def error_line(err: BaseException, argv: Sequence[str]) -> str:
    """The one line (after ``lemon-pl: error: ``) for a user error of ``lemon-pl ARGV``; a config
    error (jsonargparse's ``ArgumentError``) is followed by a hint to ``--help`` on a second line."""
    from argparse import ArgumentError

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, ArgumentError):  # config errors: file, key, what is wrong (no screen of usage)
        from lemon_pl.cli.config_errors import describe

        sub = argv[0] if argv and not argv[0].startswith("-") else "fit"
        return f"{describe(err, compose_defaults(argv), _PARSER)}\n  (lemon-pl {sub} --help lists the options)"
    msg = _root_message(err)
    if isinstance(err, MisconfigurationException) and re.search(r"gpu|cuda|accelerator", msg, re.I):
        msg += " (on a machine without a GPU use --config configs/trainer/cpu.yaml)"
    return msg


def check_lightning_args(argv: Sequence[str]) -> str | None:
    """What ``lemon-pl fit|validate|test ARGV`` would refuse before it runs, without running it:
    the config files (and their ``defaults``) are read, the options parsed and checked, and the
    model, data module and trainer built (their constructors check their values; nothing is
    trained, no data set up, no run folder written). Returns the error's first line (the
    message after ``lemon-pl: error: ``) or ``None`` when the command would start."""
    import logging

    global _PARSER, _TRAINER
    argv = list(argv)
    body = argv[1:] if argv and argv[0] in ("fit", "validate", "test", "predict") else argv
    _PARSER = _TRAINER = None
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:  # no "GPU available" lines: nothing runs
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            LemonCLI(args=body, run=False)
    except _user_errors() as err:
        return error_line(err, argv).splitlines()[0]
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
        _PARSER = _TRAINER = None
        _destroy_process_group()
    return None


#: files a run writes before it has done anything worth keeping
_SETUP_FILES = {"config.yaml", "hparams.yaml"}


def _tidy_failed_run(trainer) -> None:
    """Remove the run folder a failed command created if it holds nothing but setup files, so that
    failures leave no empty ``version_N/``. A folder that existed before the command is never touched."""
    if trainer is None or not trainer.is_global_zero:
        return
    folder = getattr(trainer, "_lemon_new_log_dir", None)
    if folder is None or not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file()]
    if all(p.name in _SETUP_FILES for p in files):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _destroy_process_group() -> None:
    """Tear the DDP process group down before the interpreter exits (Lightning leaves it up):
    gloo's threads destroyed during interpreter shutdown can abort the process ("terminate
    called without an active exception"), and in-process pipelines start each step afresh."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - teardown is best effort
            pass


def _root_message(err: BaseException) -> str:
    """The innermost cause's message (jsonargparse wraps constructor errors in long reports)."""
    seen = err
    while True:
        nxt = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
        if nxt is None:
            break
        seen = nxt
    msg = str(seen.args[0]) if isinstance(seen, KeyError) and seen.args else str(seen)
    return msg.strip().splitlines()[0] if msg.strip() else type(seen).__name__
