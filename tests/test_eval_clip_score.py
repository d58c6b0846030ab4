"""CLIP_RS: scores in range, references computed; the shipped RS-CLIP prefers own captions to shuffled ones."""

from __future__ import annotations

import numpy as np
import pytest
from eval_fakes import one_thread, smooth_images, tiny_net  # noqa: F401

from rsgen.errors import WeightsNotFoundError
from rsgen.eval.clip_score import (
    DEFAULT_RS_CLIP_DIR,
    RSClip,
    RSClipHeads,
    eurosat_caption_pairs,
    local_clip_score,
    rs_clip_scores,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeText:
    """Stands in for MiniLM: a fixed random vector per word, averaged."""

    def __call__(self, texts: list[str]):
        import torch

        out = []
        for t in texts:
            vecs = [
                torch.from_numpy(np.random.default_rng(abs(hash(w)) % 2**32).normal(size=384)).float()
                for w in t.split()
            ]
            out.append(torch.stack(vecs).mean(0))
        return torch.stack(out)


def test_scores_and_references() -> None:
    net = tiny_net()
    clip = RSClip(RSClipHeads(image_dim=net.num_features, text_dim=384, embed_dim=16), net, FakeText())
    images = smooth_images(6)
    prompts = ["a forest", "a river", "a lake", "a road", "a field", "a town"]
    s = clip.scores(images, prompts)
    assert s.shape == (6,) and (s >= 0).all() and (s <= 100).all()
    res = rs_clip_scores(clip, images, prompts, real=(images, prompts))
    assert res.name == "CLIP_RS" and res.num_generated == 6
    assert res.real_own_captions == pytest.approx(res.generated)


def test_missing_weights_are_clear_errors(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="train_rs_clip"):
        RSClip.load(tmp_path / "none")
    with pytest.raises(WeightsNotFoundError, match="CLIP checkpoint not found"):
        local_clip_score(smooth_images(1), ["x"], tmp_path / "none")


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_rs_clip_prefers_own_captions(datasets) -> None:
    if not (DEFAULT_RS_CLIP_DIR / "config.json").is_file():
        pytest.skip("RS-CLIP not trained yet (eval/train_rs_clip.py)")
    clip = RSClip.load()
    images, captions = eurosat_caption_pairs("val", 200, seed=5)
    res = rs_clip_scores(clip, images, captions)
    assert res.generated > res.generated_shuffled + 5


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-character table (for a byte-level tokenizer vocabulary without merges)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


@pytest.mark.slow
def test_local_clip_checkpoint_is_loaded_and_scored(tmp_path) -> None:
    import json

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    image_proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(tmp_path / "clip")
    CLIPProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(tmp_path / "clip")
    images, texts = smooth_images(3, size=64), ["a forest", "a river", "a lake"]
    score = local_clip_score(images, texts, tmp_path / "clip")
    with torch.no_grad():
        out = model(
            **CLIPProcessor.from_pretrained(tmp_path / "clip")(
                text=texts, images=list(images), return_tensors="pt", padding=True
            )
        )
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert score == pytest.approx(float(100 * cos.clamp(min=0).mean()), abs=1e-4)
