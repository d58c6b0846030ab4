"""Large georeferenced scenes: one image of any size, denoised by overlapping latent windows (MultiDiffusion)
with the scene's latents on disk, decoded tile by tile and written block by block to a GeoTIFF, so peak memory
is bounded by the window and the tile, not by the scene.

:func:`render_scene_stage` runs one stage (a base stage, or a super-resolution stage reading its low-res input
window by window from a canvas) and hands every decoded tile to a sink; :func:`generate_scene` writes a base
stage, or a whole cascade (:mod:`rsgen.pipelines.scene_cascade`), to a GeoTIFF.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rsgen.errors import ConfigError
from rsgen.io import GeoReference, GeoTiffBlockWriter, generation_tags
from rsgen.metadata import Metadata
from rsgen.models.super_resolution import color_fix as keep_low_res_colors
from rsgen.models.super_resolution import low_res_condition
from rsgen.pipelines.canvas import LatentCanvas, WindowSlices
from rsgen.pipelines.pipeline import ControlInput, RSGenPipeline, SamplingRun, Tiling
from rsgen.pipelines.vae_tiling import iter_decoded_tiles
from rsgen.pipelines.windows import Window, row_bands, window_boundaries

if TYPE_CHECKING:
    from rsgen.pipelines.cascade import Cascade

#: Scene canvases (latents, blended model output, scheduler history, low-res condition, a stage's pixels)
#: larger than this many bytes each live in a temporary file instead of RAM: a stage holds about six of them,
#: so a scene's RAM beyond its windows stays under ~100 MiB at any size.
CANVAS_RAM_LIMIT_BYTES = 16 * 2**20

#: sink(pixel window, pixels (1, 3, th, tw) in [-1, 1]): where a stage's decoded tiles go.
TileSink = Callable[[Window, torch.Tensor], None]


def default_tiling(pipe: RSGenPipeline) -> Tiling:
    """A stage's windows when none are given: twice the UNet's training size for a base stage (its texture
    statistics hold over that), the training size for a super-resolution stage; a quarter of it overlaps."""
    window = int(pipe.unet.config.sample_size) * (1 if pipe.is_super_resolution else 2)
    return Tiling(window=window, overlap=max(1, window // 4), decode_tile=window)


def canvas_on_disk(channels: int, height: int, width: int, requested: bool | None) -> bool:
    """Whether a (channels, height, width) float32 canvas goes to disk (default: above 16 MiB)."""
    return requested if requested is not None else channels * height * width * 4 > CANVAS_RAM_LIMIT_BYTES


def prepare_scene_run(
    pipe: RSGenPipeline,
    prompt: str,
    metadata: Metadata | None,
    *,
    height: int,
    width: int,
    super_resolution: bool,
    noise_level: int | None,
    **sampling: Any,
) -> SamplingRun:
    """The run of one scene stage: prompt, metadata, scheduler and timesteps as ``pipe.prepare`` makes them.

    A super-resolution stage's low-res condition is scene-sized, so it is not made here: the run is prepared on
    one :attr:`~RSGenPipeline.size_multiple` block with a blank input and its grid set to the scene's; the
    caller sets ``run.cond.low_res`` to the condition read window by window (:func:`render_scene_stage`).
    """
    pipe.check_size(height, width)
    f = pipe.latent_factor
    if not super_resolution:
        return pipe.prepare(prompt, metadata, height=height, width=width, **sampling)
    m = pipe.size_multiple
    factor = pipe.sr_factor or 1
    blank = torch.zeros((1, 3, m // factor, m // factor))
    run = pipe.prepare(
        prompt, metadata, height=m, width=m, low_res=blank, noise_level=noise_level, **sampling
    )
    return dataclasses.replace(run, latent_hw=(height // f, width // f), color_fix_to=None)


def render_scene_stage(
    pipe: RSGenPipeline,
    sink: TileSink,
    prompt: str,
    metadata: Metadata | None,
    *,
    height: int,
    width: int,
    tiling: Tiling,
    work_dir: str | Path,
    on_disk: bool | None = None,
    low_res: LatentCanvas | None = None,
    noise_level: int | None = None,
    color_fix: bool = False,
    progress: bool = True,
    **sampling: Any,
) -> SamplingRun:
    """Denoise one ``height x width`` stage window by window and give each decoded tile to ``sink``.

    low_res: a super-resolution stage's input, a (3, height / factor, width / factor) canvas in [-1, 1]; it is
    noise-augmented and folded onto the latent grid band by band into a canvas the windows read from, and with
    ``color_fix`` every decoded tile keeps its low frequencies. sampling: ``pipe.prepare``'s options (seed,
    scheduler, steps, guidance, controls on this stage's pixel grid). Temporary canvases live in ``work_dir``.
    """
    if tiling.window is None:
        raise ConfigError("a large scene needs a window size (latent pixels), e.g. Tiling(window=64)")
    is_sr = pipe.is_super_resolution
    if is_sr != (low_res is not None):
        raise ConfigError(
            "a super-resolution stage needs its low-res input (low_res=...)"
            if is_sr
            else "low_res was given but this pipeline is not a super-resolution stage"
        )
    run = prepare_scene_run(
        pipe,
        prompt,
        metadata,
        height=height,
        width=width,
        super_resolution=is_sr,
        noise_level=noise_level,
        **sampling,
    )
    h, w = run.latent_hw
    c = pipe.latent_channels
    bands = row_bands(h, w, min(tiling.window, h))
    directory = work_dir if canvas_on_disk(c, h, w, on_disk) else None
    latents = LatentCanvas(c, h, w, directory, pipe.device, pipe.unet.dtype)  # read onto the model's device
    cond = None
    try:
        # Initial noise band by band from the image's own generator (one band = the untiled noise).
        gen = run.generators[0]
        for band in bands:
            noise = torch.randn((1, c, band.height, band.width), generator=gen, dtype=pipe.unet.dtype)
            latents.write(band, noise * run.scheduler.init_noise_sigma)
        fix = align = None
        if low_res is not None:
            cond = _low_res_canvas(pipe, low_res, bands, (h, w), noise_level, gen, directory)
            run.cond.low_res = WindowSlices(cond)  # type: ignore[assignment]  # read by window
            if color_fix:
                factor = int(pipe.sr_factor or 1)
                align = factor // math.gcd(factor, pipe.latent_factor)  # tiles on whole low-res pixels

                def fix(win: Window, pixels: torch.Tensor) -> torch.Tensor:
                    return keep_low_res_colors(pixels, low_res.read(win.downscaled(factor)))

        pipe.denoise(run, latents, tiling, bands, progress=progress)
        tiles = iter_decoded_tiles(
            pipe.vae,
            latents.read,
            (h, w),
            tiling.decode_tile or tiling.window,
            tiling.decode_halo,
            align=align or 1,
            fix=fix,
        )
        for win, pixels in tiles:
            sink(win, pixels.clamp(-1, 1))
    finally:
        latents.close()
        if cond is not None:
            cond.close()
    return run


def _low_res_canvas(
    pipe: RSGenPipeline,
    low_res: LatentCanvas,
    bands: Sequence[Window],
    latent_hw: tuple[int, int],
    noise_level: int | None,
    generator: torch.Generator,
    directory: str | Path | None,
) -> LatentCanvas:
    """A super-resolution stage's condition (3 s^2, h, w): the low-res input noise-augmented and folded onto
    the latent grid band by band (as ``low_res_condition`` does for a whole image)."""
    from rsgen.pipelines.pipeline import DEFAULT_SR_NOISE_LEVEL

    h, w = latent_hw
    s = pipe.low_res_scale
    if low_res.shape[1:] != (h * s, w * s):
        raise ConfigError(
            f"low-res input {low_res.shape[2]}x{low_res.shape[1]} does not match this x{pipe.sr_factor} "
            f"stage's {w * pipe.latent_factor}x{h * pipe.latent_factor} output (expected {w * s}x{h * s})"
        )
    level = torch.full((1,), DEFAULT_SR_NOISE_LEVEL if noise_level is None else int(noise_level))
    out = LatentCanvas(3 * s * s, h, w, directory, pipe.device, pipe.unet.dtype)
    for band in bands:
        folded = low_res_condition(
            low_res.read(band.scaled(s)), (band.height, band.width), level, generator, s
        )
        out.write(band, folded)  # (1, 3 s^2, hb, w)
    return out


def generate_scene(
    pipe: RSGenPipeline,
    path: str | Path,
    prompt: str,
    metadata: Metadata | None,
    *,
    height: int,
    width: int,
    georef: GeoReference | None = None,
    tiling: Tiling | None = None,
    negative_prompt: str | None = None,
    num_inference_steps: int = 25,
    guidance_text: float = 5.0,
    guidance_meta: float | None = None,  # None: the model's default_guidance_meta
    scheduler: str | None = "dpm++",
    seed: int = 0,
    controls: Sequence[ControlInput] = (),
    work_dir: str | Path | None = None,
    canvas_on_disk: bool | None = None,
    tags: Mapping[str, str] | None = None,
    progress: bool = True,
    cascade: Cascade | None = None,
    skip_stages: Sequence[str] = (),
) -> Path:
    """Generate one ``height x width`` image into the GeoTIFF ``path`` (written atomically, block by block).

    ``tiling.window`` (latent pixels) bounds the UNet's input; ``tiling.decode_tile`` (default: the window)
    bounds the VAE's. ``canvas_on_disk`` (default: canvases above 16 MiB) keeps the scene's latents
    in a temporary folder under ``work_dir`` (default: the output's folder). With one window covering the scene
    the result equals ``pipe(...)`` with the same arguments. With ``cascade`` (whose base stage ``pipe`` is),
    every active stage runs over the whole scene (:func:`rsgen.pipelines.scene_cascade.render_scene_cascade`),
    ``metadata.gsd_m`` describing the final output.
    """
    path = Path(path)
    sampling: dict[str, Any] = dict(
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_text=guidance_text,
        guidance_meta=guidance_meta,
        scheduler=scheduler,
        seed=seed,
    )
    all_tags = generation_tags(metadata, prompt=prompt, seed=seed)
    all_tags.update(tags or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".rsgen-scene-", dir=work_dir or path.parent) as tmp,
        GeoTiffBlockWriter(path, width, height, 3, georef, metadata=metadata, tags=all_tags) as out,
    ):

        def sink(win: Window, pixels: torch.Tensor) -> None:
            block = ((pixels[0] / 2 + 0.5) * 255 + 0.5).to(torch.uint8)  # (3, th, tw)
            out.write_window(np.ascontiguousarray(block.cpu().numpy()), win.left, win.top)

        if cascade is not None:
            from rsgen.pipelines.scene_cascade import render_scene_cascade

            render_scene_cascade(
                cascade,
                sink,
                prompt,
                metadata,
                size=(height, width),
                work_dir=tmp,
                tiling=tiling,
                controls=controls,
                skip=skip_stages,
                on_disk=canvas_on_disk,
                progress=progress,
                **sampling,
            )
        else:
            if pipe.is_super_resolution:
                raise ConfigError(
                    "large scenes start from a base stage; give a cascade to run super-resolution stages"
                )
            render_scene_stage(
                pipe,
                sink,
                prompt,
                metadata,
                height=height,
                width=width,
                tiling=tiling or default_tiling(pipe),
                work_dir=tmp,
                on_disk=canvas_on_disk,
                controls=controls,
                progress=progress,
                **sampling,
            )
    return path


def seam_ratio(image: np.ndarray, rows: Sequence[int], cols: Sequence[int]) -> float:
    """How visible window borders are: the mean squared step between neighbouring pixels across the given
    boundaries (row r lies between pixel rows r-1 and r), over the same mean elsewhere. About 1 when windows
    join seamlessly; well above 1 where they meet with a visible edge. image: (C, H, W) or (H, W)."""
    img = np.asarray(image, dtype=np.float64)
    img = img[None] if img.ndim == 2 else img  # (C, H, W)
    dy = ((img[:, 1:, :] - img[:, :-1, :]) ** 2).mean(axis=(0, 2))  # (H-1,) step between row i and i+1
    dx = ((img[:, :, 1:] - img[:, :, :-1]) ** 2).mean(axis=(0, 1))  # (W-1,)
    across = [dy[r - 1] for r in rows] + [dx[c - 1] for c in cols]
    if not across:
        return 1.0
    on_y = np.zeros(dy.shape, bool)
    on_y[[r - 1 for r in rows]] = True
    on_x = np.zeros(dx.shape, bool)
    on_x[[c - 1 for c in cols]] = True
    inside = np.concatenate([dy[~on_y], dx[~on_x]])
    return float(np.mean(across) / max(float(np.mean(inside)), 1e-12))


def scene_boundaries(
    pipe: RSGenPipeline, tiling: Tiling, height: int, width: int
) -> tuple[list[int], list[int]]:
    """Pixel rows and columns where a stage's denoising windows or decode tiles meet (for :func:`seam_ratio`)."""
    f = pipe.latent_factor
    h, w = height // f, width // f
    wins = tiling.windows(h, w)
    tile = tiling.decode_tile or tiling.window or max(h, w)
    wins += [Window(t, left, tile, tile) for t in range(0, h, tile) for left in range(0, w, tile)]
    rows, cols = window_boundaries(wins, h, w)
    return [r * f for r in rows], [c * f for c in cols]


def scene_settings(tiling: Tiling) -> dict[str, Any]:
    """The tiling settings as recorded in sidecars."""
    return {
        "window": tiling.window,
        "overlap": tiling.overlap,
        "decode_tile": tiling.decode_tile,
        "decode_halo": tiling.decode_halo,
    }
