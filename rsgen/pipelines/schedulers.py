"""Diffusers schedulers chosen by a short name (``ddim``, ``dpm++``, ``euler``, ``euler-a``, ``unipc``, ``ddpm``).

The training noise schedule (betas, prediction type, timestep spacing) travels in the pipeline's saved
scheduler config; a name only swaps the sampling algorithm on top of it, as diffusers' ``from_config`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from rsgen.errors import ConfigError

# name -> (scheduler class, extra config values). Aliases map to the same entry.
_SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "dpm++": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpm++-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}
_ALIASES = {
    "dpmsolver++": "dpm++",
    "dpm-solver++": "dpm++",
    "dpmpp": "dpm++",
    "dpmpp-2m": "dpm++",
    "dpmsolver++-karras": "dpm++-karras",
    "euler_a": "euler-a",
    "euler-ancestral": "euler-a",
    "eulera": "euler-a",
    "uni-pc": "unipc",
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(_SCHEDULERS)


def canonical_scheduler_name(name: str) -> str:
    """The canonical name for ``name`` (case and ``_``/space insensitive); ConfigError if unknown."""
    key = str(name).strip().lower().replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key not in _SCHEDULERS:
        known = ", ".join(SCHEDULER_NAMES + tuple(_ALIASES))
        raise ConfigError(f"unknown scheduler {name!r}; expected one of: {known}")
    return key


def make_scheduler(name: str, base: SchedulerMixin | Mapping[str, Any] | None = None) -> SchedulerMixin:
    """A fresh scheduler of kind ``name`` sharing the noise schedule of ``base`` (a scheduler or its config).

    Keys of ``base`` that the new class does not know are ignored by diffusers. Timesteps are spaced
    ``trailing`` (the first step starts at the last training timestep, as recommended for few-step sampling),
    and the same values are used whether ``base`` was built in memory or loaded from disk (diffusers'
    private ``_use_default_values`` list would otherwise change them after a save/load round trip).
    """
    cls, extra = _SCHEDULERS[canonical_scheduler_name(name)]
    config: dict[str, Any] = {}
    if base is not None:
        source = base.config if isinstance(base, SchedulerMixin) else base
        config = {k: v for k, v in source.items() if not k.startswith("_")}
    config["timestep_spacing"] = "trailing"
    config["steps_offset"] = 0
    config.update(extra)
    return cls.from_config(config)


def scheduler_name_of(scheduler: SchedulerMixin) -> str:
    """The short name of a scheduler object (reverse of :func:`make_scheduler`), for sidecars and logs."""
    for name, (cls, extra) in _SCHEDULERS.items():
        if type(scheduler) is cls and all(scheduler.config.get(k) == v for k, v in extra.items()):
            return name
    return type(scheduler).__name__
