"""The remote-sensing feature network: a small ResNet-like EuroSAT classifier trained by the project.

It replaces InceptionV3 where the standard FID weights are not available (metrics then carry an ``_RS``
suffix: FID_RS, KID_RS, IS_RS), judges text faithfulness (class accuracy on images generated from class
prompts) and is the classifier of the downstream augmentation test. Saved diffusers-style
(``config.json`` + ``diffusion_pytorch_model.safetensors``) in ``assets/eval/rs-feature-net``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn
from tqdm import tqdm

from rsgen.errors import WeightsNotFoundError
from rsgen.paths import ASSETS_DIR, REPO_ROOT
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

DEFAULT_FEATURE_NET_DIR = ASSETS_DIR / "eval" / "rs-feature-net"
# the classifier of text faithfulness: trained with low-level degradations (configs/eval/text_classifier.yaml)
DEFAULT_TEXT_CLASSIFIER_DIR = ASSETS_DIR / "eval" / "rs-classifier-robust"
# Per-channel mean/std of EuroSAT-RGB train (0-1 scale), so inputs are roughly standardised.
EUROSAT_MEAN = (0.3444, 0.3803, 0.4078)
EUROSAT_STD = (0.2037, 0.1366, 0.1148)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.skip(x))


class RSResNet(ModelMixin, ConfigMixin):
    """Small ResNet for 64x64 RGB remote-sensing patches.

    Input: images ``(B, 3, H, W)``, uint8 0-255 or float 0-1 (resized to ``image_size`` when different).
    ``features`` gives the pooled ``(B, channels[-1])`` embedding, ``forward`` the ``(B, num_classes)`` logits.
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        stem_channels: int = 24,
        image_size: int = 64,
        class_names: tuple[str, ...] = (),
        mean: tuple[float, float, float] = EUROSAT_MEAN,
        std: tuple[float, float, float] = EUROSAT_STD,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_channels), nn.ReLU()
        )
        blocks, c_in = [], stem_channels
        for c in channels:
            blocks.append(BasicBlock(c_in, c, stride=2))  # 64 -> 32 -> 16 -> 8 -> 4
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_features(self) -> int:
        return int(self.config.channels[-1])

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 0-255 or float 0-1 ``(B, 3, H, W)`` -> standardised float ``(B, 3, S, S)``."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.input_mean) / self.input_std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, C, S/16, S/16)
        return self.blocks(self.stem(self.preprocess(images)))

    def features(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, C)
        return self.feature_map(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, num_classes) logits
        return self.head(self.features(images))


def load_feature_net(path: str | Path | None = None) -> RSResNet:
    """The shipped RS feature network (or one saved at ``path``), in eval mode."""
    path = Path(path) if path is not None else DEFAULT_FEATURE_NET_DIR
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"RS feature network not found at {path} (expected config.json + safetensors; "
            "train one with eval/train_feature_net.py)"
        )
    return RSResNet.from_pretrained(path, use_safetensors=use_safetensors(), local_files_only=True).eval()


# ---------------------------------------------------------------------------------------------- training


@dataclass
class ClassifierTrainConfig:
    """How to train an :class:`RSResNet` (feature network, augmentation-test classifier)."""

    epochs: float = 3.0
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    channels: tuple[int, ...] = (32, 64, 128, 256)
    stem_channels: int = 24
    seed: int = 0
    num_threads: int = 0  # 0 = leave torch's setting alone
    min_steps: int = 0
    # share of training images given a random low-level degradation (blur, resampling, noise, tone): a
    # classifier that judges generated images should read the class, not the sharpness (see `degrade`)
    degrade: float = 0.0


