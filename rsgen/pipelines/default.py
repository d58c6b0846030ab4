"""Loading a pipeline: a trained model folder, or, when no trained weights exist (a fresh checkout), a model
of the ``tiny`` config with random weights and a fixed seed, flagged ``untrained`` so callers say so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from rsgen.errors import WeightsNotFoundError
from rsgen.paths import DEFAULT_MODEL_DIR
from rsgen.pipelines.pipeline import RSGenPipeline
from rsgen.safety import check_model_folder, use_safetensors

log = logging.getLogger(__name__)

UNTRAINED_WARNING = "WARNING: untrained random weights (no trained model at {path}); images are noise-like"
DEFAULT_RANDOM_CONFIG = "tiny"


def build_random_pipeline(
    config: Any = DEFAULT_RANDOM_CONFIG,
    *,
    seed: int = 0,
    super_resolution: bool = False,
    text: tuple[Any, torch.nn.Module] | None = None,
) -> RSGenPipeline:
    """A pipeline of a config's model shapes (``ModelConfig`` / ``TrainConfig``, or a config name / path) with random weights.

    ``super_resolution``: a SR stage of the config's ``sr.factor`` (UNet input + the folded low-res image,
    noise-level embedding, ``_sr_factor`` in the UNet config). ``text``: a
    (tokenizer, model) to use instead of the config's text encoder (tests use a tiny one).
    """
    from rsgen.models import build_unet, build_vae, load_text_encoder, time_embed_dim
    from rsgen.models.config import load_model_config
    from rsgen.models.metadata_embedding import build_metadata_embedding
    from rsgen.models.scheduler import make_noise_scheduler
    from rsgen.models.super_resolution import low_res_channels, mark_super_resolution
    from rsgen.models.text import text_hidden_size

    # a ModelConfig or TrainConfig (both hold the model-shape sections), or a config name / path
    cfg = load_model_config(config) if isinstance(config, str | Path) else config
    torch.manual_seed(seed)
    tokenizer, text_model = text if text is not None else load_text_encoder(cfg.text.encoder)
    unet_cfg = cfg.unet
    vae_factor = 2 ** (len(cfg.vae.block_out_channels) - 1)
    if super_resolution:
        import dataclasses

        unet_cfg = dataclasses.replace(
            unet_cfg, in_channels=cfg.vae.latent_channels + low_res_channels(cfg.sr.factor, vae_factor)
        )
    unet = build_unet(unet_cfg, text_hidden_size(text_model)).eval()
    if super_resolution:
        mark_super_resolution(unet, cfg.sr.factor, vae_factor)
    vae = build_vae(cfg.vae).eval()
    embedding = build_metadata_embedding(cfg.metadata, time_embed_dim(unet), super_resolution).eval()
    return RSGenPipeline(vae, text_model, tokenizer, unet, embedding, make_noise_scheduler(cfg.diffusion))


def load_pipeline(path: str | Path, device: str | torch.device | None = None) -> RSGenPipeline:
    """An rsgen pipeline folder (``model_index.json`` + components, safetensors) from a local path."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise WeightsNotFoundError(
            f"model: no rsgen pipeline folder at {path} (expected {path}/model_index.json; rsgen never downloads)"
        )
    check_model_folder(
        path
    )  # JSON object, trusted libraries, no custom code, safetensors (or --trust-pickle)
    try:
        pipe = RSGenPipeline.from_pretrained(path, use_safetensors=use_safetensors())
    except (
        OSError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
    ) as e:  # diffusers' load of a broken folder
        raise WeightsNotFoundError(
            f"model {path}: cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "expected a pipeline folder saved by rsgen"
        ) from None
    pipe.untrained = False
    if device is not None:
        pipe.to(device)
    return pipe


def load_default_pipeline(
    path: str | Path | None = None,
    *,
    random_config: str | Any = DEFAULT_RANDOM_CONFIG,
    super_resolution: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> RSGenPipeline:
    """The model at ``path`` (default ``assets/default-model``); when it does not exist, the ``random_config``
    model with random weights (seed fixed), with ``pipe.untrained = True`` and ``pipe.untrained_reason`` (the line the CLI prints)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if (path / "model_index.json").is_file():
        return load_pipeline(path, device)
    log.info(UNTRAINED_WARNING.format(path=path))
    pipe = build_random_pipeline(random_config, seed=seed, super_resolution=super_resolution)
    pipe.untrained = True
    pipe.untrained_reason = UNTRAINED_WARNING.format(path=path)
    if device is not None:
        pipe.to(device)
    return pipe
