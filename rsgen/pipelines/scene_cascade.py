"""Coarse-to-fine scenes: a resolution cascade over a scene of any size.

The base stage generates the whole extent at its own (coarse) GSD in MultiDiffusion windows; each
super-resolution stage then runs in overlapping windows over the previous stage's output, with the true GSD of
its own grid (:func:`~rsgen.pipelines.cascade.stage_metadata`). Between stages the image lives in a pixel
canvas (on disk for large scenes) read window by window, and the last stage's tiles go to a sink (the
block-wise GeoTIFF writer of :func:`~rsgen.pipelines.scene.generate_scene`), so memory stays bounded by the
windows whatever the scene size. Controls (e.g. a land-cover map) given on the final grid steer the base stage,
resampled onto its grid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rsgen.metadata import Metadata
from rsgen.pipelines.canvas import LatentCanvas
from rsgen.pipelines.cascade import Cascade, stage_metadata, stage_sizes
from rsgen.pipelines.pipeline import ControlInput, Tiling
from rsgen.pipelines.scene import TileSink, canvas_on_disk, default_tiling, render_scene_stage
from rsgen.pipelines.windows import Window

log = logging.getLogger(__name__)

#: Condition kinds whose images are colour-coded class maps: resampled by nearest neighbour, never averaged.
CLASS_MAP_KINDS = frozenset({"segmentation", "landcover", "landcover-polygons"})


def controls_on_grid(controls: Sequence[ControlInput], size: tuple[int, int]) -> list[ControlInput]:
    """Controls (images (1|B, 3, H, W) on the final grid) resampled onto a stage's (h, w) grid: area-averaged,
    or nearest neighbour for class maps (:data:`CLASS_MAP_KINDS`) so no mixed colour invents a class."""
    out = []
    for c in controls:
        img = c.image if c.image.dim() == 4 else c.image[None]
        if tuple(img.shape[-2:]) != tuple(size):
            mode = "nearest-exact" if c.kind in CLASS_MAP_KINDS else "area"
            img = F.interpolate(img.float(), size=size, mode=mode)  # (1|B, 3, h, w)
        out.append(ControlInput(img, c.weight, c.start, c.end, c.controlnet, c.kind))
    return out


def render_scene_cascade(
    cascade: Cascade,
    sink: TileSink,
    prompt: str,
    metadata: Metadata | None,
    *,
    size: tuple[int, int],
    work_dir: str | Path,
    tiling: Tiling | None = None,
    controls: Sequence[ControlInput] = (),
    skip: Sequence[str] = (),
    on_disk: bool | None = None,
    num_inference_steps: int = 25,
    guidance_text: float = 5.0,
    guidance_meta: float | None = None,
    scheduler: str | None = "dpm++",
    negative_prompt: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[Metadata | None]:
    """Run the cascade's active stages over a ``size`` (H, W) scene, the last stage's tiles going to ``sink``.

    ``metadata.gsd_m`` describes the final output; each stage gets the GSD of its own grid, and its own steps,
    scheduler and guidance where its config sets them (as :class:`~rsgen.pipelines.cascade.Cascade` does).
    ``tiling`` (latent pixels) applies to every stage; by default each stage gets
    :func:`~rsgen.pipelines.scene.default_tiling` of its model. Returns each stage's metadata.
    """
    stages = cascade.config.active(skip)
    sizes = stage_sizes(stages, size)
    previous: LatentCanvas | None = None
    metas: list[Metadata | None] = []
    try:
        for k, (stage, (h, w)) in enumerate(zip(stages, sizes, strict=True)):
            pipe = cascade.pipeline(stage)
            meta = stage_metadata(metadata, size[1], w)
            metas.append(meta)
            last = k == len(stages) - 1
            log.info(
                "scene stage %s: %dx%d, %s", stage.name, w, h, meta.describe() if meta else "no metadata"
            )
            current = (
                None
                if last
                else LatentCanvas(3, h, w, work_dir if canvas_on_disk(3, h, w, on_disk) else None)
            )
            stage_sink = sink if current is None else _canvas_sink(current)
            options: dict[str, Any] = dict(
                num_inference_steps=stage.steps or num_inference_steps,
                guidance_text=stage.guidance_text if stage.guidance_text is not None else guidance_text,
                guidance_meta=stage.guidance_meta if stage.guidance_meta is not None else guidance_meta,
                scheduler=stage.scheduler or scheduler,
                negative_prompt=negative_prompt,
                seed=seed,
            )
            try:
                render_scene_stage(
                    pipe,
                    stage_sink,
                    prompt,
                    meta,
                    height=h,
                    width=w,
                    tiling=tiling or default_tiling(pipe),
                    work_dir=work_dir,
                    on_disk=on_disk,
                    low_res=previous,
                    noise_level=None if previous is None else stage.noise_level,
                    color_fix=previous is not None and stage.color_fix,
                    controls=controls_on_grid(controls, (h, w)) if previous is None else (),
                    progress=progress,
                    **options,
                )
            except BaseException:
                if current is not None:
                    current.close()
                raise
            if previous is not None:
                previous.close()
            previous = current
    finally:
        if previous is not None:
            previous.close()
    return metas


def _canvas_sink(canvas: LatentCanvas) -> TileSink:
    """A sink storing a stage's tiles (1, 3, th, tw) in [-1, 1] into a pixel canvas for the next stage."""

    def sink(win: Window, pixels: torch.Tensor) -> None:
        canvas.write(win, pixels[:1])

    return sink
