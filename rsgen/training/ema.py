"""Exponential moving average of the trainable parameters, keyed by parameter name so that it is saved to
and restored from safetensors exactly."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copies of ``named_params``; decay ramps up as (1 + n) / (10 + n) when ``warmup`` (as diffusers'
    EMAModel does), so that early averages are not dominated by the random initialisation."""

    def __init__(
        self, named_params: dict[str, nn.Parameter], decay: float = 0.999, warmup: bool = True
    ) -> None:
        self.params = named_params
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in named_params.items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        names = list(self.params)
        torch._foreach_lerp_(
            [self.shadow[k] for k in names], [self.params[k].detach().float() for k in names], weight
        )
        self.num_updates += 1

    @torch.no_grad()
    def copy_to_params(self) -> dict[str, torch.Tensor]:
        """Write the averages into the live parameters; returns the previous values (for :meth:`restore`)."""
        backup = {k: p.detach().clone() for k, p in self.params.items()}
        for k, p in self.params.items():
            p.copy_(self.shadow[k].to(p.dtype))
        return backup

    @torch.no_grad()
    def restore(self, backup: dict[str, torch.Tensor]) -> None:
        for k, p in self.params.items():
            p.copy_(backup[k])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in self.shadow.items()}

    def load_state(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}")
        for k in self.shadow:
            self.shadow[k].copy_(tensors[k])
        self.num_updates = num_updates


__all__ = ["EMA"]
