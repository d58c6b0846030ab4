"""The shape of a model: the sections of a training config that decide which weights it has and how it is
sampled (text encoder, metadata embedding, UNet, autoencoder, noise schedule, super-resolution factor).

A training config (``configs/<name>.yaml``) holds these sections beside its training ones; pipelines read only
these (e.g. to build a model of a config's shapes with random weights), so sampling code never depends on the
training package."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rsgen.config import load_config, resolve_config_path
from rsgen.errors import ConfigError
from rsgen.models.metadata_embedding import MetadataEmbeddingConfig
from rsgen.models.scheduler import DiffusionConfig
from rsgen.models.super_resolution import SuperResolutionConfig
from rsgen.models.text import TextConfig
from rsgen.models.unet import UNetConfig
from rsgen.models.vae import VAEConfig


@dataclass
class ModelConfig:
    """The model-shape sections of a training config (the same dataclasses :class:`TrainConfig` holds)."""

    text: TextConfig = field(default_factory=TextConfig)
    metadata: MetadataEmbeddingConfig = field(default_factory=MetadataEmbeddingConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sr: SuperResolutionConfig = field(default_factory=SuperResolutionConfig)


MODEL_SECTIONS = tuple(f.name for f in dataclasses.fields(ModelConfig))


def load_model_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ModelConfig:
    """The model-shape sections of a training config (``configs/<name>.yaml`` or a path), with the overrides
    that address them (``sr.factor=4``); the config's training sections are not read."""
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    shape = {k: v for k, v in data.items() if k in MODEL_SECTIONS}
    ours = [o for o in overrides if o.partition("=")[0].strip().split(".")[0] in MODEL_SECTIONS]
    return load_config(ModelConfig, shape, ours)


__all__ = ["MODEL_SECTIONS", "ModelConfig", "load_model_config"]
