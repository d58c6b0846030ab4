"""The one training loop for every mode (``vae`` | ``base`` | ``controlnet`` | ``sr``), on accelerate.

Read top to bottom: build the task (models of the mode), the data (latent cache or images), optimizer, LR
schedule and EMA (diffusers' EMAModel); ``accelerator.prepare`` the trainable modules (one DDP module whose
forward is the task's loss), optimizer and schedule; resume from the newest intact checkpoint
(``accelerator.load_state``); then step: loss -> backward (DDP averages the gradients) -> clip -> optimizer
-> EMA -> log / sample grid / checkpoint, until ``max_steps`` or ``max_minutes``; a step with a NaN or inf
loss is skipped. Finally export the model (EMA weights) as a pipeline folder in ``<output_dir>/model``.
Multi-process: ``accelerate launch --num_processes N train/train.py ...`` (see docs/training.md).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from diffusers.optimization import get_scheduler
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rsgen.config import save_config, to_dict
from rsgen.data.resampling import RESAMPLING_RULE
from rsgen.errors import ConfigError, RsgenError
from rsgen.models.vae import vae_scale_factor
from rsgen.training.bucketing import BucketedBatchSampler, check_buckets, training_buckets
from rsgen.training.checkpoint import (
    CheckpointHooks,
    TrainState,
    any_process,
    is_legacy_checkpoint,
    load_checkpoint,
    named_trainable_params,
    resolve_resume,
    save_checkpoint,
)
from rsgen.training.config import TrainConfig
from rsgen.training.ema import ema_weights, make_ema
from rsgen.training.latent_cache import (
    CachedLatentDataset,
    build_latent_cache,
    cache_fingerprint,
    cache_is_complete,
    collate_cached,
)
from rsgen.training.sampler import ResumableSampler
from rsgen.training.tasks import TrainTask, make_task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: the step it reached, per-step losses of this process, and where things went."""

    step: int
    losses: list[float] = field(default_factory=list)
    images_per_s: float = 0.0
    model_dir: Path | None = None
    checkpoint: Path | None = None
    stopped_by: str = "max_steps"
    skipped_steps: int = 0
    main_process: bool = True  # False on the other processes of a multi-process run


class NonFiniteLossError(RsgenError, FloatingPointError):
    """Too many steps in a row had a NaN or inf loss."""


