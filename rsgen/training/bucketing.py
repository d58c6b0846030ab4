"""Size (aspect-ratio) bucketing, as Stable Diffusion fine-tuning tools do it: a few (height, width) shapes
of about ``image_size ** 2`` pixels with aspect ratios from 1:2 to 2:1; each image is shown at the bucket
closest to its aspect ratio (:class:`rsgen.data.dataset.ImageCaptionDataset` with ``buckets``) instead of
losing its sides to a square crop, and every batch holds one bucket only (:class:`BucketedBatchSampler`),
so the convolutional UNet trains on latents of several shapes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rsgen.data.dataset import nearest_bucket
from rsgen.errors import ConfigError
from rsgen.training.config import TrainConfig
from rsgen.training.sampler import ResumableSampler

log = logging.getLogger(__name__)

Bucket = tuple[int, int]  # (height, width) in pixels

#: Sides of automatic buckets are multiples of this many latent cells (SD: 8 x 8 = 64 px).
LATENT_CELLS_PER_STEP = 8


def auto_buckets(
    image_size: int, step: int, max_ratio: float = 2.0, min_area_fraction: float = 0.5
) -> list[Bucket]:
    """(height, width) shapes, portrait to landscape, with sides multiples of ``step``, at most
    ``image_size ** 2`` pixels (a batch never costs more than the square one) and at least
    ``min_area_fraction`` of it, aspect ratios within 1:``max_ratio`` .. ``max_ratio``:1, mirrored pairs, and
    the square ``image_size`` x ``image_size`` always among them."""
    if step < 1 or image_size < step or image_size % step:
        raise ConfigError(
            f"data.image_size={image_size}: size bucketing needs a multiple of the bucket step {step} px "
            f"(data.bucket_step, default VAE factor x {LATENT_CELLS_PER_STEP})"
        )
    area = image_size * image_size
    shapes: set[Bucket] = set()
    for short in range(step, image_size + 1, step):
        long = min(area // short // step * step, int(max_ratio * short) // step * step)
        if long >= short and short * long >= min_area_fraction * area:
            shapes |= {(long, short), (short, long)}
    return sorted(shapes, key=lambda hw: (hw[1] / hw[0], hw))


def check_buckets(buckets: Sequence[Sequence[int]], multiple: int) -> list[Bucket]:
    """``buckets`` as (height, width) tuples; raises ConfigError unless each side is a positive multiple of
    ``multiple`` (the VAE factor: latents must cover whole pixels)."""
    out = []
    for b in buckets:
        if len(b) != 2 or min(b) < 1 or b[0] % multiple or b[1] % multiple:
            raise ConfigError(
                f"data.buckets: {list(b)} is not a [height, width] pair of positive multiples of {multiple} px "
                "(the VAE factor)"
            )
        out.append((int(b[0]), int(b[1])))
    if not out:
        raise ConfigError("data.buckets is empty: give [height, width] shapes, or null for automatic ones")
    return out


def config_vae_factor(cfg: TrainConfig) -> int:
    """Pixels per latent cell of the VAE the run will use, read from its config (no weights loaded):
    ``init_from``'s ``vae/``, else ``vae.pretrained``, else the ``vae`` section."""
    blocks = list(cfg.vae.block_out_channels)
    init_vae = Path(cfg.init_from) / "vae" if cfg.init_from else None
    src = init_vae if init_vae is not None and init_vae.is_dir() else cfg.vae.pretrained
    if src:
        p = Path(src)
        cfg_file = p / "vae" / "config.json" if (p / "vae" / "config.json").is_file() else p / "config.json"
        if cfg_file.is_file():
            blocks = json.loads(cfg_file.read_text())["block_out_channels"]
    return 2 ** (len(blocks) - 1)


def training_buckets(cfg: TrainConfig) -> list[Bucket] | None:
    """The run's buckets: None when ``data.bucketing`` is off, else ``data.buckets`` (checked) or
    :func:`auto_buckets` with ``data.bucket_step`` (default VAE factor x 8 latent cells)."""
    if not cfg.data.bucketing:
        return None
    factor = config_vae_factor(cfg)
    if cfg.data.buckets is not None:
        return check_buckets(cfg.data.buckets, factor)
    step = cfg.data.bucket_step or factor * LATENT_CELLS_PER_STEP
    return check_buckets(auto_buckets(cfg.data.image_size, step), factor)


class BucketedBatchSampler(ResumableSampler):
    """Batches (lists of indices) of one bucket each, for process ``rank`` of ``world_size``; a batch sampler.

    Per epoch, from ``(seed, epoch)``: each bucket's samples are permuted and cut into full batches (a
    bucket's remainder waits for a later epoch, where the permutation differs), then the order of all
    batches is shuffled. Split across processes, truncation and mid-epoch resume (:meth:`set_epoch` with
    ``skip_batches``) are :class:`~rsgen.training.sampler.ResumableSampler`'s.
    """

    def __init__(
        self, bucket_ids: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(len(bucket_ids), batch_size, seed, rank, world_size)
        self.bucket_ids = torch.as_tensor(list(bucket_ids), dtype=torch.long)  # (N,)
        buckets, counts = torch.unique(self.bucket_ids, return_counts=True)
        self.members = [torch.nonzero(self.bucket_ids == b).flatten() for b in buckets.tolist()]
        self.full_batches = int(sum(int(c) // batch_size for c in counts))
        if self.full_batches < world_size:
            raise ValueError(
                f"no bucket holds a full batch for every process ({batch_size} x {world_size}); bucket sizes "
                f"{counts.tolist()}"
            )
        small = [int(c) for c in counts if int(c) < batch_size]
        if small:
            log.warning(
                "%d bucket(s) with fewer samples than a batch (%s) are never trained on", len(small), small
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.full_batches // self.world_size

    def epoch_batches(self) -> list[torch.Tensor]:
        g = self.generator()
        batches: list[torch.Tensor] = []
        for idx in self.members:  # (n_b,) sample indices of one bucket
            perm = idx[torch.randperm(len(idx), generator=g)]
            batches += list(perm[: len(perm) // self.batch_size * self.batch_size].split(self.batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        return self.rank_batches()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip_batches


__all__ = [
    "BucketedBatchSampler",
    "auto_buckets",
    "check_buckets",
    "config_vae_factor",
    "nearest_bucket",
    "training_buckets",
]