@dataclass
class FeatureNetTrainConfig:
    """Training of the shipped feature network on EuroSAT train (``configs/eval/feature_net.yaml``)."""

    out_dir: str = str(DEFAULT_FEATURE_NET_DIR)
    classifier: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    max_train_images: int | None = None


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations: nadir views have no preferred orientation. (B, 3, H, W)."""
    flip_h = torch.rand(x.shape[0], generator=generator) < 0.5
    flip_v = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip_h.view(-1, 1, 1, 1), x.flip(3), x)
    x = torch.where(flip_v.view(-1, 1, 1, 1), x.flip(2), x)
    if torch.rand(1, generator=generator).item() < 0.5:
        x = x.transpose(2, 3)
    return x


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """7x7 Gaussian blur (reflect padding) of float (B, 3, H, W) images."""
    from torchvision.transforms.v2.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=[7, 7], sigma=[sigma, sigma])


def degrade(x: torch.Tensor, generator: torch.Generator, prob: float) -> torch.Tensor:
    """Random low-level degradations of a share ``prob`` of a (B, 3, H, W) uint8 batch: Gaussian blur (sigma
    0.3-1.5 px), 2x down-and-up resampling, sensor noise (sigma up to 8 grey levels) and a small gain/offset per
    channel; each degraded image gets one to three of them. What generators and autoencoders typically get
    wrong at 64 px, which says nothing about the scene class."""
    if prob <= 0:
        return x
    b = x.shape[0]
    pick = torch.rand(b, generator=generator) < prob  # (B,)
    if not pick.any():
        return x
    y = x[pick].float()  # (b', 3, H, W)
    n = y.shape[0]
    kinds = torch.rand((n, 4), generator=generator) < torch.tensor([0.5, 0.3, 0.5, 0.5])  # (b', 4)
    if kinds[:, 0].any():  # blur
        sigma = 0.3 + 1.2 * torch.rand(1, generator=generator).item()
        y = torch.where(kinds[:, 0].view(-1, 1, 1, 1), _blur(y, sigma), y)
    if kinds[:, 1].any():  # 2x down and up
        h, wd = y.shape[-2:]
        low = F.interpolate(F.avg_pool2d(y, 2), size=(h, wd), mode="bilinear", align_corners=False)
        y = torch.where(kinds[:, 1].view(-1, 1, 1, 1), low, y)
    if kinds[:, 2].any():  # noise
        sigma = 8 * torch.rand((n, 1, 1, 1), generator=generator)
        noise = torch.randn(y.shape, generator=generator) * sigma
        y = torch.where(kinds[:, 2].view(-1, 1, 1, 1), y + noise, y)
    if kinds[:, 3].any():  # gain / offset per channel
        gain = 1 + 0.15 * (2 * torch.rand((n, 3, 1, 1), generator=generator) - 1)
        offset = 10 * (2 * torch.rand((n, 3, 1, 1), generator=generator) - 1)
        y = torch.where(kinds[:, 3].view(-1, 1, 1, 1), y * gain + offset, y)
    out = x.clone()
    out[pick] = y.round().clamp(0, 255).to(x.dtype)
    return out


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 numpy -> ``(N, 3, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: ClassifierTrainConfig,
    class_names: tuple[str, ...] = (),
    progress: bool = True,
) -> RSResNet:
    """Train an :class:`RSResNet` on ``(N, H, W, 3)`` uint8 images with labels ``(N,)`` (AdamW, one-cycle LR).

    ``epochs`` may be fractional; ``min_steps`` sets a floor so tiny training sets still get enough updates.
    """
    torch.manual_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model = RSResNet(
        num_classes=num_classes,
        channels=tuple(config.channels),
        stem_channels=config.stem_channels,
        image_size=images.shape[1],
        class_names=tuple(class_names),
    )
    x_all, y_all = to_nchw(images), torch.from_numpy(labels.astype(np.int64))
    n = len(x_all)
    batch = min(config.batch_size, n)
    steps = max(config.min_steps, math.ceil(config.epochs * n / batch))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    order = torch.randperm(n, generator=gen)
    cursor, t0, seen = 0, time.perf_counter(), 0
    bar = tqdm(range(steps), desc="train classifier", disable=not progress, mininterval=5)
    for step in bar:
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        x = degrade(augment(x_all[idx], gen), gen, config.degrade)  # (B, 3, H, W) uint8
        loss = F.cross_entropy(model(x), y_all[idx], label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        seen += len(idx)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
    model.eval()
    return model


def fine_tune_regressor(
    sample_batch: Callable[[np.random.Generator, int], tuple[torch.Tensor, torch.Tensor]],
    target_name: str,
    initial_value: float,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    init_from: str | Path | None = None,
) -> RSResNet:
    """An :class:`RSResNet` with one output, initialised from the RS feature network (or a regressor, to continue
    training) and fine-tuned on
    ``sample_batch(rng, n) -> (images (n, 3, S, S) uint8, targets (n,))`` (smooth L1, flips/rotations).

    The predictors of metadata (GSD, year) are built this way: their targets are invariant to orientation.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = load_feature_net(init_from)
    arch = {k: v for k, v in base.config.items() if not k.startswith("_")}
    model = RSResNet(**{**arch, "num_classes": 1, "class_names": (target_name,)})
    if base.config.num_classes == 1:  # continue from a regressor
        model.load_state_dict(base.state_dict())
    else:  # a fresh head on the classifier's features
        model.load_state_dict(
            {k: v for k, v in base.state_dict().items() if not k.startswith("head.")}, strict=False
        )
        nn.init.zeros_(model.head.weight)
        nn.init.constant_(model.head.bias, initial_value)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc=f"train {target_name} regressor", mininterval=5)
    for _ in bar:
        x, y = sample_batch(rng, batch_size)  # (B, 3, S, S) uint8, (B,)
        loss = F.smooth_l1_loss(model(augment(x, gen))[:, 0], y.float(), beta=0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def predict_scalar(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The single output ``(N,)`` of a regressor for ``(N, H, W, 3)`` uint8 numpy or ``(N, 3, H, W)`` tensors."""
    return predict_logits(model, images, batch_size)[:, 0].numpy().astype(np.float64)


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Logits ``(N, num_classes)`` for ``(N, H, W, 3)`` uint8 numpy or ``(N, 3, H, W)`` tensors."""
    x = to_nchw(images) if isinstance(images, np.ndarray) else images
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    pred = predict_logits(model, images).argmax(1).numpy()
    return float((pred == labels).mean())


def train(config: FeatureNetTrainConfig | None = None) -> dict:
    """Train the RS feature network on EuroSAT train, measure EuroSAT val accuracy, save weights + summary.

    Returns the summary (also written as ``training_summary.json`` beside the weights).
    """
    from rsgen.eval.reference_data import load_eurosat

    config = config or FeatureNetTrainConfig()
    train_set, val_set = load_eurosat("train"), load_eurosat("val")
    if config.max_train_images is not None and config.max_train_images < len(train_set):
        rng = np.random.default_rng(config.classifier.seed)
        train_set = train_set.subset(rng.choice(len(train_set), config.max_train_images, replace=False))
    log.info("training RS feature network on %d EuroSAT train images", len(train_set))
    t0, cpu0 = time.perf_counter(), time.process_time()
    model = train_classifier(
        train_set.images,
        train_set.labels,
        len(train_set.class_names),
        config.classifier,
        train_set.class_names,
    )
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    val_acc = accuracy(model, val_set.images, val_set.labels)
    pred = predict_logits(model, val_set.images).argmax(1).numpy()
    per_class = {
        name: float((pred[val_set.labels == c] == c).mean()) for c, name in enumerate(val_set.class_names)
    }
    summary = {
        "val_accuracy": val_acc,
        "val_accuracy_degraded": degraded_accuracy(model, val_set.images, val_set.labels),
        "val_accuracy_per_class": per_class,
        "val_images": len(val_set),
        "train_images": len(train_set),
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "data": "EuroSAT-RGB train (Helber et al. 2019), evaluated on EuroSAT-RGB val",
        "config": {**asdict(config.classifier), "max_train_images": config.max_train_images},
    }
    out = save_trained_model(model, config.out_dir, summary)
    log.info("RS feature network: val accuracy %.4f after %.0f s, saved to %s", val_acc, train_s, out)
    return summary


def degraded_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy on fixed degradations of ``images`` (how much a classifier cares about sharpness and noise)."""
    x = to_nchw(images).float()  # (N, 3, H, W)
    out = {f"blur_sigma_{sigma}": _accuracy_nchw(model, _blur(x, sigma), labels) for sigma in (0.8, 1.2)}
    gen = torch.Generator().manual_seed(0)
    out["noise_sigma_4"] = _accuracy_nchw(model, x + 4 * torch.randn(x.shape, generator=gen), labels)
    return out


def _accuracy_nchw(model: nn.Module, x: torch.Tensor, labels: np.ndarray) -> float:
    u8 = x.round().clamp(0, 255).to(torch.uint8)
    return float((predict_logits(model, u8).argmax(1).numpy() == labels).mean())


def save_trained_model(model: ModelMixin, out_dir: str | Path, summary: dict) -> Path:
    """Write ``model`` (safetensors) and its ``training_summary.json`` atomically into ``out_dir`` (relative:
    under the repository root), replacing an older folder only once both are written; returns the folder."""
    from rsgen.io import atomic_dir, atomic_write_json

    out = Path(out_dir)
    out = out if out.is_absolute() else REPO_ROOT / out
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        atomic_write_json(tmp / "training_summary.json", summary)
    return out


def read_training_summary(path: str | Path | None = None) -> dict:
    """The ``training_summary.json`` shipped beside a feature network ({} when absent)."""
    p = Path(path) if path is not None else DEFAULT_FEATURE_NET_DIR
    f = p / "training_summary.json"
    return json.loads(f.read_text()) if f.is_file() else {}