class TaskModule(nn.Module):
    """The trainable modules of a task as one module (children named as in ``task.trainable``) whose
    forward is the task's loss: what ``accelerator.prepare`` wraps in DDP, so that every process's
    gradients are averaged in backward while the task keeps using its modules as they are."""

    def __init__(self, task: TrainTask) -> None:
        super().__init__()
        for name, module in task.trainable.items():
            self.add_module(name, module)
        self.task = task

    def forward(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.loss(batch, generator)


def build_dataset(cfg: TrainConfig) -> Dataset:
    """The image-caption dataset of the config's manifest (``rsgen.data.dataset.ImageCaptionDataset``)."""
    from rsgen.data.dataset import ImageCaptionDataset

    if not cfg.data.manifest:
        raise ConfigError(
            "data.manifest is not set: give a manifest JSONL (see `rsgen curate`) with --manifest"
        )
    ds = ImageCaptionDataset(
        cfg.data.manifest,
        split=cfg.data.split,
        image_size=cfg.data.image_size,
        random_caption=cfg.data.random_caption,
        seed=cfg.seed,
        sources=cfg.data.sources,
        allow_upsampling=cfg.data.allow_upsampling,
        buckets=training_buckets(cfg),
        flips_rotations=bool(cfg.data.flips_rotations),
    )
    if cfg.data.limit:
        ds.records = ds.records[: cfg.data.limit]
    if len(ds) == 0:
        raise ConfigError(f"data.manifest {cfg.data.manifest}: no samples in split {cfg.data.split!r}")
    return ds


def _collate_images(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from rsgen.data.dataset import collate_samples

    return collate_samples(samples)


def _training_data(
    cfg: TrainConfig, task: TrainTask, raw: Dataset | None, accelerator: Accelerator
) -> tuple[Dataset, Any]:
    """(dataset, collate): the latent cache when the task uses one (built once, by the main process); with
    ``raw`` None (``data.cache_only``) the existing cache alone."""
    cache_dir = Path(cfg.data.cache_dir or cfg.output_path / "latent-cache")
    if raw is None:  # data.cache_only
        if not task.uses_latent_cache or not cache_is_complete(cache_dir):
            raise ConfigError(
                f"data.cache_only needs a complete latent cache in {cache_dir} (cache.json) and a mode that "
                "trains on latents"
            )
        return CachedLatentDataset(cache_dir, cfg.data.random_caption, cfg.seed), collate_cached
    if not task.uses_latent_cache:
        if cfg.data.flips_rotations is None and cfg.mode != "controlnet" and hasattr(raw, "flips_rotations"):
            raw.flips_rotations = True  # image space: a new orientation every epoch
        return raw, _collate_images
    vae_src = cfg.vae.pretrained or cfg.init_from or f"random-init-seed-{cfg.seed}"
    fingerprint = cache_fingerprint(
        {
            "manifest": cfg.data.manifest,
            "split": cfg.data.split,
            "size": cfg.data.image_size,
            "n": len(raw),
            "sources": cfg.data.sources,
            "vae": str(vae_src),
            "vae_config": dict(task.vae.config),
            "mode": cfg.mode,
            "sr_factor": cfg.sr.factor,
            "condition": cfg.controlnet.condition,
            "resampling": RESAMPLING_RULE,  # how GSD copies are made and shown (rsgen.data.resampling)
            **({"buckets": getattr(raw, "buckets", None)} if cfg.data.bucketing else {}),
        }
    )
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            build_latent_cache(
                raw,
                _collate_images,
                task.encode_for_cache,
                cache_dir,
                fingerprint,
                task.cache_extras,
                cfg.optim.batch_size,
                cfg.data.num_workers,
            )
    return CachedLatentDataset(cache_dir, cfg.data.random_caption, cfg.seed), collate_cached


def _sampler(cfg: TrainConfig, data: Dataset, accelerator: Accelerator) -> ResumableSampler:
    """This process's share of each epoch: sample indices, or with ``data.bucketing`` whole batches of one
    bucket (from the dataset's ``bucket_ids``: the image dataset's or the bucketed latent cache's)."""
    rank, world, bs = accelerator.process_index, accelerator.num_processes, cfg.optim.batch_size
    if not cfg.data.bucketing:
        return ResumableSampler(len(data), bs, cfg.seed, rank, world)  # type: ignore[arg-type]
    if getattr(data, "buckets", None) is None:
        raise ConfigError(
            f"data.bucketing is on but the training dataset ({type(data).__name__}) has no size buckets: "
            "use a manifest (data.manifest) or a dataset with `buckets` and `bucket_ids`"
        )
    return BucketedBatchSampler(data.bucket_ids, bs, cfg.seed, rank, world)  # type: ignore[attr-defined]


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The run's Accelerator; several processes without a GPU run on CPU with gloo (plain ``accelerate
    launch`` / ``torchrun`` would otherwise leave each process alone). DDP looks for unused parameters in
    ``vae`` mode only (its discriminator switches gradients off and on within a step)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Accelerator(
        gradient_accumulation_steps=cfg.optim.gradient_accumulation_steps,
        mixed_precision=cfg.optim.mixed_precision,
        log_with="tensorboard",
        project_dir=str(cfg.output_path),
        cpu=world > 1 and not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.mode == "vae")],
    )


