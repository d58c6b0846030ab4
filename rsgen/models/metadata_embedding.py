"""Metadata embedding: per-field Fourier features and MLPs, a learned "missing" embedding per field, and a
zero-initialised output projection.

Two other ``style`` values exist for ablations at the same training budget:
- ``"diffusionsat"``: DiffusionSat's scheme (Khanna et al. 2024): each value column through a sinusoidal
  timestep-style embedding and its own MLP, the field embeddings summed; a missing field has its values set to 0
  (no learned "missing" state), so "unknown" and "value 0" are the same input.
- ``"none"``: no metadata at all (the output is always zero; the model is text-only).

Its output is added to the UNet's timestep embedding (passed as ``class_labels`` to a UNet built with
``class_embed_type="identity"``). Because the output projection starts at zero, attaching it to a pretrained
UNet leaves the UNet's predictions unchanged until training moves it. Input encoding (normalisation, the
"present" mask) is :func:`rsgen.metadata.encode_metadata`; this module only embeds the encoded values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from rsgen.errors import ConfigError
from rsgen.metadata import (
    METADATA_DIM,
    MODEL_FIELDS,
    NUM_METADATA_FIELDS,
    Metadata,
    encode_metadata,
    field_slices,
)

METADATA_STYLES = ("fourier", "diffusionsat", "none")
# Where the local season's inputs are: value columns and "present" columns of the location and season fields.
_COLUMNS = field_slices()
_FIELD_INDEX = {f.name: i for i, f in enumerate(MODEL_FIELDS)}


def fourier_features(x: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < num_frequencies, per column: (B, W) -> (B, W * (2F + 1))."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=x.device, dtype=x.dtype)) * math.pi  # (F,)
    angles = x[..., None] * freqs  # (B, W, F)
    feats = torch.cat([x[..., None], angles.sin(), angles.cos()], dim=-1)  # (B, W, 2F + 1)
    return feats.flatten(1)


def sinusoid_features(x: torch.Tensor, dim: int) -> torch.Tensor:
    """DiffusionSat-style: each column (values in about [-1, 1], scaled by 1000 like a timestep) through diffusers'
    sinusoidal timestep embedding: (B, W) -> (B, W * dim)."""
    from diffusers.models.embeddings import get_timestep_embedding

    b, w = x.shape
    emb = get_timestep_embedding(
        x.reshape(-1).float() * 1000.0, dim, flip_sin_to_cos=True, downscale_freq_shift=0
    )
    return emb.to(x.dtype).reshape(b, w * dim)


class MetadataEmbedding(ModelMixin, ConfigMixin):
    """Embeds encoded metadata ``(B, METADATA_DIM)`` + present mask ``(B, NUM_FIELDS)`` to ``(B, embed_dim)``.

    Args:
        embed_dim: output width; must equal the UNet's time-embedding width (4 x its first block's channels).
        field_widths: value columns per field, in the order of :data:`rsgen.metadata.MODEL_FIELDS`.
        num_frequencies: Fourier octaves per value column.
        hidden_dim: width of each field's MLP output (and of its "missing" embedding).
        use_noise_level: super-resolution stages also embed the noise-augmentation level of their low-res input.
        max_noise_level: the noise level is divided by this before its Fourier features (levels are DDPM
            timesteps of the augmentation schedule).
        style: ``"fourier"`` (rsgen's), ``"diffusionsat"`` or ``"none"`` (see the module docstring).
        joint_dim: width of a joint layer over all field embeddings before the output projection (0 = none).
            Without it the ``fourier`` embedding is a sum of per-field terms, so rules that couple fields
            (snow needs winter *in the local hemisphere*: season x latitude) are left to the UNet to form.
        local_season: also embed the *local* season, the day-of-year angle turned by half a year south of the
            equator (``sign(lat) * (sin, cos)``), as one more field (missing unless both location and date
            are known). Seasons are opposite in the two hemispheres, so averaged over both the calendar date
            says nothing about snow or leaf colour; only its product with the hemisphere does, an XOR that a
            sum of per-field terms cannot form. ``fourier`` style only.
        local_season_latitude: the local season field also sees the distance from the equator (``|sin(lat)|``):
            how strong the seasons are there. Leaf state and snow follow a temperature that depends on the
            product of latitude and season (no winter in the tropics, a long one near the poles), a product that
            a sum of a latitude term and a season term cannot form either. Needs ``local_season``.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> MetadataEmbedding:
        """diffusers' load, safetensors only unless the user trusts pickle (:func:`rsgen.safety.use_safetensors`)."""
        from rsgen.safety import use_safetensors

        kwargs.setdefault("use_safetensors", use_safetensors())
        return super().from_pretrained(*args, **kwargs)

    @register_to_config
    def __init__(
        self,
        embed_dim: int = 256,
        field_widths: Sequence[int] = tuple(f.width for f in MODEL_FIELDS),
        num_frequencies: int = 6,
        hidden_dim: int = 128,
        use_noise_level: bool = False,
        max_noise_level: int = 1000,
        style: str = "fourier",
        joint_dim: int = 0,
        local_season: bool = False,
        local_season_latitude: bool = False,
    ) -> None:
        super().__init__()
        if style not in METADATA_STYLES:
            raise ConfigError(
                f"metadata embedding style {style!r}: expected one of {', '.join(METADATA_STYLES)}"
            )
        self.field_widths = [int(w) for w in field_widths]
        if local_season and (style != "fourier" or self.field_widths != [f.width for f in MODEL_FIELDS]):
            raise ConfigError(
                "metadata embedding: local_season needs style 'fourier' and the standard fields (MODEL_FIELDS)"
            )
        if local_season_latitude and not local_season:
            raise ConfigError("metadata embedding: local_season_latitude needs local_season")
        if style == "diffusionsat":  # sinusoid of each value column, hidden_dim wide
            feats = [w * hidden_dim for w in self.field_widths]
        else:
            feats = [w * (2 * num_frequencies + 1) for w in self.field_widths]
        if use_noise_level:  # one more column, embedded like the values
            feats.append(hidden_dim if style == "diffusionsat" else 2 * num_frequencies + 1)
        # The local season (2 columns, 3 with the distance from the equator), embedded like a field, with its own
        # "unknown" embedding.
        season_columns = 3 if local_season_latitude else 2
        self.local_season_mlp = (
            nn.Sequential(
                nn.Linear(season_columns * (2 * num_frequencies + 1), hidden_dim),
                nn.SiLU(),
                nn.Linear(hidden_dim, hidden_dim),
            )
            if local_season
            else None
        )
        self.local_season_missing = nn.Parameter(torch.randn(hidden_dim) * 0.02) if local_season else None
        self.field_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(f, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
            for f in feats
        )
        # One learned embedding per metadata field for "this field is unknown" (noise level is never missing).
        self.missing = nn.Parameter(torch.randn(len(self.field_widths), hidden_dim) * 0.02)  # (N, H)
        self.act = nn.SiLU()
        summed = style == "diffusionsat"  # DiffusionSat adds the field embeddings instead of concatenating
        width = (1 if summed else len(feats) + int(local_season)) * hidden_dim
        # (B, width) -> (B, joint_dim): a layer that sees every field at once (cross-field interactions)
        self.joint = nn.Sequential(nn.Linear(width, joint_dim), nn.SiLU()) if joint_dim > 0 else None
        self.proj_out = nn.Linear(joint_dim if joint_dim > 0 else width, embed_dim)
        self.initialize_weights()
        # Parameters a style never uses stay in the state dict (one layout for every style) but are frozen, so
        # that optimizers, EMA and multi-process training see only what the output depends on.
        if style == "none":
            self.requires_grad_(False)
        elif style == "diffusionsat":
            self.missing.requires_grad_(False)

    def initialize_weights(self) -> None:
        """Zero the output projection so that the embedding adds exactly nothing at initialisation."""
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @property
    def num_fields(self) -> int:
        return len(self.field_widths)

    def forward(
        self, values: torch.Tensor, present: torch.Tensor, noise_level: torch.Tensor | None = None
    ) -> torch.Tensor:
        """values (B, METADATA_DIM) float, present (B, N) bool, noise_level (B,) -> (B, embed_dim)."""
        if values.shape[-1] != sum(self.field_widths) or present.shape[-1] != self.num_fields:
            raise ValueError(
                f"MetadataEmbedding: expected values (B, {sum(self.field_widths)}) and present (B, {self.num_fields}),"
                f" got {tuple(values.shape)} and {tuple(present.shape)}"
            )
        dtype = self.proj_out.weight.dtype
        style = self.config.style
        if style == "none":
            return torch.zeros(values.shape[0], self.config.embed_dim, device=values.device, dtype=dtype)
        values = values.to(dtype)
        n_freq = self.config.num_frequencies
        hidden = []
        start = 0
        for i, width in enumerate(self.field_widths):
            x = values[:, start : start + width]  # (B, W)
            start += width
            keep = present[:, i : i + 1].to(x.device)  # (B, 1) bool
            if style == "diffusionsat":
                x = torch.where(keep, x, torch.zeros_like(x))  # a dropped value is 0, as in DiffusionSat
                hidden.append(self.field_mlps[i](sinusoid_features(x, self.config.hidden_dim)))  # (B, H)
                continue
            h = self.field_mlps[i](fourier_features(x, n_freq))  # (B, H)
            hidden.append(torch.where(keep, h, self.missing[i].to(h.dtype).expand_as(h)))
        if self.local_season_mlp is not None:
            hidden.append(self._local_season(values, present))
        if self.config.use_noise_level:
            if noise_level is None:
                raise ValueError("MetadataEmbedding(use_noise_level=True) needs noise_level (B,)")
            level = (
                noise_level.to(device=values.device, dtype=dtype).reshape(-1, 1) / self.config.max_noise_level
            )
            level_feats = (
                sinusoid_features(level, self.config.hidden_dim)
                if style == "diffusionsat"
                else fourier_features(level, n_freq)
            )
            hidden.append(self.field_mlps[-1](level_feats))
        if style == "diffusionsat":
            joined = self.act(torch.stack(hidden).sum(0))  # (B, H)
        else:
            joined = self.act(torch.cat(hidden, dim=-1))  # (B, N H)
        if self.joint is not None:
            joined = self.joint(joined)  # (B, joint_dim)
        return self.proj_out(joined)  # (B, embed_dim)

    def _local_season(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embedding of the hemisphere-adjusted season: values (B, METADATA_DIM), present (B, N) -> (B, H)."""
        z = values[:, _COLUMNS["location"]][:, 2:3]  # (B, 1) sin(latitude)
        hemisphere = torch.where(z < 0, -1.0, 1.0).to(values.dtype)  # (B, 1); the equator counts as north
        # (B, 2): the (sin, cos) of the date, turned by half a year in the south
        local = values[:, _COLUMNS["season"]] * hemisphere
        if self.config.local_season_latitude:
            local = torch.cat([local, z.abs()], dim=-1)  # (B, 3): and how far from the equator
        keep = (present[:, _FIELD_INDEX["location"]] & present[:, _FIELD_INDEX["season"]])[:, None]  # (B, 1)
        h = self.local_season_mlp(fourier_features(local, self.config.num_frequencies))  # (B, H)
        return torch.where(keep.to(h.device), h, self.local_season_missing.to(h.dtype).expand_as(h))

    def embed(
        self,
        metadata: Sequence[Metadata | None],
        noise_level: torch.Tensor | None = None,
        drop: bool = False,
    ) -> torch.Tensor:
        """Convenience: encode a list of :class:`Metadata` (None = nothing known) and embed it.

        ``drop=True`` marks every field missing (the unconditional branch of metadata guidance).
        """
        values, present = encode_metadata(list(metadata))
        if drop:
            present = torch.zeros_like(present)
        return self(values.to(self.device), present.to(self.device), noise_level)


@dataclass
class MetadataEmbeddingConfig:
    """field_dropout: each field marked missing with this probability; all_dropout: all fields at once.
    style: "fourier" (rsgen's embedding), "diffusionsat" (sinusoid + MLP, dropped values = 0) or "none" (no
    metadata): the latter two exist for ablations. joint_dim: width of a layer over all fields together before
    the output (0 = none, the shipped default model's layout): lets the embedding couple fields, e.g. season
    and latitude. local_season: also embed the hemisphere-adjusted season (seasons are opposite north and
    south of the equator; see rsgen.models.metadata_embedding). local_season_latitude: the local season also
    sees the distance from the equator (how strong the seasons are there; needs local_season)."""

    style: Literal["fourier", "diffusionsat", "none"] = "fourier"
    num_frequencies: int = 6
    hidden_dim: int = 128
    joint_dim: int = 0
    local_season: bool = False
    local_season_latitude: bool = False
    field_dropout: float = 0.15
    all_dropout: float = 0.1


def build_metadata_embedding(
    cfg: Any, embed_dim: int, use_noise_level: bool = False, max_noise_level: int = 1000
) -> MetadataEmbedding:
    """A new embedding from a :class:`MetadataEmbeddingConfig` (``style``,
    ``num_frequencies``, ``hidden_dim``, ``joint_dim``, ``local_season``, ``local_season_latitude``) for a UNet
    whose time embedding is ``embed_dim`` wide."""
    return MetadataEmbedding(
        embed_dim=embed_dim,
        num_frequencies=cfg.num_frequencies,
        hidden_dim=cfg.hidden_dim,
        style=cfg.style,
        joint_dim=cfg.joint_dim,
        local_season=cfg.local_season,
        local_season_latitude=cfg.local_season_latitude,
        use_noise_level=use_noise_level,
        max_noise_level=max_noise_level,
    )


def drop_metadata_fields(
    present: torch.Tensor, field_prob: float, all_prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Metadata dropout for classifier-free guidance: each field is marked missing with ``field_prob``, and all
    fields of a sample with ``all_prob``. present (B, N) bool -> (B, N) bool."""
    b, n = present.shape
    drop_field = torch.rand((b, n), generator=generator) < field_prob  # (B, N)
    drop_all = torch.rand((b, 1), generator=generator) < all_prob  # (B, 1)
    return present & ~(drop_field | drop_all).to(present.device)


__all__ = [
    "METADATA_DIM",
    "NUM_METADATA_FIELDS",
    "MetadataEmbedding",
    "build_metadata_embedding",
    "drop_metadata_fields",
    "METADATA_STYLES",
    "fourier_features",
    "sinusoid_features",
]
