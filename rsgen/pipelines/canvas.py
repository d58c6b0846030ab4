"""Latent stores: scene-sized arrays accessed window by window. :class:`TensorStore` keeps a batch (B, C, H, W)
in RAM; :class:`LatentCanvas` keeps one scene (1, C, H, W) in a temporary file that is mapped only while one
window is read or written, so a large scene never sits in memory whole."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from rsgen.pipelines.windows import Window


class TensorStore:
    """A (B, C, H, W) tensor behind the store interface (read / write / add / fill / like)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor  # (B, C, H, W)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def read(self, win: Window) -> torch.Tensor:
        rows, cols = win.slices()
        return self.tensor[:, :, rows, cols]  # (B, C, h, w), a view

    def write(self, win: Window, values: torch.Tensor) -> None:
        rows, cols = win.slices()
        self.tensor[:, :, rows, cols] = values

    def add(self, win: Window, values: torch.Tensor) -> None:
        rows, cols = win.slices()
        self.tensor[:, :, rows, cols] += values

    def fill(self, value: float) -> None:
        self.tensor.fill_(value)

    def like(self, channels: int | None = None) -> TensorStore:
        """A zero store of the same batch and grid (optionally another channel count)."""
        b, c, h, w = self.tensor.shape
        return TensorStore(self.tensor.new_zeros((b, channels or c, h, w)))

    def close(self) -> None:
        pass


class LatentCanvas:
    """Scene-sized storage accessed window by window (``read``, ``write``, ``add``).

    ``directory=None`` keeps the array in RAM; otherwise a file ``canvas-*.f32`` is created there and removed
    by :meth:`close` (also on garbage collection). ``device`` / ``dtype``: where and how :meth:`read` gives its
    windows (the model's; the canvas itself is float32 in host memory or on disk).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        directory: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape = (channels, height, width)
        self.device, self.dtype = torch.device(device), dtype
        self._directory = directory
        self._path: Path | None = None
        self._array: np.ndarray | None = None
        if directory is None:
            self._array = np.zeros(self.shape, dtype=np.float32)
        else:
            fd, name = tempfile.mkstemp(prefix="canvas-", suffix=".f32", dir=directory)
            with open(fd, "wb") as f:
                f.truncate(int(np.prod(self.shape)) * 4)  # sparse file of zeros
            self._path = Path(name)

    @property
    def on_disk(self) -> bool:
        return self._path is not None

    def _view(self, mode: str) -> np.ndarray:
        if self._array is not None:
            return self._array
        assert self._path is not None
        return np.memmap(self._path, dtype=np.float32, mode=mode, shape=self.shape)

    def read(self, win: Window) -> torch.Tensor:
        """A copy of the window as a (1, C, h, w) tensor on the canvas's device and dtype."""
        rows, cols = win.slices()
        view = self._view("r")
        block = np.array(view[:, rows, cols], dtype=np.float32)  # (C, h, w), a copy
        del view  # unmaps a file-backed view
        return torch.from_numpy(block)[None].to(self.device, self.dtype)

    def write(self, win: Window, values: torch.Tensor) -> None:
        """Store a (1, C, h, w) tensor at the window."""
        self._update(win, values, add=False)

    def add(self, win: Window, values: torch.Tensor) -> None:
        """Add a (1, C, h, w) tensor into the window (for accumulating weighted window outputs)."""
        self._update(win, values, add=True)

    def _update(self, win: Window, values: torch.Tensor, add: bool) -> None:
        rows, cols = win.slices()
        block = values.detach().to("cpu", torch.float32).numpy()[0]  # (C, h, w)
        view = self._view("r+")
        if add:
            view[:, rows, cols] += block
        else:
            view[:, rows, cols] = block
        del view  # unmaps; the dirty pages go to the file through the page cache (no msync per window)

    def fill(self, value: float) -> None:
        if self._array is not None:
            self._array.fill(value)
            return
        c, h, w = self.shape
        if value == 0:  # a fresh sparse file is all zeros: truncate instead of writing
            assert self._path is not None
            with open(self._path, "r+b") as f:
                f.truncate(0)
                f.truncate(c * h * w * 4)
            return
        for top in range(0, h, 256):
            self.write(Window(top, 0, min(256, h - top), w), torch.full((1, c, min(256, h - top), w), value))

    def like(self, channels: int | None = None) -> LatentCanvas:
        """A zero canvas of the same grid (optionally another channel count), stored the same way."""
        c, h, w = self.shape
        return LatentCanvas(
            channels or c, h, w, self._directory if self.on_disk else None, self.device, self.dtype
        )

    def close(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._array = None

    def __del__(self) -> None:  # pragma: no cover - best effort cleanup
        with contextlib.suppress(Exception):
            self.close()


class WindowSlices:
    """A store indexed like the (B, C, H, W) tensor it stands for: ``view[:, :, rows, cols]`` reads that window.

    It lets code that slices a scene-sized condition by window (the pipeline's super-resolution low-res input)
    read it from a :class:`LatentCanvas` on disk instead of a tensor in RAM.
    """

    def __init__(self, store: TensorStore | LatentCanvas) -> None:
        self.store = store

    def __getitem__(self, key: tuple[slice, ...]) -> torch.Tensor:
        *lead, rows, cols = key
        if any(s != slice(None) for s in lead) or rows.step not in (None, 1) or cols.step not in (None, 1):
            raise IndexError("WindowSlices: only [:, :, rows, cols] with contiguous row/column slices")
        return self.store.read(Window(rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start))
