"""Training the class judges (:mod:`rsgen.eval.class_judges`): joint multi-task training on real labelled sets.

Everything runs on the training device: the images of every set sit there as uint8 tensors and are augmented
there (random rotation by any angle, flips, zoom, translation, colour and resolution jitter; all valid for nadir
imagery), so a GPU is never starved by a data loader. Each step draws one batch per label set, runs each through
the shared backbone and its own head, and sums the losses (mixup with label smoothing). After training, each head's
batch-norm statistics are re-estimated on its own training images.

Given ``time_budget_s``, the number of steps is set from the throughput measured over the first steps, so the
cosine schedule ends when the budget does.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rsgen.config import to_dict
from rsgen.errors import ConfigError
from rsgen.eval.class_judges import (
    ClassJudge,
    ClassJudgeNet,
    LabelSet,
    _batch_norms,
    prepare_images,
    save_class_judges,
)

log = logging.getLogger(__name__)


@dataclass
class JudgeSetConfig:
    """How one label set is trained: its input size and batch size."""

    input_size: int = 128
    batch_size: int = 128
    storage_size: int = 64  # real images are decoded at this size (their native size)


@dataclass
class ClassJudgeTrainConfig:
    """Joint training of the class judges (``configs/eval/class_judges.yaml``)."""

    out: str = "runs/class-judges"
    data_root: str = ""  # the real data sets; empty: $RSGEN_DATASETS or ../shared/datasets
    device: str = "auto"  # auto: cuda when available
    backbone: str = "resnet18"
    sets: dict[str, JudgeSetConfig] = field(default_factory=dict)
    steps: int = 2000  # used when time_budget_s is 0
    time_budget_s: float = 0.0  # > 0: choose the number of steps to fill this many seconds
    calibration_steps: int = 30  # steps timed before the budget sets the total
    lr: float = 0.1  # SGD, for a batch of 256 per set; scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2  # 0 turns mixup off
    zoom_min: float = 0.55  # smallest crop side as a fraction of the image side
    colour_jitter: float = 0.15
    resolution_jitter: float = 0.3  # probability of a down-and-up resample by up to 2x
    bf16: bool = True  # autocast on CUDA
    bn_recalibration_images: int = 4096
    seed: int = 0
    log_every: int = 100


@dataclass
class JudgeTrainingSet:
    """Labelled real images of one label set: ``images`` uint8 ``(N, 3, H, W)``, ``labels`` ``(N,)`` int64."""

    name: str
    classes: tuple[str, ...]
    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ConfigError(
                f"{self.name}: images must be uint8 (N, 3, H, W), got {tuple(self.images.shape)}"
            )
        if len(self.labels) != len(self.images) or len(self.images) == 0:
            raise ConfigError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes):
            raise ConfigError(f"{self.name}: labels outside 0..{len(self.classes) - 1}")

    def label_set(self, input_size: int) -> LabelSet:
        """The set's label set with its per-channel mean / std (0-1 scale) measured on these images."""
        pick = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(0))[:4096]
        x = self.images[pick.to(self.images.device)].float() / 255.0  # (n, 3, H, W), a random subset
        mean = tuple(round(float(v), 4) for v in x.mean(dim=(0, 2, 3)))
        std = tuple(round(float(v), 4) for v in x.std(dim=(0, 2, 3)).clamp_min(1e-3))
        return LabelSet(self.name, self.classes, input_size, mean, std)


