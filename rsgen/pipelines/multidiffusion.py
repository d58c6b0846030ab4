"""The denoising loop over overlapping windows (MultiDiffusion, Bar-Tal et al. 2023), shared by every stage.

At each step the model runs on every window; the window outputs are blended into one scene-sized model output
(weighted average, :func:`~rsgen.pipelines.windows.blend_weights`) and the scheduler steps the whole latent,
band by band. A single window covering the grid is plain (untiled) sampling, bit for bit.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from rsgen.pipelines.windows import Window, blend_weights

#: model_fn(scaled latents (B, C, h, w), t, step index, window) -> guided model output (B, C, h, w)
ModelFn = Callable[[torch.Tensor, torch.Tensor, int, Window], torch.Tensor]


class LatentStore(Protocol):
    """Scene-sized (B, C, H, W) storage read and written by window (TensorStore, LatentCanvas)."""

    def read(self, win: Window) -> torch.Tensor: ...
    def write(self, win: Window, values: torch.Tensor) -> None: ...
    def add(self, win: Window, values: torch.Tensor) -> None: ...
    def fill(self, value: float) -> None: ...
    def like(self, channels: int | None = None) -> LatentStore: ...
    def close(self) -> None: ...


class BandSchedulers:
    """One scheduler per band of the latent grid (each keeps its band's multistep history); the first band's
    scheduler, which has taken as many steps as every other, scales the model inputs."""

    def __init__(self, scheduler: SchedulerMixin, num_bands: int) -> None:
        self.schedulers = [scheduler] + [copy.deepcopy(scheduler) for _ in range(num_bands - 1)]
        self._takes_generator = "generator" in inspect.signature(scheduler.step).parameters

    def scale_model_input(self, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.schedulers[0].scale_model_input(sample, t)

    def step(
        self, band: int, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor, generators: Any
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"return_dict": False}
        if self._takes_generator:
            kwargs["generator"] = generators
        return self.schedulers[band].step(model_output, t, sample, **kwargs)[0]


def window_weight_sums(
    store: LatentStore, windows: Sequence[Window], height: int, width: int, overlap: int
) -> LatentStore:
    """Per latent pixel, the summed blending weight of the windows covering it, as a 1-channel store."""
    sums = store.like(channels=1)
    for win in windows:
        sums.add(win, blend_weights(win, height, width, overlap))
    return sums


def multidiffusion_denoise(
    latents: LatentStore,
    timesteps: Sequence[torch.Tensor],
    model_fn: ModelFn,
    schedulers: BandSchedulers,
    windows: Sequence[Window],
    bands: Sequence[Window],
    grid_hw: tuple[int, int],
    overlap: int,
    generators: Any = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Denoise ``latents`` in place over ``timesteps``; ``progress(k)`` is called after each window."""
    height, width = grid_hw
    single = len(windows) == 1 and len(bands) == 1
    acc = weights = None
    if not single:
        acc = latents.like()  # blended model output
        weights = window_weight_sums(latents, windows, height, width, overlap)
    for i, t in enumerate(timesteps):
        if single:
            x = latents.read(bands[0])  # (B, C, H, W)
            out = model_fn(schedulers.scale_model_input(x, t), t, i, windows[0])
            latents.write(bands[0], schedulers.step(0, out, t, x, generators))
            if progress:
                progress(1)
            continue
        assert acc is not None and weights is not None
        acc.fill(0.0)
        for win in windows:
            x = latents.read(win)  # (B, C, h, w)
            out = model_fn(schedulers.scale_model_input(x, t), t, i, win)
            acc.add(win, out * blend_weights(win, height, width, overlap).to(out))
            if progress:
                progress(1)
        for b, band in enumerate(bands):
            x = latents.read(band)  # (B, C, hb, W)
            blended = acc.read(band) / weights.read(band).to(x)
            latents.write(band, schedulers.step(b, blended.to(x.dtype), t, x, generators))
    if acc is not None:
        acc.close()
    if weights is not None:
        weights.close()
