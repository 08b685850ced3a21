"""LightningModules, one per training stage, chosen by ``model.class_path``."""

from lemon_pl.modules.base import OperatorModule
from lemon_pl.modules.finetune import FinetuneModule
from lemon_pl.modules.meta import MetaModule
from lemon_pl.modules.pretrain import PretrainModule

__all__ = ["OperatorModule", "PretrainModule", "MetaModule", "FinetuneModule"]
