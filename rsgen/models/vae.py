"""The autoencoder: Stable Diffusion's ``AutoencoderKL`` from a local path, or a small ``AutoencoderKL``
trained here on remote-sensing images (latent factor 4: 64x64 pixels -> 16x16 latents), and its training
loss (L1 reconstruction + KL + SSIM, none of which needs downloaded weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from rsgen.errors import WeightsNotFoundError
from rsgen.safety import use_safetensors


@dataclass
class VAEConfig:
    """A small AutoencoderKL built from scratch, or ``pretrained`` = a local diffusers folder (pipeline root
    or its ``vae/``). Down-sampling factor = 2 ** (len(block_out_channels) - 1)."""

    pretrained: str | None = None
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    latent_channels: int = 4
    sample_size: int = 64
    norm_num_groups: int = 32
    kl_weight: float = 1e-6
    ssim_weight: float = 0.2
    # weight of an L1 loss on horizontal/vertical pixel differences: keeps edges and fine texture sharp
    gradient_weight: float = 0.0
    # weight of an L1 loss between the log amplitude spectra (2-D FFT) of reconstruction and target: asks for
    # the right amount of fine texture wherever it sits (phase-free, unlike L1), so that the decoder neither
    # blurs sharp 10 m detail nor adds texture to smooth 40 m images (the look the GSD of an image is read from)
    spectral_weight: float = 0.0
    # weight of the adversarial (hinge) loss of a patch discriminator trained alongside (0 = none): rewards
    # plausible fine texture where L1 / SSIM favour a blur (rsgen.models.discriminator); the discriminator
    # trains with the same optimizer and is saved in checkpoints, never exported
    adversarial_weight: float = 0.0
    discriminator_channels: int = 64
    discriminator_layers: int = 3
    # train the decoder only (encoder, quant_conv and scaling_factor frozen), so that latents cached from this
    # VAE and diffusion models trained on them stay valid while the decoded images get sharper
    train_decoder_only: bool = False


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    """A fresh AutoencoderKL of the configured shape (its ``scaling_factor`` is set after training)."""
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.sample_size,
        scaling_factor=1.0,
    )


def load_vae(path: str | Path) -> AutoencoderKL:
    """An AutoencoderKL from a local diffusers folder (pipeline root with ``vae/``, or the vae folder)."""
    p = Path(path)
    folder = p / "vae" if (p / "vae" / "config.json").is_file() else p
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(
            f"VAE: no diffusers AutoencoderKL in {p} (expected {p}/vae/config.json or {p}/config.json)"
        )
    return AutoencoderKL.from_pretrained(folder, use_safetensors=use_safetensors(), local_files_only=True)


def make_vae(cfg: VAEConfig) -> AutoencoderKL:
    return load_vae(cfg.pretrained) if cfg.pretrained else build_vae(cfg)


def vae_scale_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along one side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def calibrate_scaling_factor(vae: AutoencoderKL, pixels: torch.Tensor) -> float:
    """Set ``scaling_factor`` = 1 / std of the latent means on a batch (as SD did), so that scaled latents have
    unit variance for the diffusion model; pixels (B, 3, H, W) in [-1, 1]."""
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean  # (B, C, h, w)
    factor = float(1.0 / latents.float().std().clamp_min(1e-6))
    vae.register_to_config(scaling_factor=factor)
    return factor


def vae_loss(
    vae: AutoencoderKL,
    pixels: torch.Tensor,
    kl_weight: float,
    ssim_weight: float,
    generator: torch.Generator | None = None,
    gradient_weight: float = 0.0,
    decoder_only: bool = False,
    spectral_weight: float = 0.0,
    discriminator: torch.nn.Module | None = None,
    adversarial_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of the autoencoder on pixels (B, 3, H, W) in [-1, 1]: L1 + ssim_weight * (1 - SSIM) +
    gradient_weight * L1(pixel differences) + spectral_weight * L1(log amplitude spectra) + kl_weight * KL (the
    KL term is dropped with ``decoder_only``, where the encoder runs without gradients). With a
    ``discriminator`` and ``adversarial_weight`` > 0, also adversarial_weight * the generator hinge loss (its
    gradient reaches the autoencoder only) plus the discriminator's own hinge loss on the originals and the
    detached reconstructions (its gradient reaches the discriminator only), so one backward pass and one
    optimizer step train both. Returns the loss and its parts for logging."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    with torch.set_grad_enabled(torch.is_grad_enabled() and not decoder_only):
        posterior = vae.encode(pixels).latent_dist
        z = posterior.sample(generator=generator)  # (B, C, h, w)
    recon = vae.decode(z).sample.float()  # (B, 3, H, W)
    target = pixels.float()
    l1 = F.l1_loss(recon, target)
    ssim = structural_similarity_index_measure(
        (recon + 1) / 2, (target + 1) / 2, data_range=1.0, kernel_size=7
    )
    loss = l1 + ssim_weight * (1 - ssim)
    parts = {"l1": float(l1.detach()), "ssim": float(ssim.detach())}
    if gradient_weight > 0:
        grad = F.l1_loss(image_differences(recon), image_differences(target))
        loss = loss + gradient_weight * grad
        parts["grad_l1"] = float(grad.detach())
    if spectral_weight > 0:
        spec = F.l1_loss(log_amplitude_spectrum(recon), log_amplitude_spectrum(target))
        loss = loss + spectral_weight * spec
        parts["spectral_l1"] = float(spec.detach())
    if discriminator is not None and adversarial_weight > 0:
        from rsgen.models.discriminator import discriminator_hinge_loss, generator_hinge_loss

        trainable = [p for p in discriminator.parameters() if p.requires_grad]
        for p in trainable:  # the autoencoder's term must not train the discriminator
            p.requires_grad_(False)
        try:
            g_adv = generator_hinge_loss(discriminator(recon))
        finally:
            for p in trainable:
                p.requires_grad_(True)
        d_loss = discriminator_hinge_loss(discriminator(target), discriminator(recon.detach()))
        loss = loss + adversarial_weight * g_adv + d_loss
        parts["adv_generator"] = float(g_adv.detach())
        parts["adv_discriminator"] = float(d_loss.detach())
    if not decoder_only:
        kl = posterior.kl().mean()  # summed over latent cells, averaged over the batch
        loss = loss + kl_weight * kl
        parts["kl"] = float(kl.detach())
    return loss, parts


def image_differences(images: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical neighbour differences of (B, C, H, W) images, flattened to (B, C, N)."""
    dx = images[..., :, 1:] - images[..., :, :-1]  # (B, C, H, W-1)
    dy = images[..., 1:, :] - images[..., :-1, :]  # (B, C, H-1, W)
    return torch.cat([dx.flatten(2), dy.flatten(2)], dim=2)


