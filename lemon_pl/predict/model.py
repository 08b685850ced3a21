"""A trained stage, rebuilt from its run, predicting from initial conditions and equation tokens.

:meth:`Predictor.load` rebuilds the stage exactly as the training run did: the run's resolved
``config.yaml`` (by default ``<run>/config.yaml`` next to ``<run>/checkpoints/<ckpt>``) through
the same CLI (``LemonCLI``: defaults, data -> model links, the network), without a trainer; the
checkpoint is then loaded as data (``load_checkpoint``) through the stage's own
``on_load_checkpoint`` (LoRA adapters onto their base, network mismatches refused in one line).
Grid and frame layout come from the run's data module: ``nx``, ``nt``, the input and predicted
frames, all in stored time ``s = c_t * t``.

Batches are built as the data engine builds them (``datasets.normalise``: the input frames'
mean and standard deviation), predictions are de-normalised; few-shot adaptation runs the stage's
own code path (``adapt_then_predict`` with the stage's adapted parameters and rate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lemon_pl.data.datasets import FrameLayout, normalise
from lemon_pl.data.symbols import PAD_ID


class ModelLoadError(ValueError):
    """The checkpoint or its run's config cannot be used (the message names the file)."""


#: forward passes of ``lemon-pl predict`` take at most this many rows at once (activations bounded)
CHUNK = 256


def read_run_config(path: Path, flag: str = "") -> dict:
    """A run's ``config.yaml`` as a mapping with ``model`` and ``data`` sections, or one
    :class:`ModelLoadError` line (``flag``, ``--run-config``, first when the user named the file):
    read by the shared :func:`lemon_pl.core.yamlio.read_yaml` (no regular file, too big, not UTF-8, a
    YAML syntax error with its line and column, a top level that is no mapping), then the sections."""
    from lemon_pl.core.yamlio import YamlFileError, read_yaml

    what = flag.strip() or "run config"
    try:
        raw = read_yaml(path, what, mapping=True, empty_ok=False)
    except YamlFileError as err:
        msg = str(err)
        raise ModelLoadError(msg if not flag or msg.startswith(what) else f"{flag}{msg}") from None
    if not isinstance(raw.get("model"), dict) or not isinstance(raw.get("data"), dict):
        raise ModelLoadError(f"{flag}{path} is not a lemon-pl run config (it needs 'model' and 'data' sections)")
    return raw


