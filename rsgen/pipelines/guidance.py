"""Compositional classifier-free guidance with separate scales for the text and the metadata condition.

With ``e(T, M)`` the model output for text condition T (prompt, or the negative prompt as its "unconditional")
and metadata M (given fields, or all fields "missing"), the guided output is centred on the fully conditioned
branch::

    e = e(t, m) + (s_text - 1) * [e(t, m) - e(neg, m)] + (s_meta - 1) * [e(t, m) - e(t, none)]

Each bracket is a guidance direction with the other condition held fixed, so a scale of 1 removes its term and
its model evaluation: scales (1, 1) cost one UNet pass per step, (s, 1) or (1, s) two, (s, s') three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from rsgen.errors import ConfigError


class Branch(NamedTuple):
    """One model evaluation: whether the text and the metadata condition are given (else "unconditional")."""

    text: bool
    meta: bool


FULL = Branch(text=True, meta=True)
NO_TEXT = Branch(text=False, meta=True)
NO_META = Branch(text=True, meta=False)


@dataclass(frozen=True)
class GuidanceScales:
    """Guidance strength for text and for metadata; 1.0 = no guidance (and no extra model pass)."""

    text: float = 5.0
    meta: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("text", self.text), ("meta", self.meta)):
            if not isinstance(value, int | float) or value != value or value < 0:
                raise ConfigError(f"guidance scale {name}={value!r} must be a number >= 0 (1 = no guidance)")

    def branches(self) -> tuple[Branch, ...]:
        """The model evaluations these scales need, fully conditioned first."""
        out = [FULL]
        if self.text != 1:
            out.append(NO_TEXT)
        if self.meta != 1:
            out.append(NO_META)
        return tuple(out)


def combine_guidance(outputs: dict[Branch, torch.Tensor], scales: GuidanceScales) -> torch.Tensor:
    """Guided model output from per-branch outputs (each (B, C, h, w)) following the module formula."""
    full = outputs[FULL]  # (B, C, h, w)
    guided = full
    if scales.text != 1:
        guided = guided + (scales.text - 1) * (full - outputs[NO_TEXT])
    if scales.meta != 1:
        guided = guided + (scales.meta - 1) * (full - outputs[NO_META])
    return guided


def split_branches(stacked: torch.Tensor, branches: tuple[Branch, ...]) -> dict[Branch, torch.Tensor]:
    """Split a model output over the branch-stacked batch (len(branches) * B, C, h, w) into one (B, ...) each."""
    chunks = stacked.chunk(len(branches), dim=0)
    return dict(zip(branches, chunks, strict=True))
