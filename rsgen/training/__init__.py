"""Training: one accelerate loop for the modes vae | base | controlnet | sr, with EMA, min-SNR-gamma,
epsilon / v-prediction, offset noise, caption and metadata dropout, latent caching, LoRA, exact resume."""

from rsgen.training.config import MODES, TrainConfig, load_train_config
from rsgen.training.loop import TrainResult, build_dataset, train

__all__ = ["MODES", "TrainConfig", "TrainResult", "build_dataset", "load_train_config", "train"]
