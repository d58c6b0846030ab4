"""The resolution cascade: a base stage, then super-resolution stages, chained by a config
(``configs/cascade/<name>.yaml``). The requested size and GSD describe the final output; every stage gets the
metadata with the true GSD of *its* output. Any stage but the base can be skipped: the remaining stages then
reach the requested size with fewer upscaling steps."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsgen.config import load_config
from rsgen.errors import ConfigError
from rsgen.metadata import Metadata
from rsgen.paths import resolve_data_path
from rsgen.pipelines.pipeline import ControlInput, RSGenPipeline, Tiling

log = logging.getLogger(__name__)


@dataclass
class StageConfig:
    """One stage. model: a pipeline folder (relative paths from the repo root); random_config: a training
    config whose shapes are used with random weights when that folder does not exist (None = error).
    factor: output side / input side (1 for the base stage). Unset sampling values come from the caller."""

    name: str
    model: str
    random_config: str | None = None
    factor: int = 1
    steps: int | None = None
    scheduler: str | None = None
    guidance_text: float | None = None
    guidance_meta: float | None = None
    noise_level: int = 20
    # keep the input's low frequencies (colour, layout) in a super-resolution stage's output; the stage adds
    # only detail above the input's resolution (rsgen.models.super_resolution.color_fix)
    color_fix: bool = True
    skip: bool = False


@dataclass
class CascadeConfig:
    stages: list[StageConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("cascade: no stages")
        if self.stages[0].factor != 1:
            raise ConfigError(
                f"cascade: the first stage {self.stages[0].name!r} is the base stage; its factor must be 1"
            )
        if self.stages[0].skip:
            raise ConfigError("cascade: the base stage cannot be skipped")
        for s in self.stages[1:]:
            if s.factor < 2:
                raise ConfigError(
                    f"cascade: stage {s.name!r} has factor {s.factor}; a super-resolution stage needs >= 2"
                )

    def active(self, skip: Sequence[str] = ()) -> list[StageConfig]:
        """The stages that run: not marked ``skip`` in the config nor named in ``skip``."""
        names = {s.name for s in self.stages}
        unknown = set(skip) - names
        if unknown:
            raise ConfigError(
                f"cascade: cannot skip unknown stage(s) {sorted(unknown)}; stages: {sorted(names)}"
            )
        if self.stages[0].name in skip:
            raise ConfigError("cascade: the base stage cannot be skipped")
        return [s for s in self.stages if not s.skip and s.name not in skip]


def load_cascade(name_or_path: str | Path) -> CascadeConfig:
    """A cascade from ``configs/cascade/<name>.yaml`` or a YAML path."""
    return load_config(CascadeConfig, name_or_path, subdir="cascade")


def stage_sizes(stages: Sequence[StageConfig], final_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(height, width) of each stage's output, from the final output size (the last stage's)."""
    total = math.prod(s.factor for s in stages)
    h, w = final_size
    if h % total or w % total:
        raise ConfigError(f"size {w}x{h} is not divisible by the cascade's total upscaling x{total}")
    sizes, (ch, cw) = [], (h // total, w // total)
    for s in stages:
        ch, cw = ch * s.factor, cw * s.factor
        sizes.append((ch, cw))
    return sizes


def stage_metadata(meta: Metadata | None, final_width: int, stage_width: int) -> Metadata | None:
    """The metadata of a stage's output: the final GSD scaled to the stage's coarser grid."""
    if meta is None or meta.gsd_m is None:
        return meta
    return meta.replace(gsd_m=meta.gsd_m * final_width / stage_width)


@dataclass
class CascadeResult:
    images: np.ndarray  # (B, H, W, 3) float in [0, 1], the last stage's output
    seeds: list[int]
    stage_names: list[str]
    stage_images: list[np.ndarray]  # each (B, h, w, 3)
    stage_metadata: list[Metadata | None]
    untrained: list[str]  # names of stages running with random weights
    # the metadata guidance each stage used (its model's default when none was given)
    stage_guidance_meta: list[float]


class Cascade:
    """Loaded stage pipelines (once) and the code that chains them."""

    def __init__(
        self, config: CascadeConfig, loader: Callable[[StageConfig], RSGenPipeline] | None = None
    ) -> None:
        self.config = config
        self._loader = loader or load_stage
        self._pipes: dict[str, RSGenPipeline] = {}

    def pipeline(self, stage: StageConfig) -> RSGenPipeline:
        if stage.name not in self._pipes:
            pipe = self._loader(stage)
            if stage.factor > 1 and pipe.sr_factor != stage.factor:
                raise ConfigError(
                    f"cascade stage {stage.name!r}: its model is a x{pipe.sr_factor} super-resolution "
                    f"model, the stage says factor {stage.factor}"
                )
            self._pipes[stage.name] = pipe
        return self._pipes[stage.name]

    def __call__(
        self,
        prompt: str | Sequence[str],
        metadata: Metadata | None,
        *,
        size: tuple[int, int],
        n: int = 1,
        seed: int | Sequence[int] = 0,
        steps: int = 25,
        guidance_text: float = 5.0,
        guidance_meta: float | None = None,  # None: each stage's model default (default_guidance_meta)
        scheduler: str | None = "dpm++",
        negative_prompt: str | None = None,
        controls: Sequence[ControlInput] = (),
        skip: Sequence[str] = (),
        tiling: Tiling | None = None,
        progress: bool = True,
    ) -> CascadeResult:
        """Run the active stages; ``size`` (H, W) and ``metadata.gsd_m`` describe the final output."""
        stages = self.config.active(skip)
        sizes = stage_sizes(stages, size)
        final_w = size[1]
        low_res: torch.Tensor | None = None
        stage_images, stage_metas, untrained = [], [], []
        seeds: list[int] = []
        stage_gm: list[float] = []
        for stage, (h, w) in zip(stages, sizes, strict=True):
            pipe = self.pipeline(stage)
            if getattr(pipe, "untrained", False):
                untrained.append(stage.name)
            meta = stage_metadata(metadata, final_w, w)
            is_base = low_res is None
            log.info(
                "cascade stage %s: %dx%d, %s", stage.name, w, h, meta.describe() if meta else "no metadata"
            )
            stage_gm.append(
                pipe.resolve_guidance_meta(
                    stage.guidance_meta if stage.guidance_meta is not None else guidance_meta
                )
            )
            out = pipe(
                prompt,
                meta,
                negative_prompt=negative_prompt,
                n=n if is_base else 1,
                height=h,
                width=w,
                num_inference_steps=stage.steps or steps,
                guidance_text=stage.guidance_text if stage.guidance_text is not None else guidance_text,
                guidance_meta=stage_gm[-1],
                scheduler=stage.scheduler or scheduler,
                seed=seed if is_base else seeds,
                low_res=None if is_base else low_res,
                noise_level=None if is_base else stage.noise_level,
                color_fix=not is_base and stage.color_fix,
                controls=controls if is_base else (),
                tiling=tiling,
                output_type="pt",
                progress=progress,
            )
            if is_base:
                seeds = out.seeds
                prompt = [p for p in ([prompt] if isinstance(prompt, str) else prompt) for _ in range(n)]
            low_res = out.images * 2 - 1  # (B, 3, h, w) in [-1, 1]
            stage_images.append(out.images.permute(0, 2, 3, 1).numpy())
            stage_metas.append(meta)
        return CascadeResult(
            stage_images[-1], seeds, [s.name for s in stages], stage_images, stage_metas, untrained, stage_gm
        )


def stage_model_dir(stage: StageConfig) -> Path:
    """A stage's model folder (``assets/...`` in the shipped assets, see :func:`rsgen.paths.resolve_data_path`)."""
    return resolve_data_path(stage.model)


def load_stage(stage: StageConfig) -> RSGenPipeline:
    """A stage's pipeline: its model folder, or random weights of ``random_config`` when that is missing."""
    from rsgen.pipelines.default import load_default_pipeline, load_pipeline

    path = stage_model_dir(stage)
    if stage.random_config is None:
        pipe = load_pipeline(path)
    else:
        random_config: Any = stage.random_config
        if stage.factor > 1:  # random weights of the config's shapes, for this stage's factor
            from rsgen.models.config import load_model_config

            random_config = load_model_config(stage.random_config, [f"sr.factor={stage.factor}"])
        pipe = load_default_pipeline(path, random_config=random_config, super_resolution=stage.factor > 1)
    if (stage.factor > 1) != pipe.is_super_resolution:
        kind = "super-resolution" if stage.factor > 1 else "base"
        raise ConfigError(f"cascade stage {stage.name!r}: model {path} is not a {kind} model")
    return pipe
