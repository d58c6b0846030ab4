"""A resumable, shardable sampler: a fresh seeded permutation per epoch, split across processes, that can
start in the middle of an epoch, so that a resumed run sees exactly the batches the interrupted one would.
Subclasses change only how an epoch is cut into batches (:meth:`ResumableSampler.epoch_batches`; e.g. one
shape per batch, :class:`rsgen.training.bucketing.BucketedBatchSampler`): the split across processes and the
skipping on resume are shared.

The random draws of a training batch (noise, timesteps, dropout) come from :meth:`batch_seed`, a function of
the seed and the batch's place in the epoch across all processes: a resumed run draws them again without
any generator state, and two processes with batch B draw what one process with batch B and two
accumulation steps draws."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Indices of ``num_samples`` for process ``rank`` of ``world_size``.

    Each epoch is a permutation drawn from ``(seed, epoch)``, truncated to a multiple of
    ``batch_size * world_size`` (every process gets the same number of full batches); process ``rank`` takes
    every ``world_size``-th batch. :meth:`set_epoch` chooses the epoch and how many of this process's batches
    to skip.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_samples < batch_size * world_size:
            raise ValueError(
                f"{num_samples} samples are fewer than one batch ({batch_size} x {world_size} processes)"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.skip_batches = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches each process gets per epoch."""
        return self.num_samples // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def global_batch(self, batch_in_epoch: int) -> int:
        """The index, among all processes' batches of the epoch, of this process's ``batch_in_epoch``-th."""
        return batch_in_epoch * self.world_size + self.rank

    def batch_seed(self, epoch: int, batch_in_epoch: int) -> int:
        """Seed of the random draws of this process's ``batch_in_epoch``-th batch of ``epoch``."""
        entropy = [self.seed, epoch, self.global_batch(batch_in_epoch)]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)

    def state(self) -> dict[str, int]:
        """What makes the order of batches: saved with a checkpoint and compared on resume."""
        return {
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def generator(self) -> torch.Generator:
        """The epoch's random stream (the same on every process)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def epoch_batches(self) -> list[torch.Tensor]:
        """All processes' batches of the epoch in order (at least ``batches_per_epoch * world_size``), each a
        (batch_size,) index tensor; batch ``b * world_size + rank`` is this process's ``b``-th."""
        order = torch.randperm(self.num_samples, generator=self.generator())  # (num_samples,)
        n = self.batches_per_epoch * self.world_size
        return list(order[: n * self.batch_size].split(self.batch_size))

    def rank_batches(self) -> Iterator[list[int]]:
        """This process's batches of the epoch from ``skip_batches`` on."""
        batches = self.epoch_batches()
        for b in range(self.skip_batches, self.batches_per_epoch):
            yield batches[b * self.world_size + self.rank].tolist()

    def __iter__(self) -> Iterator[int]:
        for batch in self.rank_batches():
            yield from batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size


__all__ = ["ResumableSampler"]
