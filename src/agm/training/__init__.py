"""Training: the generic trainer, EMA and checkpoints."""
from agm.training.checkpoint import check_run_dir, latest_checkpoint, load_checkpoint, load_ema_network
from agm.training.ema import EMA
from agm.training.trainer import Trainer, TrainableMethod

__all__ = ["Trainer", "TrainableMethod", "EMA", "check_run_dir", "latest_checkpoint", "load_checkpoint", "load_ema_network"]
