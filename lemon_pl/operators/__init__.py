"""The operator-learning stages (LeMON): pretraining, meta-learning and fine-tuning.

* ``base``: ``OperatorModule`` (operator networks: loss, per-family evaluation, few-shot tests);
* ``pretrain``: ``PretrainModule``; ``meta``: ``MetaModule`` (LeMON / LeMONS: MAML, FOMAML,
  Reptile, learned rates); ``finetune``: ``FinetuneModule`` (full / LoRA / decoder).
"""

from lemon_pl.operators.base import OperatorModule
from lemon_pl.operators.finetune import FinetuneModule
from lemon_pl.operators.meta import MetaModule
from lemon_pl.operators.pretrain import PretrainModule

__all__ = ["OperatorModule", "PretrainModule", "MetaModule", "FinetuneModule"]
