"""The one training loop for every mode (``vae`` | ``base`` | ``controlnet`` | ``sr``), on accelerate.

Read top to bottom: build the task (models of the mode), the data (latent cache or images), optimizer, LR
schedule and EMA; resume from the newest checkpoint; then step: loss -> backward -> (all-reduce) -> clip ->
optimizer -> EMA -> log / sample grid / checkpoint, until ``max_steps`` or ``max_minutes``; finally export
the model (EMA weights) as a pipeline folder in ``<output_dir>/model``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rsgen.config import save_config, to_dict
from rsgen.data.resampling import RESAMPLING_RULE
from rsgen.errors import ConfigError
from rsgen.models.vae import vae_scale_factor
from rsgen.training.bucketing import BucketedBatchSampler, check_buckets, training_buckets
from rsgen.training.checkpoint import (
    TrainState,
    checkpoint_dirs,
    load_checkpoint,
    named_trainable_params,
    save_checkpoint,
)
from rsgen.training.config import TrainConfig
from rsgen.training.ema import EMA
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


def _all_reduce_grads(params: list[torch.nn.Parameter], accelerator: Accelerator) -> None:
    """Average gradients across processes (the models are not DDP-wrapped, so that tasks can use them as is)."""
    if accelerator.num_processes == 1:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    flat /= accelerator.num_processes
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(synced)


def train(
    cfg: TrainConfig, dataset: Dataset | None = None, resume: str | None = "auto", progress: bool = True
) -> TrainResult:
    """Train ``cfg.mode`` until ``cfg.max_steps`` (or ``cfg.max_minutes``); resume=``"auto"`` continues from the
    newest checkpoint in ``output_dir``, a path from that checkpoint, None starts fresh. ``dataset`` replaces
    the manifest dataset (items as ``ImageCaptionDataset``'s)."""
    out = cfg.output_path
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.optim.gradient_accumulation_steps,
        mixed_precision=cfg.optim.mixed_precision,
        log_with="tensorboard",
        project_dir=str(out),
    )
    device = accelerator.device
    raw = dataset if dataset is not None else (None if cfg.data.cache_only else build_dataset(cfg))
    torch.manual_seed(cfg.seed)  # model initialisation
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
    lr_scheduler = get_scheduler(
        o.lr_scheduler,
        optimizer,
        num_warmup_steps=o.warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.max_steps * accelerator.num_processes,
    )
    optimizer, lr_scheduler = accelerator.prepare(optimizer, lr_scheduler)
    ema = EMA(named, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.enabled else None
    generator = torch.Generator().manual_seed(cfg.seed * 1009 + accelerator.process_index)

    state = TrainState()
    ckpts = checkpoint_dirs(out)
    start_from = (
        Path(resume) if resume not in (None, "auto") else (ckpts[-1] if resume == "auto" and ckpts else None)
    )
    if start_from is not None:
        state = load_checkpoint(start_from, task.trainable, optimizer, lr_scheduler, ema, generator)
        log.info("resumed from %s at step %d", start_from, state.step)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        accelerator.init_trackers("train", config={k: str(v) for k, v in to_dict(cfg).items()})

    result = TrainResult(step=state.step, checkpoint=start_from)
    n_params = sum(p.numel() for p in params)
    log.info(
        "mode=%s: %d trainable parameters, %d samples, batch %d x %d processes",
        cfg.mode,
        n_params,
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
    t_start = time.monotonic()
    t_log, images_since_log, loss_sum, loss_count = t_start, 0, 0.0, 0
    last_saved = state.step if start_from is not None else -1
    stopped_by = "max_steps"
    task.train(True)
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
        loader = DataLoader(data, collate_fn=collate, num_workers=cfg.data.num_workers, **batching)
        for batch in loader:
            with accelerator.accumulate():
                with accelerator.autocast():
                    loss, parts = task.loss(batch, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    _all_reduce_grads(params, accelerator)
                    if o.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, o.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.batch_in_epoch += 1
            state.images_seen += bs * accelerator.num_processes
            images_since_log += bs * accelerator.num_processes
            loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            if ema is not None:
                ema.update()
            step_loss = loss_sum / loss_count
            result.losses.append(step_loss)
            loss_sum, loss_count = 0.0, 0
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss became {step_loss} at step {state.step}; lower optim.lr?")
            bar.update(1)
            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                now = time.monotonic()
                result.images_per_s = images_since_log / max(now - t_log, 1e-9)
                logs = {
                    "train/loss": step_loss,
                    "train/lr": lr_scheduler.get_last_lr()[0],
                    "train/images_per_s": result.images_per_s,
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
                _preview(task, ema, out / "samples" / f"step-{state.step:07d}.png", cfg.seed)
            if cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0:
                result.checkpoint = _checkpoint(
                    accelerator,
                    out,
                    state,
                    task,
                    optimizer,
                    lr_scheduler,
                    ema,
                    generator,
                    cfg.keep_checkpoints,
                )
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
        result.checkpoint = _checkpoint(
            accelerator, out, state, task, optimizer, lr_scheduler, ema, generator, cfg.keep_checkpoints
        )
    result.step, result.stopped_by = state.step, stopped_by
    if accelerator.is_main_process:
        info = {
            "mode": cfg.mode,
            "step": state.step,
            "images_seen": state.images_seen,
            "stopped_by": stopped_by,
            "config": to_dict(cfg),
        }
        result.model_dir = _with_ema(ema, lambda: task.export(out / "model", info))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _with_ema(ema: EMA | None, fn: Any) -> Any:
    """Run ``fn`` with the EMA weights swapped into the live parameters."""
    if ema is None:
        return fn()
    backup = ema.copy_to_params()
    try:
        return fn()
    finally:
        ema.restore(backup)


def _preview(task: TrainTask, ema: EMA | None, path: Path, seed: int) -> None:
    written = _with_ema(ema, lambda: task.preview(path, seed))
    if written is not None:
        log.info("samples: %s", written)


def _checkpoint(
    accelerator: Accelerator,
    out: Path,
    state: TrainState,
    task: TrainTask,
    optimizer: Any,
    lr_scheduler: Any,
    ema: EMA | None,
    generator: torch.Generator,
    keep: int,
) -> Path | None:
    accelerator.wait_for_everyone()
    path = None
    if accelerator.is_main_process:
        path = save_checkpoint(out, state, task.trainable, optimizer, lr_scheduler, ema, generator, keep)
    accelerator.wait_for_everyone()
    return path


def _time_is_up(accelerator: Accelerator, t_start: float, max_minutes: float) -> bool:
    up = torch.tensor(float(time.monotonic() - t_start >= max_minutes * 60), device=accelerator.device)
    if accelerator.num_processes > 1:
        up = accelerator.reduce(up, "max")
    return bool(up.item())


__all__ = ["TrainResult", "build_dataset", "train"]
