"""Strong class judges: one classifier per label set (EuroSAT, UC Merced, AID) for text faithfulness.

A judge answers "is this generated image of the class its prompt asked for?". Its verdict is only worth what the
judge itself scores on real held-out images, so every judge carries its own real-image accuracy
(``config.json``'s ``real_accuracy``) and reports print it beside the verdict.

The three judges share one torchvision ResNet backbone trained jointly on the three label sets (multi-task: the
small UC Merced and AID sets borrow features learnt on the others), with one linear head per label set. Batch
norm statistics differ between the sets (10 m Sentinel-2 against 0.3 m aerial photos), so each head keeps its own
running statistics, re-estimated on its own training images after training; selecting a head loads them.

Saved in ``assets/eval/class-judges`` as ``config.json`` + ``model.safetensors`` (half precision). The network is a
plain ``nn.Module`` (it needs nothing of diffusers), so it trains wherever torch and torchvision are installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.paths import ASSETS_DIR

DEFAULT_CLASS_JUDGES_DIR = ASSETS_DIR / "eval" / "class-judges"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
BACKBONES = ("resnet18", "resnet34", "resnet50")


@dataclass(frozen=True)
class LabelSet:
    """One label set a judge head answers: its class names, input size and per-channel normalisation."""

    name: str
    classes: tuple[str, ...]
    input_size: int  # images are resized to input_size x input_size before the backbone
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelSet:
        return cls(d["name"], tuple(d["classes"]), int(d["input_size"]), tuple(d["mean"]), tuple(d["std"]))


def _batch_norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


class ClassJudgeNet(nn.Module):
    """A torchvision ResNet backbone with one linear head and one set of batch-norm statistics per label set.

    ``forward(x, head)``: ``x`` normalised ``(B, 3, S, S)`` -> logits ``(B, len(classes of head))``.
    Use :class:`ClassJudge` for raw images; it resizes and normalises.
    """

    def __init__(
        self,
        label_sets: Sequence[dict] = (),
        backbone: str = "resnet18",
        real_accuracy: dict | None = None,
        training_summary: dict | None = None,
    ) -> None:
        super().__init__()
        self.config = {
            "label_sets": [dict(d) for d in label_sets],
            "backbone": backbone,
            "real_accuracy": dict(real_accuracy or {}),
            "training_summary": dict(training_summary or {}),
        }
        if backbone not in BACKBONES:
            raise ConfigError(f"class judge backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
        if not label_sets:
            raise ConfigError("a class judge needs at least one label set")
        self.label_sets = {d["name"]: LabelSet.from_dict(d) for d in label_sets}
        net = getattr(torchvision.models, backbone)(weights=None)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.trunk = net
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.feature_dim, len(ls.classes)) for name, ls in self.label_sets.items()}
        )
        # per label set: a copy of every batch norm's running mean / var, loaded into the backbone by use_head
        for name in self.label_sets:
            for i, bn in enumerate(_batch_norms(self.trunk)):
                self.register_buffer(f"bn_{name}_{i}_mean", bn.running_mean.detach().clone())
                self.register_buffer(f"bn_{name}_{i}_var", bn.running_var.detach().clone())

    @torch.no_grad()
    def use_head(self, name: str) -> None:
        """Load the batch-norm statistics of label set ``name`` into the backbone."""
        if name not in self.label_sets:
            raise ConfigError(f"class judge has no label set {name!r}; it has {', '.join(self.label_sets)}")
        for i, bn in enumerate(_batch_norms(self.trunk)):
            bn.running_mean.copy_(getattr(self, f"bn_{name}_{i}_mean"))
            bn.running_var.copy_(getattr(self, f"bn_{name}_{i}_var"))

    @torch.no_grad()
    def store_head_statistics(self, name: str) -> None:
        """Keep the backbone's current batch-norm running statistics as those of label set ``name``."""
        for i, bn in enumerate(_batch_norms(self.trunk)):
            getattr(self, f"bn_{name}_{i}_mean").copy_(bn.running_mean)
            getattr(self, f"bn_{name}_{i}_var").copy_(bn.running_var)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, feature_dim)
        return self.trunk(x)

    def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:  # (B, 3, S, S) -> (B, n_classes)
        return self.heads[head](self.features(x))


