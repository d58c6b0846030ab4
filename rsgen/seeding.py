"""Seeded randomness that leaves the caller's random state alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator seeded to ``seed``, then restore it as it was.

    For library code that draws from the global generator without taking one (torchmetrics' KID subsets and IS
    splits, ``from_config`` weight initialisation): the result depends on ``seed`` alone, and the caller's next
    random draws are the ones it would have made anyway. CUDA generators are neither forked nor seeded.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield
