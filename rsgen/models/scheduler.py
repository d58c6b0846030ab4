"""The noise schedule and objective of a model (saved as its ``scheduler/``): :class:`DiffusionConfig` and the
scheduler it builds, shared by training and by pipelines built with random weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from diffusers import DDPMScheduler


@dataclass
class DiffusionConfig:
    """Noise schedule and objective. snr_gamma: min-SNR-gamma loss weighting (null = plain MSE).
    offset_noise: strength of per-channel constant noise added to the noise (brighter/darker images)."""

    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    snr_gamma: float | None = 5.0
    offset_noise: float = 0.0


def make_noise_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The training noise schedule (also saved as the model's ``scheduler/``)."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


__all__ = ["DiffusionConfig", "make_noise_scheduler"]
