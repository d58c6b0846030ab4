"""Training checkpoints for exact resume, written atomically: the trainable parameters and their EMA in
safetensors, the optimizer and learning-rate scheduler states, every random-number generator, and the data
position (epoch, batch within the epoch). A folder ``checkpoints/step-0000500/`` appears only when complete."""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rsgen.errors import ConfigError
from rsgen.io import atomic_dir
from rsgen.training.ema import EMA

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, the current epoch and the batches of it already consumed."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    images_seen: int = 0


def trainable_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``{"<module>.<param>": tensor}`` of the parameters that train (frozen ones are rebuilt from their source)."""
    return {
        f"{name}.{k}": p.detach().cpu().contiguous()
        for name, m in modules.items()
        for k, p in m.named_parameters()
        if p.requires_grad
    }


def named_trainable_params(modules: dict[str, nn.Module]) -> dict[str, nn.Parameter]:
    return {
        f"{name}.{k}": p for name, m in modules.items() for k, p in m.named_parameters() if p.requires_grad
    }


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root/checkpoints``, oldest first."""
    folder = Path(root) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    root: str | Path,
    state: TrainState,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    ema: EMA | None,
    generator: torch.Generator,
    keep: int = 2,
) -> Path:
    """Write ``root/checkpoints/step-<step>/`` atomically and keep only the newest ``keep`` checkpoints."""
    target = Path(root) / "checkpoints" / f"step-{state.step:07d}"
    with atomic_dir(target) as tmp:
        save_file(trainable_state(modules), str(tmp / "model.safetensors"))
        if ema is not None:
            save_file(ema.state_tensors(), str(tmp / "ema.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "train": generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            tmp / "rng.pt",
        )
        np_state = np.random.get_state()
        info = {
            **state.__dict__,
            "ema_updates": ema.num_updates if ema is not None else 0,
            "python_random": repr(random.getstate()),
            "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }
        (tmp / "state.json").write_text(json.dumps(info))
    for old in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint saved: %s", target)
    return target


def load_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    ema: EMA | None,
    generator: torch.Generator,
) -> TrainState:
    """Restore everything :func:`save_checkpoint` wrote; returns the run position."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise ConfigError(f"resume: {path} is not a complete rsgen checkpoint (no state.json)")
    weights = load_file(str(path / "model.safetensors"))
    expected = named_trainable_params(modules)
    if set(weights) != set(expected):
        diff = sorted(set(weights) ^ set(expected))
        raise ConfigError(
            f"resume: checkpoint {path} does not match the model being trained ({len(diff)} parameter names "
            f"differ, e.g. {diff[:2]}); was it written with another config?"
        )
    with torch.no_grad():
        for k, p in expected.items():
            p.copy_(weights[k].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    lr_scheduler.load_state_dict(torch.load(path / "lr_scheduler.pt", map_location="cpu", weights_only=True))
    info = json.loads((path / "state.json").read_text())
    if ema is not None and (path / "ema.safetensors").is_file():
        ema.load_state(load_file(str(path / "ema.safetensors")), info["ema_updates"])
    rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["train"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(_literal(info["python_random"]))
    kind, keys, pos, has_gauss, cached = info["numpy_random"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return TrainState(**{k: info[k] for k in TrainState.__dataclass_fields__})


def _literal(text: str) -> Any:
    import ast

    return ast.literal_eval(text)


__all__ = [
    "TrainState",
    "checkpoint_dirs",
    "load_checkpoint",
    "named_trainable_params",
    "save_checkpoint",
    "trainable_state",
]
