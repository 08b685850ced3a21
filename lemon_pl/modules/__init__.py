"""Training stages as LightningModules (chosen by ``model.class_path``) and what they share.

* ``base``: ``Stage`` (optimiser from the config, NaN guard) and ``OperatorModule`` (operator
  networks: loss, per-family evaluation, few-shot tests);
* ``pretrain``, ``meta`` (LeMON / LeMONS), ``finetune`` (full / LoRA / decoder): the stages;
* ``pinn``: the physics-informed stages (PINN / PINN-P / Hyper-LR-PINN phase 1, phase 2,
  MAML / Reptile over μ tasks, PINN-S2S time-marching);
* ``metrics``: the error metrics (also used by experiment reports);
* ``optim``: default AdamW and warm-up + cosine schedule;
* ``callbacks``: tables, figures, example files and fit summaries for any stage.
"""

from lemon_pl.modules.base import OperatorModule, Stage
from lemon_pl.modules.finetune import FinetuneModule
from lemon_pl.modules.meta import MetaModule
from lemon_pl.modules.multilevel import MultilevelRegression
from lemon_pl.modules.pinn import HyperLRPINNAdapt, MetaPINNModule, PINNModule, TimeMarchingPINN
from lemon_pl.modules.pretrain import PretrainModule

__all__ = ["MultilevelRegression", "Stage", "OperatorModule", "PretrainModule", "MetaModule", "FinetuneModule", "PINNModule",
           "HyperLRPINNAdapt", "MetaPINNModule", "TimeMarchingPINN"]
