"""Autoencoder reconstruction quality: a perfect autoencoder scores like the originals; a blurring one loses
PSNR and classifier accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from eval_fakes import one_thread, tiny_net  # noqa: E402, F401

from rsgen.eval.autoencoder import reconstruction_quality  # noqa: E402
from rsgen.eval.reference_data import LabelledImages  # noqa: E402


class _Posterior:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def mode(self) -> torch.Tensor:
        return self.x


class _Out:
    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


class FakeVAE(torch.nn.Module):
    """Identity (blur=False) or 4x average-pool-and-upsample (bilinear) autoencoder with the AutoencoderKL call
    shape. (Nearest-neighbour enlargement would leave block edges, which a GSD predictor may read as detail.)"""

    def __init__(self, blur: bool) -> None:
        super().__init__()
        self.blur = blur
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.dummy.device

    def encode(self, x: torch.Tensor):
        return type("E", (), {"latent_dist": _Posterior(F.avg_pool2d(x, 4) if self.blur else x)})()

    def decode(self, z: torch.Tensor):
        return _Out(
            F.interpolate(z, scale_factor=4, mode="bilinear", align_corners=False) if self.blur else z
        )


def test_identity_is_perfect_and_blur_is_worse(tmp_path):
    torch.manual_seed(0)
    net = tiny_net(num_classes=2, size=32)
    net.save_pretrained(tmp_path / "net")
    rng = np.random.default_rng(0)
    images = (rng.random((12, 32, 32, 3)) * 255).astype(np.uint8)  # texture-rich: blurring destroys it
    data = LabelledImages(images, np.array([0, 1] * 6), ("a", "b"), "fake")
    perfect = reconstruction_quality(FakeVAE(False), data, tmp_path / "net")
    blurred = reconstruction_quality(FakeVAE(True), data, tmp_path / "net")
    assert perfect.psnr_db > 60 and perfect.ssim == pytest.approx(1.0, abs=1e-4)
    assert perfect.class_accuracy_reconstructed == perfect.class_accuracy_real
    assert blurred.psnr_db < 15 and blurred.ssim < 0.5
    assert blurred.std_rgb_reconstructed[0] < blurred.std_rgb_real[0]
    assert reconstruction_quality(FakeVAE(True), data, classify=False).class_accuracy_real is None


@pytest.mark.realdata
def test_gsd_round_trip_reads_a_blurring_autoencoder_as_coarser(datasets):
    from rsgen.eval.autoencoder import gsd_round_trip
    from rsgen.eval.gsd_predictor import DEFAULT_GSD_PREDICTOR_DIR

    if not (DEFAULT_GSD_PREDICTOR_DIR / "config.json").is_file():
        pytest.skip("GSD predictor not shipped")
    same = gsd_round_trip(FakeVAE(False), num_images=60, values_m=(10.0,))
    blur = gsd_round_trip(FakeVAE(True), num_images=60, values_m=(10.0,))
    assert same[0]["num_images"] > 5 and same[0]["error_round_trip"] == pytest.approx(same[0]["error_real"])
    assert blur[0]["read_as_round_trip"] > 1.2 * blur[0]["read_as_real"]  # 4x blocks read as a coarser GSD
    assert blur[0]["error_round_trip"] > blur[0]["error_real"]
