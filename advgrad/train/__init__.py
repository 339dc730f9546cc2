"""Training, robust and certified: one loop (:mod:`advgrad.train.loop`), a loss per method
(:mod:`advgrad.train.methods`) from advgrad's attacks and bounds. ``advgrad train`` on the command line."""

from advgrad.train.loop import EpochLog, Trainer, split_indices
from advgrad.train.train_config import METHODS, TrainConfig

__all__ = ["METHODS", "EpochLog", "TrainConfig", "Trainer", "split_indices"]
