"""Victims: the protocol, SASRec / BERT4Rec / GRU4Rec, adapters and artifacts."""

from ._adapters import BlackBoxVictim, ListsOnly, TorchVictim
from ._base import SequentialVictim, Victim, WhiteBoxVictim, architectures, as_batch, eval_mode, mask_seen_, resolve_device
from ._contract import CAPABILITIES, CAPABILITY_TABLE, STOP, Capability, EpochUpdate, capabilities, require
from ._factory import build_victim, is_factory_path, load, load_factory, model_identity
from ._config import BaseConfig
from ._hooks import capture
from ._layers import TransformerBlock, attention_mask
from ._train import TRAINING_REVISION
from .trainer import BestState, Trainer, TrainingRecord
from .bert4rec import BERT4Rec, BERT4RecConfig
from .gru4rec import GRU4Rec, GRU4RecConfig
from .sasrec import SASRec, SASRecConfig
from .recipes import RECIPES, recipe

__all__ = [
    "Victim", "WhiteBoxVictim", "SequentialVictim", "BaseConfig",
    "SASRec", "SASRecConfig", "BERT4Rec", "BERT4RecConfig", "GRU4Rec", "GRU4RecConfig",
    "TorchVictim", "BlackBoxVictim", "ListsOnly", "load", "architectures", "as_batch", "eval_mode", "mask_seen_", "resolve_device",
    "make_victim", "build_victim", "RECIPES", "recipe", "load_factory", "model_identity", "is_factory_path", "TRAINING_REVISION",
    "Trainer", "TrainingRecord", "BestState", "capture", "TransformerBlock", "attention_mask",
    "CAPABILITIES", "CAPABILITY_TABLE", "Capability", "capabilities", "require", "EpochUpdate", "STOP",
]


def make_victim(architecture: str, **config) -> SequentialVictim:
    """Build an untrained victim by name (``"sasrec"``, ``"bert4rec"``, ``"gru4rec"``) and config keys."""
    from ..errors import ConfigError

    archs = architectures()
    if architecture not in archs:
        raise ConfigError(f"unknown model {architecture!r}; choose one of {', '.join(sorted(archs))}", param="model")
    return archs[architecture](**config)
