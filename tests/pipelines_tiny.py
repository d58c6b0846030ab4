"""Tiny random-weight pipelines for the sampling tests (shared by tests/test_pipelines_*.py and
tests/test_cli_generate.py): the ``tiny`` config's UNet / VAE / metadata embedding with a 1-layer BERT text
encoder (the MiniLM tokenizer), so a pipeline builds in well under a second."""

from __future__ import annotations

import functools

import torch

from rsgen.pipelines.default import build_random_pipeline


@functools.lru_cache(maxsize=1)
def tiny_text() -> tuple:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rsgen.models.text import minilm_path

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    return tok, BertModel(cfg).eval()


def tiny_pipeline(super_resolution: bool = False, seed: int = 0, metadata_effect: bool = True):
    """The tiny pipeline; ``metadata_effect`` gives the zero-initialised metadata projection random weights so
    that metadata changes the output (as after training)."""
    pipe = build_random_pipeline("tiny", seed=seed, super_resolution=super_resolution, text=tiny_text())
    if metadata_effect:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            w = pipe.metadata_embedding.proj_out.weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.2)
    pipe.set_progress_bar_config(disable=True)
    return pipe
