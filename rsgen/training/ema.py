"""The exponential moving average of the trainable parameters: diffusers' :class:`EMAModel`, built from the
run's ``ema`` section and checkpointed as ``ema.safetensors`` keyed by parameter name (the format rsgen has
always written: older checkpoints load unchanged), with EMAModel's scalar state in the file's metadata."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from rsgen.training.config import EMAConfig

_SCALARS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)


def make_ema(params: list[nn.Parameter], cfg: EMAConfig) -> EMAModel:
    """EMAModel over ``params``; with ``cfg.warmup`` the decay ramps up as (1 + n) / (10 + n) (diffusers'
    default schedule), else it is ``cfg.decay`` from the second update on."""
    return EMAModel(params, decay=cfg.decay, min_decay=0.0 if cfg.warmup else cfg.decay, foreach=True)


def save_ema(ema: EMAModel, names: list[str], path: str | Path) -> None:
    """``{name: shadow}`` in safetensors; ``names`` in the order of the parameters the EMA was built from."""
    state = ema.state_dict()
    tensors = {n: t.detach().cpu().contiguous() for n, t in zip(names, state["shadow_params"], strict=True)}
    save_file(tensors, str(path), metadata={"ema": json.dumps({k: state[k] for k in _SCALARS})})


def load_ema(ema: EMAModel, names: list[str], path: str | Path, legacy_updates: int = 0) -> None:
    """Restore what :func:`save_ema` wrote (or an rsgen checkpoint from before EMAModel, whose update count
    is ``legacy_updates``); raises KeyError naming the missing parameters."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("ema", "null") or "null")
        missing = sorted(set(names) - set(f.keys()))
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        shadow = [f.get_tensor(n) for n in names]
    state = {**ema.state_dict(), **(meta or {"optimization_step": legacy_updates})}
    device = ema.shadow_params[0].device if ema.shadow_params else torch.device("cpu")
    ema.load_state_dict({**state, "shadow_params": [s.to(device) for s in shadow]})


@contextlib.contextmanager
def ema_weights(ema: EMAModel | None, params: list[nn.Parameter]) -> Iterator[None]:
    """The EMA weights in the live parameters for the duration of the block (export, previews)."""
    if ema is None:
        yield
        return
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


__all__ = ["EMAModel", "ema_weights", "load_ema", "make_ema", "save_ema"]
