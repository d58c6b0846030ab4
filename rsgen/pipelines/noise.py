"""Per-sample seeds: one ``torch.Generator`` per image, so image ``i`` of a batch can be regenerated alone.

Image ``i`` of a run with seed ``s`` uses seed ``s + i``; regenerating it alone means running with seed
``s + i`` and ``n = 1`` (the sidecar records every image's own seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from rsgen.errors import ConfigError

MAX_SEED = 2**63 - 1


def sample_seeds(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """``n`` per-image seeds: ``seed + i``, or the given list (length ``n``), or random ones when None."""
    if n < 1:
        raise ConfigError(f"number of images n={n} must be at least 1")
    if seed is None:
        base = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return [base + i for i in range(n)]
    if isinstance(seed, int):
        seeds = [seed + i for i in range(n)]
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != n:
            raise ConfigError(f"got {len(seeds)} seeds for n={n} images; give one seed or exactly n")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise ConfigError(f"seed {s} is outside the allowed range [0, 2**63-1]")
    return seeds


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per image. CPU generators are used by default so seeds give the same image on any device."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def per_sample_noise(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian noise of ``shape`` = (B, ...) where row ``i`` is drawn from ``generators[i]`` alone."""
    if shape[0] != len(generators):
        raise ValueError(f"noise batch {shape[0]} != {len(generators)} generators")
    return randn_tensor(tuple(shape), generator=list(generators), device=torch.device(device), dtype=dtype)
