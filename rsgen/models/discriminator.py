"""A patch discriminator for adversarial autoencoder training (as in pix2pix and Stable Diffusion's
autoencoders): it scores overlapping patches of an image as real or reconstructed, which rewards a decoder for
drawing plausible fine texture instead of the blurred mean that L1 / SSIM favour -- the texture a GSD is read
from. GroupNorm rather than BatchNorm, so that it behaves the same in one process or several.

Losses are the hinge losses of the GAN literature: the discriminator pushes real logits above +1 and
reconstructed ones below -1; the autoencoder raises the logits of its reconstructions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H / 2^layers, W / 2^layers) patch logits.

    ``layers`` stride-2 4x4 convolutions (channels ``channels * 2^i``, at most 8x), then a 3x3 convolution to one
    logit per patch; each logit sees a receptive field of about ``2^(layers + 2)`` pixels."""

    def __init__(self, channels: int = 64, layers: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = in_channels
        for i in range(layers):
            c_out = channels * min(2**i, 8)
            blocks.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if i > 0:  # no normalisation on the first layer (pix2pix)
                blocks.append(nn.GroupNorm(min(32, c_out // 4), c_out))
            blocks.append(nn.LeakyReLU(0.2))
            c_in = c_out
        blocks.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: mean(relu(1 - real)) + mean(relu(1 + fake)), halved."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The autoencoder's adversarial loss: -mean(logits of its reconstructions)."""
    return -fake_logits.mean()


__all__ = ["PatchDiscriminator", "discriminator_hinge_loss", "generator_hinge_loss"]
