"""Training checkpoints on accelerate's own machinery, for exact resume on any number of processes.

``checkpoints/step-0000500/`` holds what :meth:`accelerate.Accelerator.save_state` writes (the trainable
modules in ``model.safetensors``, ``optimizer.bin``, ``scheduler.bin`` and one ``random_states_<rank>.pkl``
per process: python, numpy and torch generator states) plus, through accelerate's save/load state hooks
(:class:`CheckpointHooks`), ``ema.safetensors`` and ``train_state.json`` (the run position: step, epoch,
batches of the epoch consumed, the sampler's identity). The per-batch training noise is seeded from the data
position (:meth:`rsgen.training.sampler.ResumableSampler.batch_seed`), so it needs no state of its own.

Pickled files (optimizer, scheduler, random states) are read by accelerate with ``torch.load(...,
weights_only=True)``, which refuses code in a pickle; ``register_for_checkpointing`` is not used because
accelerate reads those objects with ``weights_only=False``. A checkpoint is written into a hidden folder,
then ``manifest.json`` (sha256 and size of every file) is written last, atomically, and the folder renamed
into place: a folder without a matching manifest is never resumed from; the newest intact one is, with a
warning naming each bad one skipped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import re
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file
from torch import nn

from rsgen.errors import ConfigError, RsgenError
from rsgen.io import atomic_write_json
from rsgen.training.ema import EMAModel, load_ema, save_ema

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"
STATE_FILE = "train_state.json"
EMA_FILE = "ema.safetensors"
MODEL_FILE = "model.safetensors"
FORMAT = 2  # 1: rsgen's own files (model.safetensors, optimizer.pt, rng.pt, state.json; no manifest)


class CheckpointError(RsgenError):
    """A checkpoint cannot be written or read (disk full, damaged files, another model)."""


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, the current epoch and the batches of it this process consumed,
    images seen by all processes, and the steps skipped for a non-finite loss (in all, and in a row now)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    images_seen: int = 0
    skipped_steps: int = 0
    nonfinite_in_row: int = 0


def named_trainable_params(modules: dict[str, nn.Module]) -> dict[str, nn.Parameter]:
    """``{"<module>.<param>": parameter}`` of the parameters that train."""
    return {
        f"{name}.{k}": p for name, m in modules.items() for k, p in m.named_parameters() if p.requires_grad
    }


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Checkpoint folders under ``root/checkpoints`` (intact or not), oldest first."""
    folder = Path(root) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _payload_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, step: int) -> None:
    """``manifest.json``: format, step and the sha256 and size of every other file; written last."""
    files = {
        str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in _payload_files(folder)
    }
    atomic_write_json(folder / MANIFEST, {"format": FORMAT, "step": step, "files": files})


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not an intact checkpoint (None when it is): no or unreadable manifest, a file
    missing, truncated or changed since the manifest was written, or an unreadable run state."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (not finished, or written by an older rsgen)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {MANIFEST} ({e})"
    for name in (MODEL_FILE, STATE_FILE):
        if name not in files:
            return f"{MANIFEST} lists no {name}"
    for name, want in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != want.get("bytes"):
            return f"{name} has {p.stat().st_size} bytes, the manifest says {want.get('bytes')}"
        if _sha256(p) != want.get("sha256"):
            return f"{name} does not match its sha256 in the manifest"
    return None


