"""Reconstruction quality of an autoencoder on real images: PSNR, SSIM, colour statistics, and the RS
classifier's accuracy on the reconstructions next to its accuracy on the originals.

The last pair matters most for a latent diffusion model: generated images pass through the same decoder, so
the classifier accuracy on reconstructions is an upper bound on the text faithfulness (class accuracy on
generated images) that any base model trained on these latents can reach.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rsgen.eval.feature_net import accuracy, load_feature_net
from rsgen.eval.reference_data import LabelledImages


@dataclass
class ReconstructionQuality:
    """Scores of ``num_images`` reconstructions (pixels compared in [0, 1])."""

    num_images: int
    psnr_db: float
    ssim: float
    mean_rgb_real: list[float]
    mean_rgb_reconstructed: list[float]
    std_rgb_real: list[float]
    std_rgb_reconstructed: list[float]
    class_accuracy_real: float | None
    class_accuracy_reconstructed: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def reconstruct(vae: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Encode (posterior mean) and decode ``images`` (N, H, W, 3) uint8 -> (N, H, W, 3) uint8."""
    out = []
    dtype = next(vae.parameters()).dtype
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        latents = vae.encode(x.to(vae.device, dtype)).latent_dist.mode()  # (B, C, h, w)
        rec = vae.decode(latents).sample.float().clamp(-1, 1)  # (B, 3, H, W)
        out.append(((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def reconstruction_quality(
    vae: torch.nn.Module,
    data: LabelledImages,
    feature_net: str | Path | None = None,
    classify: bool = True,
) -> ReconstructionQuality:
    """Score ``vae`` on labelled real images (class accuracy with the shipped RS feature network)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    rec = reconstruct(vae, data.images)
    real_t = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    rec_t = torch.from_numpy(rec).permute(0, 3, 1, 2).float() / 255
    psnr = float(
        peak_signal_noise_ratio(rec_t, real_t, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean()
    )
    ssim = float(structural_similarity_index_measure(rec_t, real_t, data_range=1.0))
    acc_real = acc_rec = None
    if classify:
        net = load_feature_net(feature_net)
        acc_real = accuracy(net, data.images, data.labels)
        acc_rec = accuracy(net, rec, data.labels)
    return ReconstructionQuality(
        len(data),
        psnr,
        ssim,
        real_t.mean(dim=(0, 2, 3)).tolist(),
        rec_t.mean(dim=(0, 2, 3)).tolist(),
        real_t.std(dim=(0, 2, 3)).tolist(),
        rec_t.std(dim=(0, 2, 3)).tolist(),
        acc_real,
        acc_rec,
    )


def gsd_round_trip(
    vae: torch.nn.Module,
    num_images: int = 300,
    values_m: tuple[float, ...] = (10.0, 20.0, 40.0),
    predictor: str | Path | None = None,
    seed: int = 1,
) -> list[dict]:
    """The GSD ceiling of a latent model: the GSD predictor on real held-out images at known GSDs
    (:func:`~rsgen.eval.gsd_predictor.real_heldout_set`), straight and after the VAE round trip. Per value in
    ``values_m``, over the images within a quarter octave of it: mean |log2 error| and the median GSD the images
    read as. A decoder that keeps the look of each resolution leaves both close to the real row."""
    from rsgen.eval import gsd_predictor as gsdp

    model = gsdp.load_gsd_predictor(predictor)
    images, true_m = gsdp.real_heldout_set(num_images, seed=seed)  # (N, S, S, 3) uint8, (N,)
    read = {
        "real": gsdp.predict_gsd(model, images),
        "round_trip": gsdp.predict_gsd(model, reconstruct(vae, images)),
    }
    rows = []
    for v in values_m:
        near = gsdp.near_gsd(true_m, v)
        row: dict = {"gsd_m": v, "num_images": int(near.sum())}
        for key, pred in read.items():
            row[f"error_{key}"] = (
                float(gsdp.log2_errors(pred[near], true_m[near]).mean()) if near.any() else None
            )
            row[f"read_as_{key}"] = float(np.median(pred[near])) if near.any() else None
        rows.append(row)
    return rows


__all__ = ["ReconstructionQuality", "gsd_round_trip", "reconstruct", "reconstruction_quality"]