def train(
    cfg: TrainConfig, dataset: Dataset | None = None, resume: str | None = "auto", progress: bool = True
) -> TrainResult:
    """Train ``cfg.mode`` until ``cfg.max_steps`` (or ``cfg.max_minutes``); resume=``"auto"`` continues from the
    newest intact checkpoint in ``output_dir``, a path from that checkpoint, None starts fresh. ``dataset``
    replaces the manifest dataset (items as ``ImageCaptionDataset``'s)."""
    out = cfg.output_path
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    raw = dataset if dataset is not None else (None if cfg.data.cache_only else build_dataset(cfg))
    set_seed(cfg.seed)  # python, numpy, torch: the same model initialisation on every process
    task = make_task(cfg, device)
    if cfg.data.bucketing and getattr(raw, "buckets", None) and hasattr(task, "vae"):
        check_buckets(raw.buckets, vae_scale_factor(task.vae))  # type: ignore[attr-defined]
    task.attach_dataset(raw)
    data, collate = _training_data(cfg, task, raw, accelerator)
    bs = cfg.optim.batch_size
    sampler = _sampler(cfg, data, accelerator)

    named = named_trainable_params(task.trainable)
    params = list(named.values())
    if not params:
        raise ConfigError(f"mode={cfg.mode}: nothing to train (all parameters are frozen)")
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
    )
    lr_scheduler = get_scheduler(  # accelerate steps it once per process per optimizer step
        o.lr_scheduler,
        optimizer,
        num_warmup_steps=o.warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.max_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(TaskModule(task), optimizer, lr_scheduler)
    ema = make_ema(params, cfg.ema) if cfg.ema.enabled else None
    state = TrainState()
    hooks = CheckpointHooks(accelerator, state, ema, list(named), sampler.state())

    set_seed(cfg.seed, device_specific=True)  # each process its own global generators (seed + rank)
    start_from = resolve_resume(accelerator, out, resume)
    if start_from is not None:
        if is_legacy_checkpoint(start_from):
            hooks.load_legacy(model, optimizer, lr_scheduler, start_from)
        else:
            load_checkpoint(accelerator, start_from)
        if hooks.loaded_world_size != accelerator.num_processes:  # same images, other order from here on
            consumed = state.batch_in_epoch * (hooks.loaded_world_size or 1)
            state.batch_in_epoch = -(-consumed // accelerator.num_processes)
            log.warning(
                "resume: checkpoint written by %s processes, now %d: the rest of the run is not the same",
                hooks.loaded_world_size,
                accelerator.num_processes,
            )
        log.info("resumed from %s at step %d", start_from, state.step)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        accelerator.init_trackers("train", config={k: str(v) for k, v in to_dict(cfg).items()})

    result = TrainResult(step=state.step, checkpoint=start_from, main_process=accelerator.is_main_process)
    log.info(
        "mode=%s: %d trainable parameters, %d samples, batch %d x %d processes",
        cfg.mode,
        sum(p.numel() for p in params),
        len(data),
        bs,
        accelerator.num_processes,
    )
    bar = tqdm(
        total=cfg.max_steps,
        initial=state.step,
        desc=f"train {cfg.mode}",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    generator = torch.Generator()  # re-seeded for every batch from its place in the data
    t_start = time.monotonic()
    t_log, images_since_log, loss_sum, loss_count, window_finite = t_start, 0, 0.0, 0, True
    last_saved = state.step if start_from is not None else -1
    stopped_by = "max_steps"
    model.train()
    while state.step < cfg.max_steps and stopped_by == "max_steps":
        sampler.set_epoch(state.epoch, state.batch_in_epoch)
        for d in (data, raw):
            if hasattr(d, "set_epoch"):
                d.set_epoch(state.epoch)
        batching: dict[str, Any] = (
            {"batch_sampler": sampler}
            if isinstance(sampler, BucketedBatchSampler)
            else {"batch_size": bs, "sampler": sampler, "drop_last": True}
        )
        loader = (
            DataLoader(  # its own generator: starting it (workers' seeds) leaves torch's global one alone
                data,
                collate_fn=collate,
                num_workers=cfg.data.num_workers,
                generator=sampler.generator(),
                **batching,
            )
        )
        for batch in loader:
            generator.manual_seed(sampler.batch_seed(state.epoch, state.batch_in_epoch))
            with accelerator.accumulate(model):
                loss, parts = model(batch, generator)
                loss_value = float(loss.detach())
                window_finite = window_finite and math.isfinite(loss_value)
                accelerator.backward(loss)
                skip = False
                if accelerator.sync_gradients:
                    skip = any_process(accelerator, not window_finite)
                    if not skip:
                        if o.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(params, o.max_grad_norm)
                        optimizer.step()
                        lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            state.batch_in_epoch += 1
            state.images_seen += bs * accelerator.num_processes
            images_since_log += bs * accelerator.num_processes
            loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
            if not accelerator.sync_gradients:
                continue
            step_loss = loss_sum / loss_count
            loss_sum, loss_count, window_finite = 0.0, 0, True
            if skip:
                _skip_step(state, step_loss, cfg.max_nonfinite_steps)
                continue
            state.step, state.nonfinite_in_row = state.step + 1, 0
            if ema is not None:
                ema.step(params)
            result.losses.append(step_loss)
            bar.update(1)
            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                now = time.monotonic()
                result.images_per_s = images_since_log / max(now - t_log, 1e-9)
                logs = {
                    "train/loss": step_loss,
                    "train/lr": lr_scheduler.get_last_lr()[0],
                    "train/images_per_s": result.images_per_s,
                    "train/skipped_steps": state.skipped_steps,
                    **{f"train/{k}": v for k, v in parts.items()},
                }
                accelerator.log(logs, step=state.step)
                bar.set_postfix(loss=f"{step_loss:.4f}", img_s=f"{result.images_per_s:.1f}")
                if bar.disable and accelerator.is_main_process:  # no progress bar: say it in the log instead
                    log.info(
                        "step %d/%d loss %.4f lr %.2e %.1f img/s",
                        state.step,
                        cfg.max_steps,
                        step_loss,
                        logs["train/lr"],
                        result.images_per_s,
                    )
                t_log, images_since_log = now, 0
            if cfg.sample_every > 0 and state.step % cfg.sample_every == 0 and accelerator.is_main_process:
                with ema_weights(ema, params):
                    _preview(task, out / "samples" / f"step-{state.step:07d}.png", cfg.seed)
            if cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0:
                result.checkpoint = save_checkpoint(accelerator, out, state.step, cfg.keep_checkpoints)
                last_saved = state.step
            if state.step >= cfg.max_steps:
                break
            if cfg.max_minutes is not None and _time_is_up(accelerator, t_start, cfg.max_minutes):
                stopped_by = "max_minutes"
                break
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    bar.close()
    if last_saved != state.step:
        result.checkpoint = save_checkpoint(accelerator, out, state.step, cfg.keep_checkpoints)
    result.step, result.stopped_by, result.skipped_steps = state.step, stopped_by, state.skipped_steps
    if accelerator.is_main_process:
        info = {
            "mode": cfg.mode,
            "step": state.step,
            "images_seen": state.images_seen,
            "skipped_steps": state.skipped_steps,
            "stopped_by": stopped_by,
            "config": to_dict(cfg),
        }
        with ema_weights(ema, params):
            result.model_dir = task.export(out / "model", info)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _skip_step(state: TrainState, loss: float, limit: int) -> None:
    """Count a step skipped for a non-finite loss; raise once ``limit`` came in a row."""
    state.skipped_steps += 1
    state.nonfinite_in_row += 1
    log.warning(
        "step %d: loss is %s on some process: step skipped (%d in a row, %d in all)",
        state.step + 1,
        loss,
        state.nonfinite_in_row,
        state.skipped_steps,
    )
    if state.nonfinite_in_row >= limit:
        raise NonFiniteLossError(
            f"training stopped at step {state.step}: {state.nonfinite_in_row} steps in a row had a NaN or inf "
            "loss; lower optim.lr, check the data, or raise max_nonfinite_steps"
        )


def _preview(task: TrainTask, path: Path, seed: int) -> None:
    written = task.preview(path, seed)
    if written is not None:
        log.info("samples: %s", written)


def _time_is_up(accelerator: Accelerator, t_start: float, max_minutes: float) -> bool:
    up = torch.tensor(float(time.monotonic() - t_start >= max_minutes * 60), device=accelerator.device)
    if accelerator.num_processes > 1:
        up = accelerator.reduce(up, "max")
    return bool(up.item())


__all__ = ["NonFiniteLossError", "TaskModule", "TrainResult", "build_dataset", "make_accelerator", "train"]
