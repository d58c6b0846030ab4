"""Distribution metrics (FID, KID, IS) computed by torchmetrics on features of a named feature network.

Two feature networks:

* the project's RS feature network (:mod:`rsgen.eval.feature_net`), the offline default: metrics are named
  **FID_RS / KID_RS / IS_RS** and are not comparable with published FID numbers;
* the standard FID InceptionV3 (``pt_inception-2015-12-05-6726825d.pth``) when the user gives its weight file:
  metrics are named FID / KID / IS and are comparable with published ones.

Each image set passes through the network once (pooled features and class logits together); torchmetrics'
``FrechetInceptionDistance``, ``KernelInceptionDistance`` and ``InceptionScore`` then receive those features
through :class:`PrecomputedFeatures` as their ``feature=`` module, so the reference set's features can be
reused across many generated sets.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from rsgen.errors import WeightsNotFoundError
from rsgen.seeding import seeded_cpu_rng

log = logging.getLogger(__name__)

MIN_RELIABLE_SAMPLES = 1000


class PrecomputedFeatures(nn.Module):
    """Identity ``feature=`` module for torchmetrics: ``update`` receives ``(N, D)`` features already extracted."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, D)
        return features


class RSFeatureExtractor(nn.Module):
    """The RS feature network as an extractor: uint8 ``(B, 3, H, W)`` -> (features ``(B, D)``, logits ``(B, K)``)."""

    name = "rs-feature-net"
    suffix = "_RS"

    def __init__(self, net: nn.Module, description: str = "") -> None:
        super().__init__()
        self.net = net.eval()
        self.description = description or "project RS feature network (EuroSAT-trained ResNet)"

    def train(self, mode: bool = True) -> RSFeatureExtractor:  # always in eval mode
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.net.features(images)  # (B, D)
        return feats, self.net.head(feats)  # (B, D), (B, K)


class StandardInceptionExtractor(nn.Module):
    """The standard FID InceptionV3 (torch-fidelity layout): uint8 ``(B, 3, H, W)`` -> (pool3 ``(B, 2048)``,
    unbiased logits ``(B, 1008)``). Images are resized to 299 inside."""

    name = "inception-v3-fid"
    suffix = ""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        state_dict = load_inception_state_dict(weights_path)
        # torch-fidelity reads the file itself with an unrestricted torch.load; hand it a copy we wrote from
        # tensors only (read above with safetensors or weights_only=True), so no pickled code ever runs.
        with tempfile.TemporaryDirectory() as tmp:
            verified = Path(tmp) / "inception.pth"
            torch.save(state_dict, verified)
            self.inception = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(verified),
            )
        self.description = f"standard FID InceptionV3 from {Path(weights_path).name}"

    def train(self, mode: bool = True) -> StandardInceptionExtractor:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # torchmetrics' forward returns only the first requested feature; its inner forward returns all of them
        pool, logits = self.inception._torch_fidelity_forward(images)
        return pool.reshape(len(images), -1), logits  # (B, 2048), (B, 1008)


def load_inception_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of an InceptionV3 weight file (``.safetensors``, or ``.pth`` read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"InceptionV3 weights not found at {path} (expected the FID file "
            "pt_inception-2015-12-05-6726825d.pth or a .safetensors copy; rsgen never downloads weights)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsNotFoundError(
            f"{path}: not a plain tensor state dict ({str(e).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def build_feature_extractor(
    inception_weights: str | Path | None = None, feature_net: str | Path | None = None
):
    """The standard InceptionV3 when ``inception_weights`` is given, else the RS feature network."""
    if inception_weights is not None:
        return StandardInceptionExtractor(inception_weights)
    from rsgen.eval.feature_net import load_feature_net, read_training_summary

    net = load_feature_net(feature_net)
    acc = read_training_summary(feature_net).get("val_accuracy")
    desc = "project RS feature network (ResNet trained on EuroSAT-RGB train"
    desc += f", EuroSAT val accuracy {acc:.3f})" if acc is not None else ")"
    return RSFeatureExtractor(net, desc)