def augment(
    images: torch.Tensor, size: int, cfg: ClassJudgeTrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random nadir-valid views: uint8 ``(B, 3, H, W)`` -> float 0-1 ``(B, 3, size, size)`` on the same device.

    One affine warp per image (rotation by any angle, mirror, zoom, shift; reflection at the borders), then
    brightness / contrast / saturation jitter and, for some images, a resample down by up to 2x and back up.
    """
    b, dev = images.shape[0], images.device

    def u(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=dev) * (hi - lo) + lo

    x = images.float() / 255.0
    angle = u(0.0, 2 * math.pi)
    scale = u(cfg.zoom_min, 1.0)  # crop side / image side
    mirror = torch.where(torch.rand(b, generator=generator, device=dev) < 0.5, -1.0, 1.0).to(dev)
    shift = (1.0 - scale).unsqueeze(1) * u(-1.0, 1.0, 2 * b).view(b, 2)  # keep the crop centre inside
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift[:, 0]], 1), torch.stack([sin * mirror, cos, shift[:, 1]], 1)],
        1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)  # (B,3,S,S)
    j = cfg.colour_jitter
    if j > 0:
        x = x * u(1 - j, 1 + j).view(b, 1, 1, 1)  # brightness
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * u(1 - j, 1 + j).view(b, 1, 1, 1) + m  # contrast
        g = x.mean(dim=1, keepdim=True)
        x = (x - g) * u(1 - j, 1 + j).view(b, 1, 1, 1) + g  # saturation
    if cfg.resolution_jitter > 0:
        pick = torch.rand(b, generator=generator, device=dev) < cfg.resolution_jitter
        if bool(pick.any()):
            low = max(8, int(size / float(u(1.0, 2.0, 1))))
            soft = F.interpolate(
                x[pick], size=(low, low), mode="bilinear", antialias=True, align_corners=False
            )
            x[pick] = F.interpolate(soft, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


def _normalise(x: torch.Tensor, ls: LabelSet) -> torch.Tensor:  # (B, 3, S, S) 0-1 -> standardised
    mean = torch.tensor(ls.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(ls.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _mixup_loss(
    logits_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    cfg: ClassJudgeTrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Cross-entropy with label smoothing on a mixup of the batch with a shuffled copy of itself."""
    target = F.one_hot(y, n_classes).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / n_classes
    if cfg.mixup_alpha > 0:
        lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
        perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
        x = lam * x + (1 - lam) * x[perm]
        target = lam * target + (1 - lam) * target[perm]
    logits = logits_fn(x).float()  # (B, n_classes)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def recalibrate_batch_norm(
    net: ClassJudgeNet, sets: list[JudgeTrainingSet], max_images: int, batch_size: int = 256
) -> None:
    """Re-estimate each head's batch-norm statistics on (up to ``max_images`` of) its own training images."""
    device = next(net.parameters()).device
    was_training = net.training
    for ts in sets:
        ls = net.label_sets[ts.name]
        bns = _batch_norms(net.trunk)
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the recalibration batches
        net.train()
        # a seeded random subset: the files of a set are often stored class by class
        pick = torch.randperm(len(ts.images), generator=torch.Generator().manual_seed(0))[:max_images]
        for i in range(0, len(pick), batch_size):
            net.features(prepare_images(ts.images[pick[i : i + batch_size]].to(device), ls))
        for bn in bns:
            bn.momentum = 0.1
        net.store_head_statistics(ts.name)
    net.train(was_training)


