"""Small fake image sets and networks shared by the tests of rsgen.eval (no real data needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsgen.eval.feature_net import RSResNet


def smooth_images(
    n: int, seed: int = 0, size: int = 32, tint: tuple[float, float, float] = (0.4, 0.5, 0.3)
) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 images of smooth random fields around a colour (a stand-in for scenes)."""
    rng = np.random.default_rng(seed)
    low = rng.normal(0, 0.15, (n, size // 8, size // 8, 3))
    up = np.kron(low, np.ones((1, 8, 8, 1)))
    img = np.clip(np.asarray(tint) + up + rng.normal(0, 0.02, up.shape), 0, 1)
    return (img * 255).astype(np.uint8)


def noise_images(n: int, seed: int = 1, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def tiny_net(num_classes: int = 4, size: int = 32, seed: int = 0) -> RSResNet:
    torch.manual_seed(seed)
    net = RSResNet(
        num_classes=num_classes,
        channels=(8, 16),
        stem_channels=8,
        image_size=size,
        class_names=tuple(f"c{i}" for i in range(num_classes)),
    )
    return net.eval()


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: the test machine's 2 cores are shared, and 2 threads starve each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