def prepare_images(images: torch.Tensor, label_set: LabelSet) -> torch.Tensor:
    """Raw images -> the judge's input: ``(B, 3, H, W)`` uint8 0-255 or float 0-1 -> normalised ``(B, 3, S, S)``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"class judge expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    s = label_set.input_size
    if x.shape[-2:] != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(label_set.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(label_set.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ClassJudge:
    """One label set's classifier: ``predict(images)`` -> class indices; ``classes`` names them.

    ``real_accuracy`` is the judge's own accuracy on real held-out images of its label set (None when unmeasured).
    """

    def __init__(self, net: ClassJudgeNet, label_set: str) -> None:
        self.net = net.eval()
        self.label_set = net.label_sets.get(label_set)
        if self.label_set is None:
            raise ConfigError(
                f"class judge has no label set {label_set!r}; it has {', '.join(net.label_sets)}"
            )
        self.name = label_set
        acc = net.config["real_accuracy"].get(label_set)
        self.real_accuracy: float | None = None if acc is None else float(acc)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_set.classes

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B, n_classes)`` float32 logits on the CPU."""
        device = next(self.net.parameters()).device
        self.net.use_head(self.name)
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = prepare_images(images[i : i + batch_size].to(device), self.label_set)
            out.append(self.net(x, self.name).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    @property
    def description(self) -> str:
        """What a report prints beside the verdict: the judge and its own accuracy on real held-out images."""
        backbone = self.net.config["backbone"]
        acc = f"{self.real_accuracy:.3f}" if self.real_accuracy is not None else "not measured"
        return f"class judge {self.name} ({backbone}; accuracy on real held-out {self.name} images {acc})"

    def predict_hwc(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 images (as evaluation sets hold them) -> ``(B,)`` class indices."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
        return self.predict(x, batch_size).numpy()

    def predict(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B,)`` class indices."""
        return self.logits(images, batch_size).argmax(dim=1)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> float:
        """Fraction of ``images`` read as their ``labels`` (class indices)."""
        if len(labels) == 0:
            return float("nan")
        return float((self.predict(images, batch_size) == labels.cpu()).float().mean())


def load_class_judges(path: str | Path | None = None, device: str | torch.device = "cpu") -> ClassJudgeNet:
    """The shipped (or a given) class-judge network, from safetensors only."""
    path = Path(path) if path is not None else DEFAULT_CLASS_JUDGES_DIR
    weights, config = path / WEIGHTS_NAME, path / CONFIG_NAME
    if not weights.is_file() or not config.is_file():
        raise WeightsNotFoundError(
            f"class judges not found at {path} (expected {CONFIG_NAME} + {WEIGHTS_NAME}); "
            "train them with eval/train_class_judges.py"
        )
    try:
        net = ClassJudgeNet(**json.loads(config.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise ConfigError(f"{config}: not a class-judge config ({e})") from None
    state = {k: v.float() for k, v in load_file(weights).items()}  # stored in half precision
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsNotFoundError(
            f"{weights}: does not match {config} ({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return net.to(device).eval()


def save_class_judges(net: ClassJudgeNet, out_dir: str | Path) -> None:
    """Write ``config.json`` and half-precision ``model.safetensors``, each atomically."""
    from rsgen.io import atomic_path, atomic_write_text

    out = Path(out_dir)
    tensors = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()
    }
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(out / CONFIG_NAME, json.dumps(net.config, indent=2))


def load_class_judge(label_set: str, path: str | Path | None = None, device: str = "cpu") -> ClassJudge:
    """The judge of one label set (``eurosat``, ``ucm`` or ``aid`` for the shipped judges)."""
    return ClassJudge(load_class_judges(path, device), label_set)


def judge_for_labels(labels: Sequence[str | None], net: ClassJudgeNet) -> ClassJudge | None:
    """The judge whose classes name the most of ``labels`` (any spelling; None when none is named)."""
    from rsgen.eval.text_faithfulness import label_key, normalise_label

    best, best_score = None, (0, 0)
    for name, ls in net.label_sets.items():
        own = {label_key(c) for c in ls.classes}
        exact = sum(label_key(label) in own for label in labels if label)  # the set's own class names first,
        alias = sum(
            normalise_label(label, ls.classes) is not None for label in labels if label
        )  # then aliases
        if (exact, alias) > best_score:
            best, best_score = name, (exact, alias)
    return ClassJudge(net, best) if best is not None else None