@torch.no_grad()
def extract_features(
    extractor: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    images: np.ndarray,
    batch_size: int = 128,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, D)`` and logits ``(N, K)`` (float64) of ``(N, H, W, 3)`` uint8 images."""
    from rsgen.eval.feature_net import to_nchw

    feats, logits = [], []
    for i in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress):
        f, lg = extractor(to_nchw(images[i : i + batch_size]))  # (B, D), (B, K)
        feats.append(f.double())
        logits.append(lg.double())
    return torch.cat(feats), torch.cat(logits)


@contextlib.contextmanager
def _quiet_feature_buffer_warning() -> Iterator[None]:
    """torchmetrics warns that KID/IS keep all features; here they are precomputed and already in memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Metric `.*` will save all extracted features")
        yield


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two ``(N, D)`` feature sets (torchmetrics ``FrechetInceptionDistance``)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    metric.set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over subsets) between two ``(N, D)`` feature sets (torchmetrics); the random subsets are
    drawn from ``seed``, so the same sets always give the same numbers."""
    from torchmetrics.image.kid import KernelInceptionDistance

    # The MMD estimator is unbiased at any subset size; half the smaller set keeps subsets from all being equal.
    subset_size = max(2, min(1000, min(len(real), len(fake)) // 2))
    with _quiet_feature_buffer_warning():
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=subset_size
        )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with seeded_cpu_rng(seed):
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """IS (mean, std over splits) of ``(N, K)`` class logits (torchmetrics ``InceptionScore``)."""
    from torchmetrics.image.inception import InceptionScore

    splits = max(1, min(splits, len(logits) // 2))
    with _quiet_feature_buffer_warning():
        metric = InceptionScore(feature=PrecomputedFeatures(logits.shape[1]), splits=splits)
    metric.update(logits)
    with seeded_cpu_rng(seed):
        mean, std = metric.compute()
    return float(mean), float(std)


@dataclass
class DistributionResult:
    """FID / KID / IS of a generated set against a reference set, with what they were measured on."""

    metrics: dict[str, float]
    num_generated: int
    num_reference: int
    feature_network: str
    reference_set: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def distribution_metrics(
    generated: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    extractor_name: str,
    suffix: str,
    reference_set: str,
) -> DistributionResult:
    """FID, KID and IS from pre-extracted ``(features, logits)`` of the generated and reference sets.

    Names carry ``suffix`` (``_RS`` for the RS feature network): FID_RS is not comparable to published FID.
    IS is also given for the reference set, its value for real data.
    """
    gen_f, gen_l = generated
    ref_f, ref_l = reference
    kid_mean, kid_std = kernel_distance(ref_f, gen_f)
    is_mean, is_std = inception_score(gen_l)
    is_ref_mean, _ = inception_score(ref_l)
    metrics = {
        f"FID{suffix}": frechet_distance(ref_f, gen_f),
        f"KID{suffix}_mean": kid_mean,
        f"KID{suffix}_std": kid_std,
        f"IS{suffix}_mean": is_mean,
        f"IS{suffix}_std": is_std,
        f"IS{suffix}_reference": is_ref_mean,
    }
    warnings = []
    if len(gen_f) < MIN_RELIABLE_SAMPLES:
        warnings.append(
            f"only {len(gen_f)} generated samples, fewer than {MIN_RELIABLE_SAMPLES}: FID/KID are biased upward; "
            "compare only with numbers measured on the same number of samples"
        )
    if suffix:
        warnings.append(
            f"FID{suffix}/KID{suffix}/IS{suffix} use the project's RS feature network, not InceptionV3: "
            "not comparable with published FID/KID/IS"
        )
    return DistributionResult(metrics, len(gen_f), len(ref_f), extractor_name, reference_set, warnings)


def compare_image_sets(
    generated: np.ndarray,
    reference: np.ndarray,
    reference_set: str,
    inception_weights: str | Path | None = None,
    feature_net: str | Path | None = None,
) -> DistributionResult:
    """FID/KID/IS of ``(N, H, W, 3)`` uint8 generated images against reference images, one call."""
    extractor = build_feature_extractor(inception_weights, feature_net)
    gen = extract_features(extractor, generated)
    ref = extract_features(extractor, reference)
    return distribution_metrics(gen, ref, extractor.description, extractor.suffix, reference_set)
