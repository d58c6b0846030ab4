"""The diffusion training objective as pure functions: noising with optional offset noise, the
epsilon / v-prediction target and min-SNR-gamma loss weighting (Hang et al. 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from rsgen.models.scheduler import make_noise_scheduler  # re-exported: the training loop's schedule


def sample_noise(
    shape: tuple[int, ...], offset_noise: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Gaussian noise (B, C, h, w); with ``offset_noise`` > 0 plus a per-(sample, channel) constant so that the
    model learns to change the mean brightness of an image."""
    noise = torch.randn(shape, generator=generator)
    if offset_noise > 0:
        noise = noise + offset_noise * torch.randn((*shape[:2], 1, 1), generator=generator)
    return noise.to(device)


def diffusion_target(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet must predict: the noise (epsilon) or the velocity (v-prediction)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type={kind!r}: expected 'epsilon' or 'v_prediction'")


def loss_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, snr_gamma: float | None) -> torch.Tensor:
    """Per-sample loss weights (B,): min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) / (SNR + 1) for v;
    ones when ``snr_gamma`` is None."""
    if snr_gamma is None:
        return torch.ones(timesteps.shape, device=timesteps.device)
    snr = compute_snr(scheduler, timesteps)  # (B,)
    clipped = torch.clamp(snr, max=snr_gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp_min(1e-8)


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted MSE: pred, target (B, C, h, w), weights (B,) -> scalar."""
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
    return (per_sample * weights).mean()


__all__ = ["diffusion_loss", "diffusion_target", "loss_weights", "make_noise_scheduler", "sample_noise"]
