"""The autoencoder's spectral loss term: phase-free, and it tells sharp texture from blur."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsgen.models.vae import VAEConfig, build_vae, log_amplitude_spectrum, vae_loss


def _blur(x: torch.Tensor) -> torch.Tensor:
    small = F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_log_amplitude_spectrum_is_phase_free_and_sees_blur():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert log_amplitude_spectrum(x).shape == (2, 3, 32, 17)
    shifted = torch.roll(x, shifts=(5, 9), dims=(2, 3))  # the same texture, moved
    spec = lambda a, b: F.l1_loss(log_amplitude_spectrum(a), log_amplitude_spectrum(b))  # noqa: E731
    assert spec(x, shifted) < 1e-5 < F.l1_loss(x, shifted)
    # blur removes high-frequency amplitude: a clear spectral gap, far larger than the shift's
    assert spec(x, _blur(x)) > 0.1
    hf = lambda a: log_amplitude_spectrum(a)[..., 8:24, 8:].mean()  # noqa: E731
    assert hf(_blur(x)) < 0.5 * hf(x)


def test_vae_loss_spectral_term_trains_the_decoder_only():
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(block_out_channels=[32, 32, 32], sample_size=32))
    vae.encoder.requires_grad_(False)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    plain, _ = vae_loss(vae, pixels, 1e-6, 0.2, torch.Generator().manual_seed(0), decoder_only=True)
    loss, parts = vae_loss(
        vae, pixels, 1e-6, 0.2, torch.Generator().manual_seed(0), decoder_only=True, spectral_weight=0.5
    )
    assert set(parts) == {"l1", "ssim", "spectral_l1"}
    assert loss.item() == pytest.approx(plain.item() + 0.5 * parts["spectral_l1"], rel=1e-4)
    loss.backward()
    assert all(p.grad is None for p in vae.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.decoder.parameters())


def test_swap_decoder_accepts_decoder_fine_tunes_only(tmp_path):
    from rsgen.errors import ConfigError
    from rsgen.models.vae import load_vae, swap_decoder

    torch.manual_seed(0)
    vae = build_vae(VAEConfig(block_out_channels=[32, 32, 32], sample_size=32))
    vae.save_pretrained(tmp_path / "model" / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(0.5)  # a decoder-only change
    vae.save_pretrained(tmp_path / "tuned")
    swap_decoder(tmp_path / "model", tmp_path / "tuned")
    swapped = load_vae(tmp_path / "model")
    torch.testing.assert_close(swapped.decoder.conv_out.bias, vae.decoder.conv_out.bias)
    with torch.no_grad():
        vae.encoder.conv_in.bias.add_(0.5)  # the latents would change: refused, the model keeps its VAE
    vae.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="encoder differs"):
        swap_decoder(tmp_path / "model", tmp_path / "other")
    torch.testing.assert_close(
        load_vae(tmp_path / "model").encoder.conv_in.bias, swapped.encoder.conv_in.bias
    )


def test_adversarial_term_trains_each_side_with_its_own_loss():
    from rsgen.models.discriminator import PatchDiscriminator, discriminator_hinge_loss

    torch.manual_seed(0)
    vae = build_vae(VAEConfig(block_out_channels=[32, 32, 32], sample_size=32))
    vae.encoder.requires_grad_(False)
    disc = PatchDiscriminator(channels=16, layers=2)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    assert disc(pixels).shape == (2, 1, 8, 8)
    loss, parts = vae_loss(
        vae,
        pixels,
        1e-6,
        0.2,
        torch.Generator().manual_seed(0),
        decoder_only=True,
        discriminator=disc,
        adversarial_weight=0.1,
    )
    assert {"adv_generator", "adv_discriminator"} <= set(parts)
    loss.backward()
    assert all(p.requires_grad for p in disc.parameters())  # restored after the generator term
    got = [p.grad.clone() for p in disc.parameters()]
    # the discriminator's gradient is exactly that of its own hinge loss (the generator term does not reach it)
    disc.zero_grad()
    with torch.no_grad():
        recon = vae.decode(vae.encode(pixels).latent_dist.sample(torch.Generator().manual_seed(0))).sample
    discriminator_hinge_loss(disc(pixels), disc(recon)).backward()
    for g, p in zip(got, disc.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    # and the decoder gets the generator term: its gradient differs from the loss without it
    dec_grad = vae.decoder.conv_out.weight.grad.clone()
    vae.zero_grad()
    plain, _ = vae_loss(vae, pixels, 1e-6, 0.2, torch.Generator().manual_seed(0), decoder_only=True)
    plain.backward()
    assert not torch.allclose(dec_grad, vae.decoder.conv_out.weight.grad)
