"""The RS feature network: learns, round-trips through safetensors, and the shipped one is accurate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_fakes import one_thread, smooth_images, tiny_net  # noqa: F401

from rsgen.errors import WeightsNotFoundError
from rsgen.eval.feature_net import (
    DEFAULT_FEATURE_NET_DIR,
    ClassifierTrainConfig,
    RSResNet,
    accuracy,
    load_feature_net,
    read_training_summary,
    train_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _two_class_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    green = smooth_images(n, seed=seed, tint=(0.2, 0.5, 0.2))
    blue = smooth_images(n, seed=seed + 100, tint=(0.2, 0.3, 0.6))
    return np.concatenate([green, blue]), np.repeat([0, 1], n)


def test_shapes_and_input_types() -> None:
    net = tiny_net(num_classes=3)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert net(x).shape == (2, 3)
    assert net.features(x).shape == (2, net.num_features)
    assert torch.allclose(net(x), net(x.float() / 255), atol=1e-5)  # uint8 and 0-1 floats agree
    assert net(torch.randint(0, 256, (1, 3, 48, 48), dtype=torch.uint8)).shape == (1, 3)  # resized inside


def test_training_learns_a_separable_task() -> None:
    x, y = _two_class_set(40, seed=0)
    cfg = ClassifierTrainConfig(epochs=0, min_steps=25, batch_size=32, channels=(8, 16), stem_channels=8)
    model = train_classifier(x, y, 2, cfg, progress=False)
    xt, yt = _two_class_set(30, seed=7)
    assert accuracy(model, xt, yt) > 0.9


def test_save_load_round_trip(tmp_path) -> None:
    net = tiny_net()
    net.save_pretrained(tmp_path / "net")
    assert (tmp_path / "net" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_feature_net(tmp_path / "net")
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(net(x), loaded(x))
    assert tuple(loaded.config.class_names) == net.config.class_names


def test_missing_network_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="train_feature_net"):
        load_feature_net(tmp_path / "nothing")


@pytest.mark.realdata
def test_shipped_network_classifies_eurosat_val(datasets) -> None:
    if not (DEFAULT_FEATURE_NET_DIR / "config.json").is_file():
        pytest.skip("RS feature network not trained yet (eval/train_feature_net.py)")
    from rsgen.eval.reference_data import load_eurosat

    net = load_feature_net()
    assert isinstance(net, RSResNet)
    val = load_eurosat("val")
    idx = np.random.default_rng(0).choice(len(val), 800, replace=False)
    acc = accuracy(net, val.images[idx], val.labels[idx])
    stated = read_training_summary()["val_accuracy"]
    assert acc > 0.8
    assert abs(acc - stated) < 0.05  # the stated accuracy is what the shipped weights give


def test_degrade_changes_about_the_asked_share_and_keeps_dtype() -> None:
    import torch

    from rsgen.eval.feature_net import degrade

    x = (torch.rand(200, 3, 16, 16) * 255).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(degrade(x, g, 0.0), x)
    y = degrade(x, g, 0.5)
    changed = (y != x).flatten(1).any(1).float().mean().item()
    assert y.dtype == torch.uint8 and y.shape == x.shape and 0.3 < changed <= 0.6