def train_class_judges(
    sets: list[JudgeTrainingSet], cfg: ClassJudgeTrainConfig, device: str | torch.device = "cpu"
) -> tuple[ClassJudgeNet, dict]:
    """Train one backbone with a head per set; returns the network (eval mode) and a training summary."""
    device = torch.device(device)
    missing = [ts.name for ts in sets if ts.name not in cfg.sets]
    if missing:
        raise ConfigError(f"class judge config has no entry under 'sets' for {', '.join(missing)}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    label_sets = [ts.label_set(cfg.sets[ts.name].input_size) for ts in sets]
    net = ClassJudgeNet(label_sets=[ls.to_dict() for ls in label_sets], backbone=cfg.backbone).to(device)
    net = net.to(memory_format=torch.channels_last)
    sets = [JudgeTrainingSet(ts.name, ts.classes, ts.images.to(device), ts.labels.to(device)) for ts in sets]
    batch = sum(cfg.sets[ts.name].batch_size for ts in sets) / len(sets)
    base_lr = cfg.lr * batch / 256
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=base_lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    use_bf16 = cfg.bf16 and device.type == "cuda"
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input sizes per set
    total = cfg.steps if cfg.time_budget_s <= 0 else 10**9  # set once the calibration steps are timed
    started = time.perf_counter()
    step, seen = 0, {ts.name: 0 for ts in sets}
    losses: list[float] = []
    net.train()
    while step < total:
        if cfg.time_budget_s > 0 and step in (cfg.calibration_steps, 2 * cfg.calibration_steps):
            # time the second block of calibration steps: the first pays for kernel autotuning and warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if step == cfg.calibration_steps:
                calibration_start = now
            else:
                per_step = (now - calibration_start) / cfg.calibration_steps
                left = cfg.time_budget_s - (now - started)
                total = max(step + 1, step + int(left / per_step))
                log.info(
                    "%.4f s per step: %d steps fill the %.0f s budget", per_step, total, cfg.time_budget_s
                )
        warmup = max(1, int(cfg.warmup_fraction * total))
        frac = (
            step / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        )
        for g in opt.param_groups:
            g["lr"] = base_lr * frac
        loss = torch.zeros((), device=device)
        for ts, ls in zip(sets, label_sets, strict=True):
            sc = cfg.sets[ts.name]
            idx = torch.randint(0, len(ts.images), (sc.batch_size,), generator=gen, device=device)
            x = _normalise(augment(ts.images[idx], sc.input_size, cfg, gen), ls)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss + _mixup_loss(
                    lambda v, n=ts.name: net(v, n), x, ts.labels[idx], len(ts.classes), cfg, gen
                )
            seen[ts.name] += sc.batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == total:
            losses.append(float(loss.detach()) / len(sets))
            log.info("step %d/%d loss %.4f (%.0f s)", step, total, losses[-1], time.perf_counter() - started)
    recalibrate_batch_norm(net, sets, cfg.bn_recalibration_images)
    net.eval()
    summary = {
        "steps": step,
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "epochs": {ts.name: round(seen[ts.name] / len(ts.images), 1) for ts in sets},
        "train_images": {ts.name: len(ts.images) for ts in sets},
        "loss_curve": [round(v, 4) for v in losses],
    }
    return net, summary


def judge_accuracies(net: ClassJudgeNet, sets: list[JudgeTrainingSet]) -> dict[str, dict]:
    """Accuracy of each head on real held-out images: overall and per class."""
    out: dict[str, dict] = {}
    for ts in sets:
        judge = ClassJudge(net, ts.name)
        pred = judge.predict(ts.images)
        ok = pred == ts.labels.cpu()
        per_class = {
            c: round(float(ok[ts.labels.cpu() == i].float().mean()), 4)
            for i, c in enumerate(ts.classes)
            if bool((ts.labels.cpu() == i).any())
        }
        out[ts.name] = {
            "accuracy": round(float(ok.float().mean()), 4),
            "images": len(ts.labels),
            "per_class": per_class,
        }
    return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _data_root(data_root: str) -> Path:
    from rsgen.paths import datasets_dir

    return Path(data_root) if data_root else datasets_dir()


def _record_real_accuracy(net: ClassJudgeNet, out: Path, scores: dict[str, dict], summary: dict) -> None:
    """Save the judges with each head's real held-out accuracy in their config, and ``training_summary.json``
    (``summary`` with the full per-class scores)."""
    from rsgen.io import atomic_write_json

    net.config["real_accuracy"] = {k: v["accuracy"] for k, v in scores.items()}
    save_class_judges(net, out)
    atomic_write_json(out / "training_summary.json", {**summary, "real_accuracy": scores})


def run(
    cfg: ClassJudgeTrainConfig,
    train_sets: list[JudgeTrainingSet] | None = None,
    val_sets: list[JudgeTrainingSet] | None = None,
) -> dict:
    """Train on the real train splits (or the given sets), score every head on its real held-out split, save to
    ``cfg.out`` with ``training_summary.json``; returns the summary."""
    from rsgen.eval.class_judge_data import load_judge_set

    root = _data_root(cfg.data_root)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    skipped: dict[str, int] = {}
    if train_sets is None:
        train_sets = []
        for name, sc in cfg.sets.items():
            ts, skipped[f"{name}/train"] = load_judge_set(name, root, "train", sc.storage_size)
            train_sets.append(ts)
    if val_sets is None:
        val_sets = []
        for ts in train_sets:
            vs, skipped[f"{ts.name}/val"] = load_judge_set(
                ts.name, root, "val", cfg.sets[ts.name].storage_size, ts.classes
            )
            val_sets.append(vs)
    net, summary = train_class_judges(train_sets, cfg, device)
    net = net.float().cpu()
    scores = judge_accuracies(net, val_sets)
    summary.update({"skipped_files": skipped, "parameters": count_parameters(net)})
    net.config["training_summary"] = summary
    _record_real_accuracy(net, Path(cfg.out), scores, {"config": to_dict(cfg), **summary})
    return {**summary, "real_accuracy": scores}


def score_saved_judges(
    path, data_root: str = "", storage_sizes: dict[str, int] | None = None, recalibrate_images: int = 0
) -> dict:
    """Score saved judges on the real held-out split of each label set (the original files) and record each
    judge's accuracy in its ``config.json``; returns the per-set scores (overall and per class)."""
    from rsgen.eval.class_judge_data import load_judge_set
    from rsgen.eval.class_judges import load_class_judges

    root = _data_root(data_root)
    net = load_class_judges(path)
    sizes = storage_sizes or {}
    if recalibrate_images:  # re-estimate each head's batch-norm statistics on the original training files
        train_sets = [
            load_judge_set(name, root, "train", sizes.get(name, ls.input_size), ls.classes)[0]
            for name, ls in net.label_sets.items()
        ]
        recalibrate_batch_norm(net, train_sets, recalibrate_images)
        net.eval()
    val_sets = [
        load_judge_set(name, root, "val", sizes.get(name, ls.input_size), ls.classes)[0]
        for name, ls in net.label_sets.items()
    ]
    scores = judge_accuracies(net, val_sets)
    summary_path = Path(path) / "training_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    _record_real_accuracy(net, Path(path), scores, summary)
    return scores
