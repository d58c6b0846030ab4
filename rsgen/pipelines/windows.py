"""Window layouts for large scenes: overlapping denoising windows (MultiDiffusion) with blending weights, and
non-overlapping tiles with a context halo for tiled VAE decoding. All coordinates are in latent pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsgen.errors import ConfigError


@dataclass(frozen=True)
class Window:
    """A rectangle ``[top, top + height) x [left, left + width)`` on a grid."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices for indexing the last two dimensions of a (..., H, W) tensor."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled(self, factor: int) -> Window:
        """The same rectangle on a grid ``factor`` times finer (latent -> pixel coordinates)."""
        return Window(self.top * factor, self.left * factor, self.height * factor, self.width * factor)

    def shifted(self, dy: int, dx: int) -> Window:
        return Window(self.top + dy, self.left + dx, self.height, self.width)

    def downscaled(self, factor: int) -> Window:
        """The same rectangle on a grid ``factor`` times coarser (pixel -> low-res pixel coordinates)."""
        if any(v % factor for v in (self.top, self.left, self.height, self.width)):
            raise ValueError(f"{self} is not aligned to multiples of {factor}")
        return Window(self.top // factor, self.left // factor, self.height // factor, self.width // factor)


def _starts(size: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``[0, size)`` with at least ``overlap`` shared."""
    if window >= size:
        return [0]
    stride = window - overlap
    starts = list(range(0, size - window, stride))
    starts.append(size - window)  # the last window ends exactly at the edge
    return starts


def window_layout(height: int, width: int, window: int, overlap: int) -> list[Window]:
    """Overlapping square-ish windows (clamped to the grid) covering a ``height x width`` grid, row-major."""
    if window < 1:
        raise ConfigError(f"window size {window} must be at least 1 latent pixel")
    if not 0 <= overlap < window:
        raise ConfigError(f"window overlap {overlap} must be in [0, window size {window})")
    wh, ww = min(window, height), min(window, width)
    return [
        Window(top, left, wh, ww)
        for top in _starts(height, wh, overlap)
        for left in _starts(width, ww, overlap)
    ]


def blend_weights(win: Window, height: int, width: int, overlap: int) -> torch.Tensor:
    """Blending weights (1, 1, h, w) of a window: 1 inside, ramping linearly down to 1/(overlap+1) over
    ``overlap`` pixels at sides that face another window; sides on the grid's border keep weight 1.

    Ramps make the seams between windows smooth; the MultiDiffusion fusion divides by the summed weights, so
    every latent pixel gets a convex combination of the windows covering it.
    """

    def ramp(n: int, lo_open: bool, hi_open: bool) -> torch.Tensor:
        idx = torch.arange(n, dtype=torch.float32)
        w = torch.ones(n)
        if overlap > 0:
            if lo_open:
                w = torch.minimum(w, (idx + 1) / (overlap + 1))
            if hi_open:
                w = torch.minimum(w, (n - idx) / (overlap + 1))
        return w

    wy = ramp(win.height, win.top > 0, win.bottom < height)  # (h,)
    wx = ramp(win.width, win.left > 0, win.right < width)  # (w,)
    return (wy[:, None] * wx[None, :])[None, None]  # (1, 1, h, w)


def row_bands(height: int, width: int, band: int) -> list[Window]:
    """Non-overlapping full-width bands of ``band`` rows (the last may be shorter)."""
    return [Window(top, 0, min(band, height - top), width) for top in range(0, height, band)]


def decode_tiles(
    height: int, width: int, tile: int, halo: int, align: int = 1
) -> list[tuple[Window, Window]]:
    """Non-overlapping tiles covering the grid, each with a context window extended by ``halo`` (clamped).

    Returns (context, core) pairs; decoding ``context`` and cropping ``core`` (shifted into the context's
    frame) gives a tile whose border pixels saw their neighbours, so tiles join without visible seams.
    ``align``: contexts start and end on multiples of it (or the grid's edge), e.g. so that a context maps onto
    whole pixels of a coarser low-res image.
    """
    if tile < 1 or halo < 0 or align < 1:
        raise ConfigError(f"decode tile {tile} must be >= 1, halo {halo} >= 0 and align {align} >= 1")
    out = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            core = Window(top, left, min(tile, height - top), min(tile, width - left))
            t0, l0 = max(0, top - halo) // align * align, max(0, left - halo) // align * align
            t1 = min(height, -(-(core.bottom + halo) // align) * align)
            l1 = min(width, -(-(core.right + halo) // align) * align)
            out.append((Window(t0, l0, t1 - t0, l1 - l0), core))
    return out


def window_boundaries(windows: list[Window], height: int, width: int) -> tuple[list[int], list[int]]:
    """The rows and columns where a window starts or ends inside the grid (not on its border), sorted."""
    rows = {v for w in windows for v in (w.top, w.bottom) if 0 < v < height}
    cols = {v for w in windows for v in (w.left, w.right) if 0 < v < width}
    return sorted(rows), sorted(cols)
