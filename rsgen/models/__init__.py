"""Models and their shape configs (:class:`ModelConfig`): metadata embedding, text encoders, UNet, VAE, ControlNet and super-resolution stage inputs."""

from rsgen.models.config import ModelConfig, load_model_config
from rsgen.models.controlnet import (
    controlled_unet_forward,
    controlnet_from_unet,
    controlnet_residuals,
    load_controlnet,
)
from rsgen.models.metadata_embedding import MetadataEmbedding, MetadataEmbeddingConfig, drop_metadata_fields
from rsgen.models.scheduler import DiffusionConfig, make_noise_scheduler
from rsgen.models.super_resolution import SuperResolutionConfig, low_res_condition, sr_unet_input
from rsgen.models.text import PromptEncoder, TextConfig, encode_prompts, load_text_encoder
from rsgen.models.unet import UNetConfig, build_unet, load_unet, make_unet, time_embed_dim
from rsgen.models.vae import VAEConfig, build_vae, load_vae, make_vae, vae_scale_factor

__all__ = [
    "DiffusionConfig",
    "MetadataEmbeddingConfig",
    "ModelConfig",
    "TextConfig",
    "load_model_config",
    "make_noise_scheduler",
    "MetadataEmbedding",
    "PromptEncoder",
    "SuperResolutionConfig",
    "UNetConfig",
    "VAEConfig",
    "build_unet",
    "build_vae",
    "controlled_unet_forward",
    "controlnet_from_unet",
    "drop_metadata_fields",
    "encode_prompts",
    "load_controlnet",
    "load_text_encoder",
    "load_unet",
    "load_vae",
    "low_res_condition",
    "make_unet",
    "make_vae",
    "controlnet_residuals",
    "sr_unet_input",
    "time_embed_dim",
    "vae_scale_factor",
]
