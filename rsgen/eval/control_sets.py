"""Control "generated" sets with known answers, to check the evaluation itself.

* real control: EuroSAT val images (half ``a``; evaluate against ``eurosat-val-b``) written as a generated set, with class prompts and their true GSD
  (optionally coarsened by a factor, GSD scaled to match): a perfect generator. Every score should sit at its
  real reference.
* noise control: uniform noise with the same prompts and metadata: a generator that obeys nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rsgen.eval.evaluate import class_prompt
from rsgen.eval.generated_set import write_generated_set
from rsgen.eval.gsd_predictor import degrade
from rsgen.eval.reference_data import EUROSAT_GSD_M, eurosat_val_half


def write_control_set(
    out: str | Path,
    n: int = 500,
    kind: str = "real",
    gsd_factors: tuple[float, ...] = (1.0, 2.0, 4.0),
    seed: int = 0,
) -> Path:
    """Write a ``real`` or ``noise`` control set of ``n`` images (from EuroSAT val half a) to ``out``."""
    if kind not in ("real", "noise"):
        raise ValueError(f"kind {kind!r}: expected 'real' or 'noise'")
    val = eurosat_val_half("a")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(val), min(n, len(val)), replace=False))
    images = val.images[idx].copy()  # (n, 64, 64, 3)
    factors = np.asarray([gsd_factors[i % len(gsd_factors)] for i in range(len(idx))])
    for f in set(factors.tolist()):
        sel = np.flatnonzero(factors == f)
        if f > 1:
            x = torch.from_numpy(images[sel]).permute(0, 3, 1, 2).float() / 255
            images[sel] = (degrade(x, f) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    if kind == "noise":
        images = rng.integers(0, 256, images.shape, dtype=np.uint8)
    records = []
    for j, i in enumerate(idx):
        name = val.class_names[val.labels[i]]
        records.append(
            {
                "prompt": class_prompt(name),
                "label": name,
                "metadata": {"gsd_m": EUROSAT_GSD_M * factors[j]},
                "source": f"control-{kind}: EuroSAT val half a #{i}",
            }
        )
    return write_generated_set(out, images, records)
