"""CLIP-score: how well images match their prompts.

* With a local CLIP checkpoint (``--clip PATH``): CLIPScore (100 x clipped cosine, as torchmetrics), named
  **CLIP**, comparable with published CLIP scores when the checkpoint is the one they used.
* Offline default, **CLIP_RS**: a small contrastive model trained by the project. Image tower: the RS feature
  network's pooled features (frozen) + a linear projection; text tower: the embedded MiniLM (frozen, mean
  pooled) + a linear projection; trained with the symmetric InfoNCE loss on real image-caption pairs (EuroSAT
  train with captions from :class:`rsgen.data.captions.CaptionWriter`, the pairs the curated set holds for
  EuroSAT). Its numbers are only meaningful next to its two references, which every report gives: real images
  with their own captions (the ceiling) and generated images with shuffled prompts (no text control).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn
from tqdm import tqdm

from rsgen.errors import WeightsNotFoundError
from rsgen.paths import ASSETS_DIR
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

DEFAULT_RS_CLIP_DIR = ASSETS_DIR / "eval" / "rs-clip"


class RSClipHeads(ModelMixin, ConfigMixin):
    """The trainable part of RS-CLIP: projections of image features and text embeddings to a shared space."""

    @register_to_config
    def __init__(
        self, image_dim: int = 256, text_dim: int = 384, embed_dim: int = 128, text_encoder: str = "minilm"
    ):
        super().__init__()
        self.image_proj = nn.Sequential(nn.Linear(image_dim, 256), nn.GELU(), nn.Linear(256, embed_dim))
        self.text_proj = nn.Sequential(nn.Linear(text_dim, 256), nn.GELU(), nn.Linear(256, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def embed_images(self, feats: torch.Tensor) -> torch.Tensor:  # (B, image_dim) -> (B, E) unit norm
        return F.normalize(self.image_proj(feats), dim=-1)

    def embed_texts(self, text_emb: torch.Tensor) -> torch.Tensor:  # (B, text_dim) -> (B, E) unit norm
        return F.normalize(self.text_proj(text_emb), dim=-1)


class TextTower:
    """Frozen MiniLM, mean-pooled over real tokens, with a cache (prompts repeat)."""

    def __init__(self) -> None:
        from rsgen.models.text import load_text_encoder

        self.tokenizer, self.model = load_text_encoder(None)
        self.model.eval()
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:  # -> (N, 384)
        todo = sorted({t for t in texts if t not in self.cache})
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = self.model(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            ).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, 384)
            for t, v in zip(chunk, pooled, strict=True):
                self.cache[t] = v
        return torch.stack([self.cache[t] for t in texts])


class RSClip:
    """RS-CLIP scorer: feature network (image tower), MiniLM (text tower) and the trained heads."""

    def __init__(self, heads: RSClipHeads, feature_net: nn.Module, text: TextTower | None = None) -> None:
        self.heads, self.feature_net, self.text = heads.eval(), feature_net.eval(), text or TextTower()

    @classmethod
    def load(cls, path: str | Path | None = None, feature_net: str | Path | None = None) -> RSClip:
        from rsgen.eval.feature_net import load_feature_net

        path = Path(path) if path is not None else DEFAULT_RS_CLIP_DIR
        if not (path / "config.json").is_file():
            raise WeightsNotFoundError(f"RS-CLIP not found at {path} (train it with eval/train_rs_clip.py)")
        heads, net = (
            RSClipHeads.from_pretrained(path, use_safetensors=use_safetensors(), local_files_only=True),
            load_feature_net(feature_net),
        )
        if heads.config.image_dim != net.num_features:
            raise WeightsNotFoundError(
                f"RS-CLIP at {path} expects {heads.config.image_dim}-d image features but the feature network "
                f"gives {net.num_features}: train RS-CLIP for this feature network (eval/train_rs_clip.py)"
            )
        return cls(heads, net)

    @torch.no_grad()
    def image_embeddings(self, images: np.ndarray) -> torch.Tensor:  # (N, H, W, 3) uint8 -> (N, E)
        from rsgen.eval.feature_net import to_nchw

        x = to_nchw(images)
        feats = torch.cat([self.feature_net.features(x[i : i + 256]) for i in range(0, len(x), 256)])
        return self.heads.embed_images(feats)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:  # -> (N, E)
        return self.heads.embed_texts(self.text(texts))

    def scores(self, images: np.ndarray, texts: list[str]) -> np.ndarray:
        """Per pair ``100 * max(cos, 0)`` ``(N,)``, the CLIPScore convention."""
        cos = (self.image_embeddings(images) * self.text_embeddings(texts)).sum(-1)
        return (100 * cos.clamp(min=0)).numpy().astype(np.float64)


def local_clip_score(
    images: np.ndarray, texts: list[str], model_path: str | Path, batch_size: int = 64
) -> float:
    """Mean CLIPScore ``100 * max(cos(image, text), 0)`` with a local transformers CLIP checkpoint.

    Computed here with the definition torchmetrics' ``CLIPScore`` uses: torchmetrics 1.9 fails with
    transformers 5 (``get_image_features`` now returns a model output, not a tensor).
    """
    from transformers import CLIPModel, CLIPProcessor

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"CLIP checkpoint not found at {path} (expected a transformers CLIP folder)"
        )
    model, processor = (
        CLIPModel.from_pretrained(str(path), use_safetensors=use_safetensors(), local_files_only=True).eval(),
        CLIPProcessor.from_pretrained(str(path), local_files_only=True),
    )
    scores = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            inputs = processor(
                text=texts[i : i + batch_size],
                images=list(images[i : i + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            out = model(**inputs)
            img = F.normalize(out.image_embeds, dim=-1)  # (B, E)
            txt = F.normalize(out.text_embeds, dim=-1)  # (B, E)
            scores.append(100 * (img * txt).sum(-1).clamp(min=0))
    return float(torch.cat(scores).mean())


@dataclass
class ClipScoreResult:
    """Mean CLIP(-RS) score of generated images with their prompts, next to its two references."""

    name: str
    generated: float
    generated_shuffled: float
    real_own_captions: float | None
    num_generated: int

    def to_dict(self) -> dict:
        return asdict(self)


def rs_clip_scores(
    clip: RSClip,
    images: np.ndarray,
    prompts: list[str],
    real: tuple[np.ndarray, list[str]] | None = None,
    seed: int = 0,
) -> ClipScoreResult:
    """CLIP_RS of generated images with their prompts, with shuffled prompts, and of real images with their own
    captions (``real``)."""
    rng = np.random.default_rng(seed)
    gen = clip.scores(images, prompts).mean()
    shuffled = np.mean(
        [clip.scores(images, [prompts[i] for i in rng.permutation(len(prompts))]).mean() for _ in range(3)]
    )
    real_score = float(clip.scores(real[0], real[1]).mean()) if real is not None else None
    return ClipScoreResult("CLIP_RS", float(gen), float(shuffled), real_score, len(prompts))


def eurosat_caption_pairs(split: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """EuroSAT images ``(N, 64, 64, 3)`` with one caption each (CaptionWriter: class label + 10 m GSD)."""
    from rsgen.data.captions import CaptionWriter
    from rsgen.eval.reference_data import EUROSAT_GSD_M, load_eurosat
    from rsgen.metadata import Metadata

    data = load_eurosat(split)
    if n is not None and n < len(data):
        data = data.subset(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))
    writer = CaptionWriter(seed=seed)
    meta = Metadata(gsd_m=EUROSAT_GSD_M, sensor="Sentinel-2")
    captions = [
        writer.captions(data.class_names[y], meta, n=1, key=f"{split}-{i}")[0]
        for i, y in enumerate(data.labels)
    ]
    return data.images, captions


@dataclass
class RSClipTrainConfig:
    """Training of the RS-CLIP heads (``configs/eval/rs_clip.yaml``)."""

    out_dir: str = str(DEFAULT_RS_CLIP_DIR)
    feature_net: str | None = None
    train_images: int = 8000
    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    embed_dim: int = 128
    seed: int = 0
    num_threads: int = 0
    eval_images: int = 500


def train(config: RSClipTrainConfig | None = None) -> dict:
    """Train the RS-CLIP heads on cached frozen features of EuroSAT train pairs; score held-out val pairs."""
    from rsgen.eval.feature_net import load_feature_net, save_trained_model

    config = config or RSClipTrainConfig()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    net = load_feature_net(config.feature_net)
    text = TextTower()
    t0 = time.perf_counter()
    images, captions = eurosat_caption_pairs("train", config.train_images, config.seed)
    from rsgen.eval.feature_net import to_nchw

    with torch.no_grad():
        x = to_nchw(images)
        img_feats = torch.cat([net.features(x[i : i + 256]) for i in range(0, len(x), 256)])  # (N, 256)
    txt_feats = text(captions)  # (N, 384)
    cache_s = time.perf_counter() - t0
    heads = RSClipHeads(image_dim=img_feats.shape[1], text_dim=txt_feats.shape[1], embed_dim=config.embed_dim)
    opt = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in tqdm(range(config.steps), desc="train RS-CLIP heads", mininterval=5):
        idx = torch.randperm(len(img_feats), generator=gen)[: config.batch_size]
        im, tx = heads.embed_images(img_feats[idx]), heads.embed_texts(txt_feats[idx])  # (B, E) each
        logits = heads.logit_scale.exp().clamp(max=100) * im @ tx.T  # (B, B)
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    heads.eval()
    clip = RSClip(heads, net, text)
    val_images, val_captions = eurosat_caption_pairs("val", config.eval_images, config.seed + 1)
    real = clip.scores(val_images, val_captions).mean()
    perm = np.random.default_rng(0).permutation(len(val_captions))
    shuffled = clip.scores(val_images, [val_captions[i] for i in perm]).mean()
    with torch.no_grad():
        sims = clip.image_embeddings(val_images) @ clip.text_embeddings(val_captions).T  # (N, N)
    top1 = float((sims.argmax(1) == torch.arange(len(sims))).float().mean())
    summary = {
        "val_clip_rs_own_captions": float(real),
        "val_clip_rs_shuffled_captions": float(shuffled),
        "val_image_to_text_top1": top1,
        "val_pairs": len(val_captions),
        "train_pairs": len(captions),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "feature_cache_seconds": round(cache_s, 1),
        "config": asdict(config),
    }
    save_trained_model(heads, config.out_dir, summary)
    log.info("RS-CLIP: val CLIP_RS own captions %.1f vs shuffled %.1f", real, shuffled)
    return summary