@dataclass
class Predictor:
    stage: torch.nn.Module  # an OperatorModule
    layout: FrameLayout
    nx: int
    ckpt_path: Path
    config_path: Path
    device: torch.device

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, ckpt_path: str | Path, config: str | Path | None = None, device: str = "cpu",
             build: Callable | None = None) -> "Predictor":
        """The stage of ``ckpt_path``'s run on ``device``, built from the run's config by ``build(model,
        data) -> (stage, datamodule)`` (the console script passes ``lemon_pl.cli.lightning.build``;
        this package never imports ``lemon_pl.cli``). Checked in this order, each failure one
        :class:`ModelLoadError` line naming the flag or file: the device string, the checkpoint path
        (a file), the run config (a YAML file, syntax errors with ``FILE:LINE:COLUMN``), the
        checkpoint's content (a readable plain checkpoint: :func:`~lemon_pl.core.checkpointing.load_checkpoint`,
        read as data before anything is built), the stage the config builds, the fit of the weights."""
        from lemon_pl.core.checkpointing import load_checkpoint
        from lemon_pl.core.devices import DeviceError, check_device
        from lemon_pl.core.errors import CheckpointMismatchError

        try:
            dev = check_device(device)
        except DeviceError as err:
            raise ModelLoadError(str(err)) from None
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.exists():
            raise ModelLoadError(f"--ckpt_path {ckpt_path} does not exist")
        if ckpt_path.is_dir():
            found = sorted(p.name for p in ckpt_path.glob("*.ckpt"))[:3]
            hint = f" (it holds {', '.join(found)})" if found else ""
            raise ModelLoadError(f"--ckpt_path {ckpt_path} is a directory, not a checkpoint file{hint}")
        if not ckpt_path.is_file():
            raise ModelLoadError(f"--ckpt_path {ckpt_path} is not a regular file")
        config_path = Path(config) if config else ckpt_path.resolve().parent.parent / "config.yaml"
        flag = "--run-config " if config else ""
        if not config_path.exists() or (not config and not config_path.is_file()):
            how = "" if config else (f" (looked for the training run's config.yaml at {config_path}); pass it "
                                     "with --run-config")
            raise ModelLoadError(f"{flag}{config_path} does not exist{how}")
        raw = read_run_config(config_path, flag)
        try:
            ckpt = dict(load_checkpoint(ckpt_path))  # as data, before anything is built
        except CheckpointMismatchError as err:
            raise ModelLoadError(f"--ckpt_path {err}") from None
        except FileNotFoundError:
            raise ModelLoadError(f"--ckpt_path {ckpt_path} does not exist") from None
        if not isinstance(ckpt.get("state_dict", {}), dict):
            raise ModelLoadError(f"--ckpt_path {ckpt_path} is not a lemon-pl checkpoint (its 'state_dict' is no "
                                 "mapping)")
        if build is None:
            raise ModelLoadError("Predictor.load needs build=lemon_pl.cli.lightning.build (the CLI that trained "
                                 "the run)")
        stage, dm = _build(raw, config_path, build)
        if not is_operator_stage(stage):
            raise ModelLoadError(f"{config_path}: {type(stage).__name__} is not an operator-learning stage "
                                 "(lemon-pl predict runs PretrainModule, MetaModule, FinetuneModule and their kind)")
        stage.on_load_checkpoint(ckpt)  # checks the network, merges adapter-only LoRA checkpoints
        state = ckpt.get("state_dict") or {}
        missing, unexpected = stage.load_state_dict(state, strict=False)
        if [k for k in missing if k.startswith("net.")] or unexpected:
            raise CheckpointMismatchError(f"{ckpt_path} does not fit the stage of {config_path} "
                                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        stage.to(dev).eval()
        layout = dm.layout
        return cls(stage, layout, int(dm.nx), ckpt_path, config_path, dev)

    # ------------------------------------------------------------------ properties
    @property
    def net(self) -> torch.nn.Module:
        return self.stage.net

    @property
    def nt(self) -> int:
        return int(self.layout.nt)

    @property
    def stage_class(self) -> str:
        return type(self.stage).__name__

    @property
    def net_class(self) -> str:
        return type(self.net).__name__

    @property
    def reads_equation(self) -> bool:
        return bool(getattr(self.net, "uses_equation", False))

    @property
    def frames(self) -> np.ndarray:
        """Stored frames of a prediction: the input frames, then the predicted ones."""
        return np.concatenate([self.layout.input_idx, self.layout.output_idx])

    @property
    def stored_times(self) -> np.ndarray:
        """Model time of each frame of :attr:`frames` (2k/nt)."""
        return self.frames * (2.0 / self.nt)

    # ------------------------------------------------------------------ batches
    def batch(self, frames: np.ndarray, tokens: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """A normalised sample batch from physical frames (B, nt_given, nx) - the input frames only
        (``nt_given == input_len``) or whole trajectories (``nt_given == nt``: targets too)."""
        frames = np.asarray(frames, dtype=np.float64)
        b = frames.shape[0]
        if frames.shape[1] == self.nt:
            u_in, u_out = self.layout.split(frames[:, self.layout.frames])
        else:
            u_in, u_out = frames, np.zeros((b, self.layout.output_len, self.nx))
        x_in, y, mean, std = normalise(u_in, u_out)
        length = max(len(t) for t in tokens)
        toks = torch.full((b, length), PAD_ID, dtype=torch.long)
        for i, t in enumerate(tokens):
            toks[i, :len(t)] = torch.as_tensor(list(t), dtype=torch.long)
        dev = self.device
        return {
            "u_in": torch.as_tensor(x_in, dtype=torch.float32, device=dev),
            "u_out": torch.as_tensor(y, dtype=torch.float32, device=dev),
            "mean": torch.as_tensor(mean, dtype=torch.float32, device=dev),
            "std": torch.as_tensor(std, dtype=torch.float32, device=dev),
            "t_in": self.layout.t_in.to(dev).expand(b, -1),
            "t_out": self.layout.t_out.to(dev).expand(b, -1),
            "tokens": toks.to(dev),
            "token_pad_mask": (toks == PAD_ID).to(dev),
        }

    @staticmethod
    def physical(pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """De-normalised predictions (B, n_out, nx) as float64."""
        from lemon_pl.core.metrics import denormalise

        return denormalise(pred, batch).double().cpu().numpy()

    # ------------------------------------------------------------------ prediction
    def predict(self, batch: dict[str, torch.Tensor], repeats: int = 3, chunk: int | None = None
                ) -> tuple[np.ndarray, float]:
        """Zero-shot predictions (B, n_out, nx) and the seconds of one batched forward pass: the
        fastest of ``repeats`` timed passes after a warm-up pass (a shared CPU makes single timings noisy).

        More than ``chunk`` (default :data:`CHUNK`) predictions run as consecutive forward passes of
        at most ``chunk`` rows, so the network's activations stay bounded whatever the batch; the
        time is then that of all of them."""
        from lemon_pl.adaptation.functional import net_call

        chunk = CHUNK if chunk is None else max(1, int(chunk))
        b = len(batch["u_in"])
        parts = [slice(i, min(i + chunk, b)) for i in range(0, b, chunk)]
        with torch.inference_mode():
            net_call(self.net, {}, {k: v[:1] for k, v in batch.items()})  # warm-up (allocations, kernels)
            times = []
            for _ in range(max(1, repeats)):
                out = []
                start = time.perf_counter()
                for part in parts:
                    out.append(self.physical(net_call(self.net, {}, {k: v[part] for k, v in batch.items()}),
                                             {k: v[part] for k, v in batch.items()}))
                times.append(time.perf_counter() - start)
        return np.concatenate(out), min(times)

    def adapt_predict(self, support: dict[str, torch.Tensor], query: dict[str, torch.Tensor], steps: int,
                      lr: float | None = None) -> dict:
        """Adapt on ``support`` for ``steps`` SGD steps (the stage's few-shot code: its adapted
        parameters and learning rate unless ``lr`` is given), then predict ``query``.

        Returns ``pred`` (adapted, physical), ``zero_shot`` (before adapting), the support set's
        relative L2 before/after (``support_rel_l2``: (2,)), ``lr`` and ``seconds``."""
        from lemon_pl.adaptation.fewshot import adapt_then_predict
        from lemon_pl.core.metrics import relative_l2

        nq = len(query["u_in"])
        both = {k: torch.cat([query[k], support[k]]) for k in query}  # the support fit is reported too
        task = {"tokens": support["tokens"][:1], "token_pad_mask": support["token_pad_mask"][:1]}
        rate = self.stage.task_lr(task, 0) if lr is None else float(lr)
        n = len(both["u_in"])
        parts = [slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
        seen: dict[int, dict[int, torch.Tensor]] = {0: {}, steps: {}}
        preds = []
        start = time.perf_counter()
        for i, part in enumerate(parts):  # first-order SGD on the same support: each part adapts the same way
            rows = {k: v[part] for k, v in both.items()}
            preds.append(adapt_then_predict(self.net, support, rows, self.stage.eval_fast_names(), steps, rate,
                                            self.stage.loss, curve=(0, steps),
                                            on_step=lambda k, p, i=i: seen[k].__setitem__(i, p)))
        seconds = time.perf_counter() - start
        pred = torch.cat(preds)
        seen_all = {k: torch.cat([v[i] for i in range(len(parts))]) for k, v in seen.items()}
        true = self.physical(support["u_out"], support)
        sup_err = [float(relative_l2(torch.as_tensor(self.physical(seen_all[k][nq:], support)),
                                     torch.as_tensor(true)).mean()) for k in (0, steps)]
        return {"pred": self.physical(pred[:nq], query), "zero_shot": self.physical(seen_all[0][:nq], query),
                "support_rel_l2": np.array(sup_err), "lr": _rate_value(rate), "seconds": seconds}


#: what :class:`Predictor` asks of a stage: an operator-learning stage (``lemon_pl.operators``) has
#: them all; this package checks the stage by them and does not import the operator stages
OPERATOR_STAGE_API = ("net", "loss", "task_lr", "eval_fast_names", "on_load_checkpoint")


def is_operator_stage(stage) -> bool:
    """Whether ``stage`` offers what prediction and few-shot adaptation use (:data:`OPERATOR_STAGE_API`)."""
    return isinstance(stage, torch.nn.Module) and all(hasattr(stage, name) for name in OPERATOR_STAGE_API) \
        and all(callable(getattr(stage, name)) for name in OPERATOR_STAGE_API[2:])


def _rate_value(rate) -> float:
    if isinstance(rate, dict):
        return float(np.mean([float(v) for v in rate.values()]))
    return float(rate)


def _build(raw: dict, config_path: Path, build: Callable):
    """The stage and data module of a run config by ``build(model, data)`` (``lemon_pl.cli``'s, which
    trained it); its failure (a ``ValueError``) is one :class:`ModelLoadError` line naming the config."""
    try:
        return build(raw["model"], raw["data"])
    except ValueError as err:
        raise ModelLoadError(f"{config_path}: {err}") from None
