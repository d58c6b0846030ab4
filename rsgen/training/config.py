"""Typed training configuration, filled from ``configs/<name>.yaml`` by :func:`rsgen.config.load_config`.

One :class:`TrainConfig` drives every mode (``vae`` | ``base`` | ``controlnet`` | ``sr``); sections a mode
does not use are ignored by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rsgen.config import load_config
from rsgen.errors import ConfigError
from rsgen.models.config import ModelConfig
from rsgen.models.metadata_embedding import MetadataEmbeddingConfig
from rsgen.models.scheduler import DiffusionConfig
from rsgen.models.text import TextConfig
from rsgen.training.modes import MODES

Mode = Literal["vae", "base", "controlnet", "sr"]


@dataclass
class DataConfig:
    """manifest: JSONL written by ``rsgen curate``; image_size: pixel side given to the model (for ``sr``:
    the high-res output side). cache_latents: encode each image once with the frozen VAE and train on the
    cache (``cache_dir`` defaults to ``<output_dir>/latent-cache``). cache_only: train from a complete latent
    cache alone, with no manifest or images (a remote GPU run, see :mod:`tools.remote_gpu.bundle`)."""

    manifest: str | None = None
    split: str = "train"
    image_size: int = 64
    random_caption: bool = True
    sources: list[str] | None = None
    # False: records smaller than image_size are left out instead of upsampled (an upsampled 32 px image at
    # 20 m is only a blurred 10 m image, which would teach the model the wrong look for 10 m).
    allow_upsampling: bool = False
    num_workers: int = 0
    cache_latents: bool = True
    cache_dir: str | None = None
    cache_only: bool = False
    limit: int | None = None  # use only the first N samples (smoke tests)
    # Random rotations by 90 degrees and mirror images (valid for nadir imagery, see docs/data.md). null: on
    # for image-space training (no latent cache) except ControlNet, whose condition images are read apart.
    flips_rotations: bool | None = None
    # Size bucketing (rsgen.training.bucketing): each image is shown at the (height, width) bucket closest to
    # its aspect ratio and every batch holds one bucket. buckets: explicit [height, width] shapes (multiples of
    # the VAE factor); null = automatic ones of about image_size**2 pixels, 1:2 .. 2:1, sides multiples of
    # bucket_step px (null = VAE factor x 8).
    bucketing: bool = False
    buckets: list[list[int]] | None = None
    bucket_step: int | None = None


@dataclass
class ControlNetTrainConfig:
    """condition: the condition type the ControlNet learns (see ``rsgen.conditions.known_conditions()``);
    image-derived types (canny, lineart, shuffle) are made from the training image, others are read from the
    manifest record's ``conditions`` paths."""

    condition: str = "canny"
    condition_options: dict = field(default_factory=dict)


@dataclass
class LoRAConfig:
    """rank 0 = train the whole UNet; > 0 = freeze it and train LoRA adapters (peft) of this rank."""

    rank: int = 0
    alpha: float | None = None


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_scheduler: str = "constant_with_warmup"  # any diffusers.optimization.get_scheduler name
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True  # ramp the decay up as (1 + step) / (10 + step)


@dataclass
class TrainConfig(ModelConfig):
    """Everything one training run needs: the model-shape sections of :class:`ModelConfig` (text, metadata,
    unet, vae, diffusion, sr) and the run's own. ``init_from``: an rsgen model folder to start from (the frozen base
    model of ``controlnet``; the VAE / text encoder of ``base`` and ``sr``; or a model to fine-tune)."""

    mode: Mode = "base"
    seed: int = 0
    output_dir: str = "runs/default"
    init_from: str | None = None
    max_steps: int = 10000
    max_minutes: float | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    # a step whose loss is NaN or inf is skipped (no optimizer step); this many in a row stop the run
    max_nonfinite_steps: int = 20
    sample_every: int = 1000
    sample_prompts: list[str] = field(
        default_factory=lambda: [
            "a satellite image of a forest",
            "a satellite image of a river through farmland",
            "a satellite image of a dense residential area",
            "a satellite image of a highway",
        ]
    )
    sample_steps: int = 25
    data: DataConfig = field(default_factory=DataConfig)
    controlnet: ControlNetTrainConfig = field(default_factory=ControlNetTrainConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps={self.max_steps}: expected a positive number of steps")
        if self.optim.batch_size < 1:
            raise ConfigError(f"optim.batch_size={self.optim.batch_size}: expected >= 1")
        if self.mode == "controlnet" and not self.init_from:
            raise ConfigError("mode=controlnet needs init_from: the trained base model folder to control")

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


def load_train_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from ``configs/<name>.yaml`` (or a path) with ``key.sub=value`` overrides."""
    return load_config(TrainConfig, name_or_path, overrides)


__all__ = [
    "MODES",
    "ControlNetTrainConfig",
    "DataConfig",
    "DiffusionConfig",
    "EMAConfig",
    "LoRAConfig",
    "MetadataEmbeddingConfig",
    "OptimConfig",
    "TextConfig",
    "TrainConfig",
    "load_train_config",
]
