"""The denoising loop over overlapping windows (MultiDiffusion, Bar-Tal et al. 2023), shared by every stage.

At each step the model runs on every window; the window outputs are blended into one scene-sized model output
(weighted average, :func:`~rsgen.pipelines.windows.blend_weights`) and ONE scheduler steps the whole latent,
band by band (:class:`SceneScheduler`). A multistep scheduler's history (DPM++'s previous model outputs,
UniPC's last sample) is kept in scene-sized stores like the latents themselves (on disk for large scenes):
one buffer per history slot, never one scheduler per band. A single window covering the grid is plain
(untiled) sampling, bit for bit.
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

#: Where a scheduler keeps a sample-shaped tensor: (attribute,) or (list attribute, index).
StatePath = tuple[str, ...] | tuple[str, int]


class LatentStore(Protocol):
    """Scene-sized (B, C, H, W) storage read and written by window (TensorStore, LatentCanvas)."""

    def read(self, win: Window) -> torch.Tensor: ...
    def write(self, win: Window, values: torch.Tensor) -> None: ...
    def add(self, win: Window, values: torch.Tensor) -> None: ...
    def fill(self, value: float) -> None: ...
    def like(self, channels: int | None = None) -> LatentStore: ...
    def close(self) -> None: ...


def sample_state(scheduler: SchedulerMixin, shape: tuple[int, ...]) -> dict[StatePath, torch.Tensor]:
    """The scheduler's tensors shaped like the sample (its per-pixel history), by where they are kept."""
    out: dict[StatePath, torch.Tensor] = {}
    for name, value in vars(scheduler).items():
        if isinstance(value, torch.Tensor) and tuple(value.shape) == shape:
            out[(name,)] = value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor) and tuple(item.shape) == shape:
                    out[(name, i)] = item
    return out


def _set_state(scheduler: SchedulerMixin, path: StatePath, value: torch.Tensor | None) -> None:
    if len(path) == 1:
        setattr(scheduler, path[0], value)
    else:
        getattr(scheduler, path[0])[path[1]] = value


class SceneScheduler:
    """One diffusers scheduler stepping a scene-sized latent band by band.

    With one band the scheduler is used as is. With several, its per-sample state lives in scene-sized stores
    (made by ``like``, e.g. ``LatentCanvas.like``: on disk for a large scene), one per history slot: before a
    band is stepped the scheduler gets the step's scalar state (step index, order counters) and that band's
    slice of the history; after it, the band's new history goes back to the stores and the scheduler drops it.
    Memory is then one band plus ``solver_order`` scene-sized buffers (for DPM++), whatever the scene size, and
    the result equals stepping the whole latent at once. The first band's scheduler scales the model inputs.
    """

    def __init__(self, scheduler: SchedulerMixin, num_bands: int = 1) -> None:
        self.scheduler = scheduler
        self.num_bands = num_bands
        self._takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        self._like: Callable[[], LatentStore] | None = None
        self.history: dict[StatePath, LatentStore] = {}  # history slot -> scene-sized store
        self._layout: list[StatePath] = []  # slots holding history before the current step
        self._next_layout: list[StatePath] = []
        self._before: dict[str, Any] = {}  # the scheduler's state (history dropped) before the current step

    def bind(self, like: Callable[[], LatentStore]) -> None:
        """Give the factory of scene-sized history stores (needed with more than one band)."""
        self._like = like

    def scale_model_input(self, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.scale_model_input(sample, t)

    def _step(self, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor, generators: Any):
        kwargs: dict[str, Any] = {"return_dict": False}
        if self._takes_generator:
            kwargs["generator"] = generators
        return self.scheduler.step(model_output, t, sample, **kwargs)[0]

    def begin_step(self) -> None:
        """Call once per timestep before its bands: remembers the scalar state every band starts from."""
        self._layout = self._next_layout
        self._before = {k: copy.copy(v) for k, v in vars(self.scheduler).items()}  # lists copied, not shared

    def step(
        self,
        band: int | Window,
        model_output: torch.Tensor,
        t: torch.Tensor,
        sample: torch.Tensor,
        generators: Any = None,
    ) -> torch.Tensor:
        """The previous sample (B, C, hb, wb) of a band (B, C, hb, wb); ``band`` is its Window on the scene
        (or 0 when there is only one band)."""
        if self.num_bands == 1:
            return self._step(model_output, t, sample, generators)
        if not isinstance(band, Window) or self._like is None:
            raise RuntimeError("SceneScheduler with several bands: bind() stores and step by band Window")
        for name, value in self._before.items():
            setattr(self.scheduler, name, copy.copy(value))
        for path in self._layout:
            _set_state(self.scheduler, path, self.history[path].read(band).to(sample))
        prev = self._step(model_output, t, sample, generators)
        state = sample_state(self.scheduler, tuple(sample.shape))
        for path, value in state.items():
            if path not in self.history:
                self.history[path] = self._like()
            self.history[path].write(band, value)
            _set_state(self.scheduler, path, None)  # the band's history lives in the store only
        self._next_layout = list(state)
        return prev

    def close(self) -> None:
        for store in self.history.values():
            store.close()
        self.history.clear()


#: The name the pipeline's denoise uses (one scheduler for all bands since the scheduler-memory fix).
BandSchedulers = SceneScheduler


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
    schedulers: SceneScheduler,
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
    schedulers.bind(latents.like)
    try:
        for i, t in enumerate(timesteps):
            if single:
                x = latents.read(bands[0])  # (B, C, H, W)
                out = model_fn(schedulers.scale_model_input(x, t), t, i, windows[0])
                latents.write(bands[0], schedulers.step(bands[0], out, t, x, generators))
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
            schedulers.begin_step()
            for band in bands:
                x = latents.read(band)  # (B, C, hb, W)
                blended = acc.read(band) / weights.read(band).to(x)
                latents.write(band, schedulers.step(band, blended.to(x.dtype), t, x, generators))
    finally:
        schedulers.close()
        if acc is not None:
            acc.close()
        if weights is not None:
            weights.close()