def is_legacy_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` was written by rsgen before accelerate's checkpoints (format 1: ``state.json``,
    ``optimizer.pt``, ``lr_scheduler.pt``, ``rng.pt``, no manifest)."""
    folder = Path(folder)
    return not (folder / MANIFEST).exists() and all(
        (folder / n).is_file() for n in ("state.json", MODEL_FILE, "optimizer.pt", "lr_scheduler.pt")
    )


def find_resume_checkpoint(root: str | Path) -> Path | None:
    """The newest intact checkpoint under ``root/checkpoints`` (or one of format 1); each newer damaged one
    is skipped with a warning that says what is wrong with it."""
    for folder in reversed(checkpoint_dirs(root)):
        problem = checkpoint_problem(folder)
        if problem is None or is_legacy_checkpoint(folder):
            return folder
        log.warning("checkpoint %s is damaged (%s): resuming from an older one", folder, problem)
    return None


def resolve_resume(accelerator: Accelerator, root: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, the same on every process: ``"auto"`` the newest intact one under
    ``root`` (None if there is none), a path that checkpoint (a damaged one is an error), None none."""
    if resume is None:
        return None
    choice: list[Any] = [None]
    if accelerator.is_main_process:
        if resume == "auto":
            choice[0] = find_resume_checkpoint(root)
        else:
            problem = checkpoint_problem(resume)
            choice[0] = (
                Path(resume) if problem is None else f"resume: checkpoint {resume} is not usable: {problem}"
            )
    if accelerator.num_processes > 1:
        broadcast_object_list(choice)
    if isinstance(choice[0], str):
        raise CheckpointError(f"{choice[0]}; pick another with --resume, or --resume none to start fresh")
    return choice[0]


class CheckpointHooks:
    """What rsgen adds to accelerate's checkpoint, registered as its save / load state pre-hooks: the
    trainable modules under stable names (unwrapped, so that a checkpoint resumes on any number of
    processes), the EMA, and the run position with the sampler's identity (``sampler_state``)."""

    def __init__(
        self,
        accelerator: Accelerator,
        state: TrainState,
        ema: EMAModel | None,
        ema_names: list[str],
        sampler_state: dict[str, Any],
    ) -> None:
        self.accelerator, self.state, self.ema, self.ema_names = accelerator, state, ema, ema_names
        self.sampler_state = sampler_state
        self.loaded_world_size: int | None = None
        accelerator.register_save_state_pre_hook(self.save)
        accelerator.register_load_state_pre_hook(self.load)

    def save(self, models: list[nn.Module], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
        weights[0] = self.accelerator.unwrap_model(models[0]).state_dict()
        if not self.accelerator.is_main_process:  # EMA and run state are the same on every process
            return
        out = Path(output_dir)
        if self.ema is not None:
            save_ema(self.ema, self.ema_names, out / EMA_FILE)
        info = {
            **asdict(self.state),
            "world_size": self.accelerator.num_processes,
            "sampler": self.sampler_state,
        }
        (out / STATE_FILE).write_text(json.dumps(info, indent=1))

    def load(self, models: list[nn.Module], input_dir: str) -> None:
        folder = Path(input_dir)
        model = self.accelerator.unwrap_model(models.pop(0))  # loaded here, not by accelerate
        weights = load_file(str(folder / MODEL_FILE))
        expected = model.state_dict()
        if set(weights) != set(expected):
            diff = sorted(set(weights) ^ set(expected))
            raise ConfigError(
                f"resume: checkpoint {folder} does not match the model being trained ({len(diff)} tensor names "
                f"differ, e.g. {diff[:2]}); was it written with another config? (--resume none starts fresh)"
            )
        model.load_state_dict(weights)
        info = json.loads((folder / STATE_FILE).read_text())
        order = ("seed", "num_samples", "batch_size")
        saved = info.get("sampler", {})
        if any(saved.get(k, self.sampler_state[k]) != self.sampler_state[k] for k in order):
            log.warning(
                "resume: seed, samples or batch size changed since %s: the data order differs", folder
            )
        for f in fields(TrainState):
            setattr(self.state, f.name, int(info.get(f.name, 0)))
        self.loaded_world_size = int(info.get("world_size", self.accelerator.num_processes))
        if self.ema is not None:
            if (folder / EMA_FILE).is_file():
                load_ema(self.ema, self.ema_names, folder / EMA_FILE)
            else:
                log.warning("resume: checkpoint %s has no EMA; the EMA starts again from the weights", folder)

    def load_legacy(self, model: nn.Module, optimizer: Any, lr_scheduler: Any, folder: Path) -> None:
        """Resume from a format-1 checkpoint (one process): weights, EMA, optimizer, schedule and position;
        the random draws from there on are this version's, so it does not continue bit-exactly."""
        log.warning(
            "resume: %s was written by an older rsgen: weights, EMA, optimizer and position only", folder
        )
        weights = load_file(str(folder / MODEL_FILE))
        missing, unexpected = self.accelerator.unwrap_model(model).load_state_dict(weights, strict=False)
        trainable = {n for n, p in self.accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        if unexpected or trainable & set(missing):
            raise ConfigError(
                f"resume: checkpoint {folder} does not match the model being trained (e.g. "
                f"{sorted(unexpected or trainable & set(missing))[:2]}); was it written with another config?"
            )
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        lr_scheduler.load_state_dict(
            torch.load(folder / "lr_scheduler.pt", map_location="cpu", weights_only=True)
        )
        info = json.loads((folder / "state.json").read_text())
        for f in fields(TrainState):
            setattr(self.state, f.name, int(info.get(f.name, 0)))
        self.loaded_world_size = 1
        if self.ema is not None and (folder / EMA_FILE).is_file():
            load_ema(
                self.ema, self.ema_names, folder / EMA_FILE, legacy_updates=int(info.get("ema_updates", 0))
            )


def save_checkpoint(accelerator: Accelerator, root: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``root/checkpoints/step-<step>/`` with ``accelerator.save_state`` (called on every process),
    a manifest last, then rename it into place and keep the newest ``keep``. A failed write (disk full)
    removes the partial folder and raises :class:`CheckpointError` on every process; older checkpoints are
    left as they were."""
    folder = Path(root) / "checkpoints"
    target = folder / f"step-{step:07d}"
    tmp = folder / f".step-{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    error: OSError | None = None
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    except OSError as e:
        error = e
    failed = any_process(accelerator, error is not None)
    if not failed and accelerator.is_main_process:
        try:
            write_manifest(tmp, step)
            if target.exists():  # a re-run of the same step: replace it
                shutil.rmtree(target)
            tmp.replace(target)
        except OSError as e:
            error, failed = e, True
    failed = any_process(accelerator, failed)
    if failed:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        intact = find_resume_checkpoint(root) if accelerator.is_main_process else None
        why = (
            "no space left on the device" if error is not None and error.errno == errno.ENOSPC else str(error)
        )
        raise CheckpointError(
            f"could not write checkpoint {target}: {why or 'failed on another process'}; "
            f"{f'the previous checkpoint {intact} is intact' if intact else 'no earlier checkpoint exists'}. "
            "Free space there (or lower keep_checkpoints) and run again to resume"
        ) from error
    if accelerator.is_main_process and keep > 0:
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    log.info("checkpoint saved: %s", target)
    return target


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> None:
    """``accelerator.load_state(path)`` (the hooks restore model, EMA and run position); raises
    :class:`CheckpointError` when a process's random states could not be read (accelerate only logs it)."""
    path = Path(path)
    accelerator.step = -1
    try:
        accelerator.load_state(str(path))
    except RsgenError:
        raise
    except Exception as e:  # an unpickling error (code in a pickle), a shape mismatch, a missing file
        raise CheckpointError(f"resume: cannot read checkpoint {path}: {e}") from e
    rank = accelerator.process_index
    if accelerator.step == -1:
        raise CheckpointError(
            f"resume: checkpoint {path} has no readable random_states_{rank}.pkl for process {rank}: it was "
            f"written by a run with fewer processes, or is damaged; resume with the same number of processes"
        )


def checkpoint_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint by a flat name (``model/<name>``, ``ema/<name>``,
    ``optimizer/<param>/<key>``): what two runs that should be identical are compared on."""
    from accelerate.utils import load

    folder = Path(folder)
    out = {f"model/{k}": v for k, v in load_file(str(folder / MODEL_FILE)).items()}
    if (folder / EMA_FILE).is_file():
        out.update({f"ema/{k}": v for k, v in load_file(str(folder / EMA_FILE)).items()})
    for name in sorted(folder.glob("optimizer*.bin")):
        opt = load(name, map_location="cpu")  # weights_only=True
        for pid, per_param in opt["state"].items():
            out.update({f"{name.stem}/{pid}/{k}": v for k, v in per_param.items() if torch.is_tensor(v)})
    for name in sorted(folder.glob("random_states_*.pkl")):  # each process's generators
        rng = load(name)  # weights_only=True
        out[f"{name.stem}/torch"] = rng["torch_manual_seed"]
        out[f"{name.stem}/numpy"] = torch.from_numpy(rng["numpy_random_seed"][1].astype("int64"))
        out[f"{name.stem}/python"] = torch.tensor(rng["random_state"][1], dtype=torch.int64)
    return out


def compare_checkpoints(a: str | Path, b: str | Path) -> tuple[int, int, float]:
    """(tensors compared, tensors that differ, max abs difference) between two checkpoints; a tensor on one
    side only counts as differing with an infinite difference."""
    ta, tb = checkpoint_tensors(a), checkpoint_tensors(b)
    differ, worst = 0, 0.0
    for k in sorted(set(ta) | set(tb)):
        if k not in ta or k not in tb or ta[k].shape != tb[k].shape:
            differ, worst = differ + 1, math.inf
        elif not torch.equal(ta[k], tb[k]):
            differ += 1
            worst = max(worst, float((ta[k].double() - tb[k].double()).abs().max()))
    return len(set(ta) | set(tb)), differ, worst


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` is set on any process (a collective: every process must call it)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor(float(flag), device=accelerator.device)
    return bool(accelerator.reduce(t, "max").item())


__all__ = [
    "CheckpointError",
    "CheckpointHooks",
    "TrainState",
    "any_process",
    "checkpoint_dirs",
    "checkpoint_problem",
    "checkpoint_tensors",
    "compare_checkpoints",
    "find_resume_checkpoint",
    "is_legacy_checkpoint",
    "load_checkpoint",
    "named_trainable_params",
    "resolve_resume",
    "save_checkpoint",
    "write_manifest",
]