ENCODER_SIDE = ("encoder.", "quant_conv.")  # what a decoder-only fine-tune leaves untouched


def swap_decoder(model_dir: str | Path, vae_source: str | Path) -> Path:
    """Replace ``model_dir/vae`` with the VAE at ``vae_source`` (a pipeline root or VAE folder), which must be a
    decoder-only fine-tune of it: the same config, encoder and ``quant_conv`` weights and ``scaling_factor``, so
    the latents every model in ``model_dir`` was trained on are unchanged. Written atomically; returns the path.
    Raises :class:`~rsgen.errors.ConfigError` when the encoder sides differ."""
    import shutil

    from rsgen.errors import ConfigError
    from rsgen.io import atomic_dir

    old, new = load_vae(model_dir), load_vae(vae_source)
    if old.config.scaling_factor != new.config.scaling_factor or tuple(
        old.config.block_out_channels
    ) != tuple(new.config.block_out_channels):
        raise ConfigError(f"{vae_source}: VAE shape or scaling_factor differs from {model_dir}/vae")
    new_state = new.state_dict()
    for key, value in old.state_dict().items():
        if key.startswith(ENCODER_SIDE) and not torch.equal(value, new_state[key]):
            raise ConfigError(
                f"{vae_source}: its encoder differs from {model_dir}/vae ({key}); only a decoder-only fine-tune "
                "keeps the latents of the models there valid"
            )
    src = Path(vae_source)
    src = src / "vae" if (src / "vae" / "config.json").is_file() else src
    dst = Path(model_dir) / "vae"
    with atomic_dir(dst) as tmp:
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
    return dst


def log_amplitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``log(1 + |FFT|)`` of (B, C, H, W) images (orthonormal 2-D real FFT per channel) -> (B, C, H, W // 2 + 1).
    Phase is dropped: two textures of the same grain and contrast match wherever their details sit."""
    return torch.log1p(torch.fft.rfft2(images.float(), norm="ortho").abs())


__all__ = [
    "VAEConfig",
    "build_vae",
    "calibrate_scaling_factor",
    "image_differences",
    "load_vae",
    "log_amplitude_spectrum",
    "swap_decoder",
    "make_vae",
    "vae_loss",
    "vae_scale_factor",
]
