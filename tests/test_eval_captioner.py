"""Tests of the evaluation captioner: caption scores on hand-checked cases, overfitting a tiny captioner, the
augmentation and judge functions end to end, and the missing-checkpoint error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsgen.errors import DataError, WeightsNotFoundError
from rsgen.eval.captioner import (
    METRICS,
    CaptionedImages,
    CaptionerConfig,
    bleu4,
    build_captioner,
    caption_augmentation_test,
    caption_images,
    caption_loss,
    caption_scores,
    captioner_as_judge,
    cider,
    rouge_l,
    tokenize,
    train_captioner,
)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
CAPTIONS = ["red field", "green forest", "blue lake", "yellow desert"]


def tiny_config(**overrides) -> CaptionerConfig:
    base = dict(
        image_size=32,
        patch_size=8,
        encoder_width=64,
        encoder_layers=1,
        encoder_heads=4,
        decoder_width=64,
        decoder_layers=1,
        decoder_heads=4,
        dropout=0.0,
        max_length=12,
        steps=60,
        batch_size=4,
        lr=3e-3,
        warmup_steps=5,
        seeds=(0,),
        progress=False,
    )
    return CaptionerConfig(**{**base, **overrides})


def solid_images(size: int = 32) -> np.ndarray:
    return np.stack([np.full((size, size, 3), c, np.uint8) for c in COLOURS])  # (4, S, S, 3)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------- scores


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Red-roofed House, 2 cars.") == ["a", "red", "roofed", "house", "2", "cars"]


def test_identical_captions_score_the_maximum():
    refs = [["a dense green forest in summer"], ["a river through farmland near town"]]
    cands = [r[0] for r in refs]
    assert bleu4(cands, refs) == pytest.approx(1.0)
    assert rouge_l(cands, refs) == pytest.approx(1.0)
    assert cider(cands, refs) == pytest.approx(10.0)


def test_disjoint_captions_score_zero():
    refs = [["a dense green forest in summer"], ["a river through farmland near town"]]
    cands = ["industrial buildings with parking lots", "blue sea water only here"]
    scores = caption_scores(cands, refs)
    assert scores == {"bleu4": 0.0, "rouge_l": 0.0, "cider": 0.0}


def test_bleu4_partial_overlap_hand_value():
    # p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, equal lengths (no brevity penalty): BLEU = (1/12) ** 0.25
    assert bleu4(["a b c d e f"], [["a b c d x f"]]) == pytest.approx((1 / 12) ** 0.25)
    # the closest reference length sets the brevity penalty; a shorter candidate is penalised
    short = bleu4(["a b c d e"], [["a b c d e f g h i j"]])
    assert short == pytest.approx(math.exp(1 - 10 / 5))
    # clipping: a repeated word counts only as often as in the reference
    assert bleu4(["the the the the"], [["the cat"]]) == 0.0


def test_bleu4_matches_torchmetrics_corpus_bleu():
    from torchmetrics.text import BLEUScore

    cands = ["a green forest next to a small river", "many houses and roads in a town"]
    refs = [
        ["a green forest beside a small river", "forest with a river"],
        ["houses and roads in a small town"],
    ]
    expected = float(BLEUScore(n_gram=4)(cands, refs))
    assert bleu4(cands, refs) == pytest.approx(expected, abs=1e-6)


def test_rouge_l_partial_overlap_hand_value():
    # LCS("a b c d", "a c e") = 2: P = 2/4, R = 2/3, F_beta=1.2 = (1 + 1.44) P R / (R + 1.44 P)
    p, r = 0.5, 2 / 3
    assert rouge_l(["a b c d"], [["a c e"]]) == pytest.approx(2.44 * p * r / (r + 1.44 * p))
    # the best reference per image counts
    assert rouge_l(["a b c d"], [["x y", "a b c d"]]) == pytest.approx(1.0)


def test_cider_partial_overlap_hand_value():
    # two images, every n-gram in one image's references: idf = log 2 for all. Image 0 identical -> 10.
    # image 1 "e f x y" vs "e f g h": unigram cos 2/4, bigram cos 1/3, tri/4-gram 0, equal lengths
    # -> 10 * (1/2 + 1/3) / 4; corpus mean with image 0.
    value = cider(["a b c d", "e f x y"], [["a b c d"], ["e f g h"]])
    assert value == pytest.approx((10 + 10 * (0.5 + 1 / 3) / 4) / 2)


def test_score_input_errors():
    with pytest.raises(DataError, match="2 candidate captions but 1"):
        bleu4(["a", "b"], [["a"]])
    with pytest.raises(DataError, match="at least one reference"):
        rouge_l(["a"], [[]])


# ------------------------------------------------------------------------------------------- model


def test_tiny_captioner_overfits_four_solid_colours():
    cfg = tiny_config()
    torch.manual_seed(0)
    model, tok = build_captioner(cfg)
    assert model.config.decoder.add_cross_attention
    assert model.config.decoder_start_token_id == tok.cls_token_id
    assert model.config.eos_token_id == tok.sep_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    images = solid_images()
    before = caption_loss(model, tok, images, CAPTIONS)
    model = train_captioner(images, [[c] for c in CAPTIONS], cfg, seed=0, model=model, tokenizer=tok)
    after = caption_loss(model, tok, images, CAPTIONS)
    assert after < before / 5, (before, after)
    assert caption_images(model, tok, images, max_length=cfg.max_length) == CAPTIONS


def test_training_is_deterministic_per_seed():
    cfg = tiny_config(steps=5)
    images = solid_images()
    caps = [[c] for c in CAPTIONS]
    a = train_captioner(images, caps, cfg, seed=3)
    b = train_captioner(images, caps, cfg, seed=3)
    c = train_captioner(images, caps, cfg, seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_missing_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="captioning checkpoint not found at .*nowhere"):
        build_captioner(CaptionerConfig(checkpoint=str(tmp_path / "nowhere")))


def test_local_checkpoint_round_trip(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    model, tok = build_captioner(cfg)
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    loaded, loaded_tok = build_captioner(CaptionerConfig(checkpoint=str(tmp_path / "ckpt")))
    assert loaded_tok.vocab_size == tok.vocab_size
    x = torch.zeros(1, 3, 32, 32)
    labels = torch.tensor([[tok.sep_token_id]])
    with torch.no_grad():
        assert torch.allclose(
            model.eval()(pixel_values=x, labels=labels).loss, loaded(pixel_values=x, labels=labels).loss
        )


# ------------------------------------------------------------------------------------- end to end


def test_caption_augmentation_test_end_to_end():
    cfg = tiny_config(steps=6, seeds=(0, 1))
    images = solid_images()
    real_train = CaptionedImages(images[:2], [[c] for c in CAPTIONS[:2]], "real")
    real_test = (images, [[c] for c in CAPTIONS])  # tuples are accepted too
    synthetic = CaptionedImages(solid_images(48)[2:], [[c] for c in CAPTIONS[2:]], "synthetic")  # resized
    result = caption_augmentation_test(real_train, real_test, synthetic, cfg)
    assert result["n_real_train"] == 2 and result["n_synthetic"] == 2 and result["n_test"] == 4
    for arm in ("real_only", "real_plus_synthetic"):
        assert set(result[arm]) == set(METRICS)
        assert all(len(v) == 2 for v in result[arm].values())
        assert set(result[f"{arm}_mean"]) == set(METRICS) and set(result[f"{arm}_std"]) == set(METRICS)
    assert set(result["gain"]) == set(METRICS)


def test_captioner_as_judge_end_to_end():
    cfg = tiny_config()
    images = solid_images()
    model = train_captioner(images, [[c] for c in CAPTIONS], cfg, seed=0)
    _, tok = build_captioner(cfg)
    result = captioner_as_judge(model, tok, images, CAPTIONS, max_length=cfg.max_length)
    assert set(result) >= {"n", "bleu4", "rouge_l", "cider", "shuffled_prompts", "captions"}
    assert result["n"] == 4 and len(result["captions"]) == 4
    assert result["rouge_l"] == pytest.approx(1.0)  # the overfitted captioner reproduces the prompts
    assert result["rouge_l"] > result["shuffled_prompts"]["rouge_l"]
    with pytest.raises(DataError, match="4 generated images but 3 prompts"):
        captioner_as_judge(model, tok, images, CAPTIONS[:3])


def test_generated_set_as_caption_pairs(tmp_path):
    from rsgen.eval.captioner import generated_captioned
    from rsgen.eval.generated_set import write_generated_set

    records = [{"prompt": c} for c in CAPTIONS[:3]] + [{"label": "Forest"}]  # the last has no prompt
    write_generated_set(tmp_path / "gen", solid_images(), records)
    pairs = generated_captioned(tmp_path / "gen", size=32)
    assert pairs.images.shape == (3, 32, 32, 3)
    assert pairs.captions == [[c] for c in CAPTIONS[:3]]


def test_eurosat_pairs_have_several_references():
    from rsgen.eval.captioner import eurosat_captioned
    from rsgen.eval.reference_data import eurosat_root

    if not (eurosat_root() / "val").is_dir():
        pytest.skip(f"EuroSAT not found at {eurosat_root()}")
    pairs = eurosat_captioned("val", n=4, captions_per_image=3)
    assert pairs.images.shape == (4, 64, 64, 3)
    assert all(len(c) == 3 and len(set(c)) == 3 for c in pairs.captions)
