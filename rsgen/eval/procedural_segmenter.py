"""Read the layout (vegetation / roads / buildings / water) back from a procedural scene (SYNTHETIC benchmark).

The layout control of the procedural benchmark (:mod:`rsgen.eval.procedural_benchmark`) is scored by comparing
the masks a ControlNet was asked for with the masks found in what it drew. Colour rules alone cannot separate
asphalt from grey roofs, or snowy roofs from snowy fields, so a tiny fully convolutional classifier is trained on
the procedural scenes' exact masks (the generator's ground truth) and used on real and generated scenes alike.
Its score on held-out real scenes is the best any generated set can reach with it. Blur and noise augmentation
make it tolerant of the softer images a small VAE decodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from rsgen.errors import DataError, WeightsNotFoundError

log = logging.getLogger(__name__)

LAYOUT_CLASSES = ("vegetation", "roads", "buildings", "water")  # class index = position


@dataclass
class SegmenterConfig:
    """Size and training of the layout segmenter. ``max_train``: training scenes used (first N of the split)."""

    width: int = 16
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    max_train: int = 2000
    seed: int = 0
    blur_sigma_max: float = 1.0  # pixels; each batch is blurred with sigma ~ U(0, this)
    noise_std: float = 4.0  # DN (0-255) of added Gaussian noise, each batch scaled by U(0, 1)
    colour_jitter: float = (
        0.2  # per image and channel: gain ~ U(1 -+ this), offset ~ U(-+ this / 2) (in [-1, 1])
    )
    class_balance: float = 0.5  # cross-entropy class weights ~ frequency ** -class_balance (0 = unweighted)


class LayoutSegmenter(nn.Module):
    """Per-pixel classifier (B, 3, H, W) in [-1, 1] -> logits (B, 4, H, W) of :data:`LAYOUT_CLASSES`: a full-
    resolution stem, a half-resolution dilated context path (receptive field ~30 px) and a skip connection."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        w2 = 2 * width
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.context = nn.Sequential(
            nn.Conv2d(width, w2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w2, w2, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(w2, w2, 3, padding=4, dilation=4),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Conv2d(width + w2, w2, 3, padding=1), nn.ReLU(), nn.Conv2d(w2, len(LAYOUT_CLASSES), 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)  # (B, w, H, W)
        c = self.context(s)  # (B, 2w, H/2, W/2)
        c = F.interpolate(c, size=s.shape[-2:], mode="bilinear", align_corners=False)  # (B, 2w, H, W)
        return self.head(torch.cat([s, c], dim=1))  # (B, 4, H, W)


def class_map(masks: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W) int64 class indexes of :data:`LAYOUT_CLASSES` from boolean masks (later classes win)."""
    shape = next(iter(masks.values())).shape
    cls = np.zeros(shape, np.int64)
    for k, name in enumerate(LAYOUT_CLASSES):
        if name in masks and masks[name] is not None:
            cls[np.asarray(masks[name], bool)] = k
    return cls


def masks_from_classes(cls: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (H, W) bool} of a class map."""
    return {name: cls == k for k, name in enumerate(LAYOUT_CLASSES)}


def _to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _augment(x: torch.Tensor, cfg: SegmenterConfig, g: torch.Generator) -> torch.Tensor:
    """Random colour shifts (a decoder's colours are not the renderer's: the class must come from shape and
    contrast too), blur (one sigma per batch) and noise of a batch (B, 3, H, W) in [-1, 1]."""
    from torchvision.transforms.v2.functional import gaussian_blur

    b, c = x.shape[:2]
    j = cfg.colour_jitter
    gain = 1 + j * (2 * torch.rand((b, c, 1, 1), generator=g) - 1)  # (B, 3, 1, 1)
    offset = 0.5 * j * (2 * torch.rand((b, c, 1, 1), generator=g) - 1)  # (B, 3, 1, 1)
    x = (x * gain + offset).clamp(-1, 1)
    sigma = float(torch.rand((), generator=g)) * cfg.blur_sigma_max
    if sigma > 0.1:
        x = gaussian_blur(x, kernel_size=[5, 5], sigma=[sigma, sigma])
    noise = float(torch.rand((), generator=g)) * cfg.noise_std / 127.5
    return x + noise * torch.randn(x.shape, generator=g)


def train_segmenter(
    images: np.ndarray, labels: np.ndarray, cfg: SegmenterConfig | None = None, progress: bool = True
) -> LayoutSegmenter:
    """Train a :class:`LayoutSegmenter` on uint8 images (N, H, W, 3) and class maps (N, H, W) (class-weighted
    cross-entropy, so thin roads and small roofs count; AdamW, cosine schedule). Horizontal flips only: vertical flips would swap the sides shadows fall on."""
    cfg = cfg or SegmenterConfig()
    if len(images) != len(labels) or len(images) == 0:
        raise DataError(f"train_segmenter: {len(images)} images and {len(labels)} label maps")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = LayoutSegmenter(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    x_all, y_all = _to_input(images), torch.from_numpy(labels.astype(np.int64))  # (N, 3, H, W), (N, H, W)
    freq = torch.bincount(y_all.flatten(), minlength=len(LAYOUT_CLASSES)).float() / y_all.numel()  # (4,)
    weight = (freq + 1e-3) ** -cfg.class_balance
    weight = weight / (weight * freq).sum()  # the mean pixel weight is 1
    model.train()
    bar = tqdm(range(cfg.steps), desc="layout segmenter", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(x_all), (min(cfg.batch_size, len(x_all)),), generator=g)
        x, y = _augment(x_all[idx], cfg, g), y_all[idx]
        if float(torch.rand((), generator=g)) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(model(x), y, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    log.info("layout segmenter: final batch loss %.4f after %d steps", float(loss.detach()), cfg.steps)
    return model.eval()


@torch.no_grad()
def predict_layout(
    model: LayoutSegmenter, images: np.ndarray, batch_size: int = 256
) -> list[dict[str, np.ndarray]]:
    """Masks {vegetation, roads, buildings, water: (H, W) bool} read from each uint8 image (N, H, W, 3)."""
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    for i in range(0, len(images), batch_size):
        cls = model(_to_input(images[i : i + batch_size])).argmax(dim=1).numpy()  # (b, H, W)
        out += [masks_from_classes(c) for c in cls]
    return out


def save_segmenter(model: LayoutSegmenter, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Weights as safetensors (atomically) plus ``<path>.json`` with the width and ``info``."""
    from safetensors.torch import save_file

    from rsgen.io import atomic_path, atomic_write_json

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_json(path.with_suffix(".json"), {"width": model.width, **(info or {})})
    return path


def load_segmenter(path: str | Path) -> tuple[LayoutSegmenter, dict[str, Any]]:
    """(model, info) saved by :func:`save_segmenter`."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise WeightsNotFoundError(f"layout segmenter {path} (and {meta_path.name}) not found")
    info = json.loads(meta_path.read_text())
    model = LayoutSegmenter(int(info["width"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), info


def load_layout_examples(
    manifest: str | Path, split: str | None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W, 3), class maps (N, H, W)) of a procedural manifest's split, from its PNGs and
    mask PNGs (records without masks are skipped and counted)."""
    from rsgen.data.manifest import read_manifest

    root = Path(manifest).parent
    images, labels, skipped = [], [], 0
    for rec in read_manifest(manifest, split):
        if limit is not None and len(images) >= limit:
            break
        masks = rec.get("masks") or {}
        if not all(name in masks for name in LAYOUT_CLASSES):
            skipped += 1
            continue
        images.append(read_rgb(root / rec["path"]))
        labels.append(class_map({n: read_mask(root / masks[n]) for n in LAYOUT_CLASSES}))
    if skipped:
        log.warning("%s: %d records without layout masks skipped", manifest, skipped)
    if not images:
        raise DataError(f"{manifest}: no records with layout masks in split {split!r}")
    return np.stack(images), np.stack(labels)


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 of an image file."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) bool of a mask PNG (non-zero = in the mask)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def segmenter_for(
    manifest: str | Path,
    path: str | Path,
    cfg: SegmenterConfig | None = None,
    split: str = "train",
    progress: bool = True,
) -> LayoutSegmenter:
    """The segmenter saved at ``path`` if it was trained on this manifest with this config, else train it on
    the manifest's ``split`` and save it there."""
    cfg = cfg or SegmenterConfig()
    manifest = Path(manifest)
    key = hashlib.sha1(
        json.dumps(
            {"manifest": str(manifest.resolve()), "split": split, **asdict(cfg)}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    path = Path(path)
    if path.is_file() and path.with_suffix(".json").is_file():
        model, info = load_segmenter(path)
        if info.get("fingerprint") == key:
            log.info("layout segmenter: reusing %s", path)
            return model
    images, labels = load_layout_examples(manifest, split, cfg.max_train)
    log.info("layout segmenter: training on %d %s scenes of %s", len(images), split, manifest)
    model = train_segmenter(images, labels, cfg, progress)
    save_segmenter(model, path, {"fingerprint": key, "n_train": len(images), "config": asdict(cfg)})
    return model


__all__ = [
    "LAYOUT_CLASSES",
    "LayoutSegmenter",
    "SegmenterConfig",
    "class_map",
    "load_layout_examples",
    "load_segmenter",
    "masks_from_classes",
    "predict_layout",
    "read_mask",
    "read_rgb",
    "save_segmenter",
    "segmenter_for",
    "train_segmenter",
]
