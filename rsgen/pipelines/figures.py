"""Pictures of what a model does, for READMEs and model cards: a sample grid per class prompt, and what-if
strips (the same seed while one metadata field changes). Scripts: ``sample/figures.py``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsgen.metadata import Metadata
from rsgen.pipelines.pipeline import RSGenPipeline
from rsgen.pipelines.whatif import labelled_grid, run_whatif


def class_grid(
    pipe: RSGenPipeline,
    prompts: Sequence[str],
    labels: Sequence[str],
    seeds: Sequence[int],
    metadata: Metadata,
    *,
    steps: int = 25,
    guidance: float = 5.0,
    cell: int = 128,
) -> np.ndarray:
    """One row per prompt, one column per seed: a (H, W, 3) uint8 labelled grid (label = the row's class)."""
    images, names = [], []
    for prompt, label in zip(prompts, labels, strict=True):
        out = pipe(
            prompt=[prompt] * len(seeds),
            metadata=[metadata] * len(seeds),
            n=1,
            num_inference_steps=steps,
            guidance_text=guidance,
            seed=list(seeds),
            output_type="np",
            progress=False,
        )
        images += [np.asarray(im) for im in out.images]  # each (H, W, 3) in [0, 1]
        names += [label if k == 0 else "" for k in range(len(seeds))]
    return labelled_grid(images, names, cell=cell, ncols=len(seeds))


def whatif_strip(
    pipe: RSGenPipeline,
    prompt: str,
    metadata: Metadata,
    field: str,
    values: Sequence[str],
    *,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 5.0,
    cell: int = 128,
) -> np.ndarray:
    """The same seed and prompt while ``field`` (year, month, gsd, cloud, ...) takes each of ``values``."""
    result = run_whatif(
        pipe,
        None,
        prompt,
        field,
        values,
        steps=steps,
        seed=seed,
        guidance_text=guidance,
        base_metadata=metadata,
        progress=False,
    )
    return labelled_grid(result.images, [v.label for v in result.variants], cell=cell, ncols=len(values))


__all__ = ["class_grid", "whatif_strip"]
