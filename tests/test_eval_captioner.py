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
    VOCAB_FILE,
    CaptionedImages,
    CaptionerConfig,
    CaptionTestConfig,
    CaptionTokenizer,
    bleu4,
    build_captioner,
    caption_augmentation_test,
    caption_images,
    caption_loss,
    caption_scores,
    captioner_as_judge,
    cider,
    judge_generated,
    load_captioner,
    rouge_l,
    save_captioner,
    score_captioner,
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


def test_reduced_vocabulary_maps_unknown_pieces_and_decodes_back():
    cfg = tiny_config()
    model, tok = build_captioner(cfg, CAPTIONS)
    base = tok.base
    assert len(tok) < 20 and model.config.decoder.vocab_size == len(tok)
    assert tok.base_ids[tok.start_id] == base.cls_token_id and tok.base_ids[tok.end_id] == base.sep_token_id
    assert tok.base_ids[tok.pad_id] == base.pad_token_id
    (ids,) = tok.encode_batch(["green lake"])
    assert tok.batch_decode([ids]) == ["green lake"]
    unk = int(np.flatnonzero(tok.base_ids == base.unk_token_id)[0])
    assert tok.encode_batch(["purple lake"])[0][0] == unk  # "purple" is not in the training captions
    assert tok.batch_decode([[tok.start_id, *ids, tok.end_id, tok.pad_id]]) == ["green lake"]
    full = CaptionTokenizer(base)
    assert len(full) == len(base) and full.encode_batch(["green lake"]) == [
        base("green lake", add_special_tokens=False)["input_ids"]
    ]
    _, unreduced = build_captioner(tiny_config(reduce_vocabulary=False), CAPTIONS)
    assert len(unreduced) == len(base)


def test_tiny_captioner_overfits_four_solid_colours():
    cfg = tiny_config()
    torch.manual_seed(0)
    model, tok = build_captioner(cfg, CAPTIONS)
    assert model.config.decoder.add_cross_attention
    assert model.config.decoder_start_token_id == tok.start_id
    assert model.config.eos_token_id == tok.end_id
    assert model.config.pad_token_id == tok.pad_id
    images = solid_images()
    before = caption_loss(model, tok, images, CAPTIONS)
    model, tok = train_captioner(images, [[c] for c in CAPTIONS], cfg, seed=0, model=model, tokenizer=tok)
    after = caption_loss(model, tok, images, CAPTIONS)
    assert after < before / 5, (before, after)
    assert caption_images(model, tok, images, max_length=cfg.max_length) == CAPTIONS
    assert model.train_seconds_per_step > 0


def test_training_is_deterministic_per_seed():
    cfg = tiny_config(steps=5)
    images = solid_images()
    caps = [[c] for c in CAPTIONS]
    (a, _), (b, _), (c, _) = (train_captioner(images, caps, cfg, seed=s) for s in (3, 3, 4))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_missing_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="captioning checkpoint not found at .*nowhere"):
        build_captioner(CaptionerConfig(checkpoint=str(tmp_path / "nowhere")))


def test_saved_captioner_reloads_with_its_reduced_vocabulary(tmp_path):
    cfg = tiny_config()
    images = solid_images()
    model, tok = train_captioner(images, [[c] for c in CAPTIONS], cfg, seed=0)
    save_captioner(tmp_path / "cap", model, tok, {"note": "test"})
    assert (tmp_path / "cap" / VOCAB_FILE).is_file() and (tmp_path / "cap" / "model.safetensors").is_file()
    loaded, loaded_tok = load_captioner(tmp_path / "cap")
    assert len(loaded_tok) == len(tok) and np.array_equal(loaded_tok.base_ids, tok.base_ids)
    assert caption_images(loaded, loaded_tok, images, max_length=cfg.max_length) == CAPTIONS
    # a reduced model without its vocabulary map cannot decode: a clear error, not wrong words
    (tmp_path / "cap" / VOCAB_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match=f"outputs but its tokenizer .* needs {VOCAB_FILE}"):
        load_captioner(tmp_path / "cap")


def test_full_vocabulary_checkpoint_round_trip(tmp_path):
    cfg = tiny_config(reduce_vocabulary=False)
    torch.manual_seed(0)
    model, tok = build_captioner(cfg)
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")  # a user's checkpoint: no caption_vocabulary.json
    loaded, loaded_tok = build_captioner(CaptionerConfig(checkpoint=str(tmp_path / "ckpt")))
    assert loaded_tok.base_ids is None and len(loaded_tok) == len(tok.base)
    x = torch.zeros(1, 3, 32, 32)
    labels = torch.tensor([[tok.end_id]])
    with torch.no_grad():
        assert torch.allclose(
            model.eval()(pixel_values=x, labels=labels).loss, loaded(pixel_values=x, labels=labels).loss
        )


def test_config_file_loads():
    from rsgen.config import load_config
    from rsgen.errors import ConfigError

    cfg = load_config(
        CaptionTestConfig, "captioner", ["captioner.steps=7", "real_captions=human_class"], "eval"
    )
    assert cfg.captioner.steps == 7 and cfg.real_captions == "human_class" and cfg.captioner.reduce_vocabulary
    with pytest.raises(ConfigError, match="real_captions"):
        load_config(CaptionTestConfig, "captioner", ["real_captions=humans"], "eval")


# ------------------------------------------------------------------------------------- end to end


def test_caption_augmentation_test_end_to_end():
    cfg = tiny_config(steps=6, seeds=(0, 1))
    images = solid_images()
    real_train = CaptionedImages(images[:2], [[c] for c in CAPTIONS[:2]], "real")
    real_test = (images, [[c] for c in CAPTIONS])  # tuples are accepted too
    synthetic = CaptionedImages(solid_images(48)[2:], [[c] for c in CAPTIONS[2:]], "synthetic")  # resized
    result = caption_augmentation_test(real_train, real_test, synthetic, cfg)
    assert result["n_real_train"] == 2 and result["n_synthetic"] == 2 and result["n_test"] == 4
    assert result["vocabulary"] < 20  # both arms share the vocabulary of all training captions
    for arm in ("real_only", "real_plus_synthetic"):
        assert set(result[arm]) == set(METRICS)
        assert all(len(v) == 2 for v in result[arm].values())
        assert set(result[f"{arm}_mean"]) == set(METRICS) and set(result[f"{arm}_std"]) == set(METRICS)
    assert set(result["gain"]) == set(METRICS)
    from rsgen.eval.captioner import augmentation_markdown

    assert "| cider |" in augmentation_markdown(result)


def test_captioner_as_judge_end_to_end():
    cfg = tiny_config()
    images = solid_images()
    model, tok = train_captioner(images, [[c] for c in CAPTIONS], cfg, seed=0)
    real = CaptionedImages(images[::-1].copy(), [[c] for c in CAPTIONS[::-1]], "real test")
    result = captioner_as_judge(model, tok, images, CAPTIONS, max_length=cfg.max_length, real=real)
    assert set(result) >= {
        "n",
        "bleu4",
        "rouge_l",
        "cider",
        "shuffled_prompts",
        "captions",
        "real_own_captions",
    }
    assert result["n"] == 4 and len(result["captions"]) == 4
    assert result["rouge_l"] == pytest.approx(1.0)  # the overfitted captioner reproduces the prompts
    assert result["rouge_l"] > result["shuffled_prompts"]["rouge_l"]
    assert result["real_own_captions"]["rouge_l"] == pytest.approx(1.0)
    scored = score_captioner(model, tok, real, human_references=0, max_length=cfg.max_length)
    assert scored["val"]["rouge_l"] == pytest.approx(1.0)
    assert scored["val_shuffled_references"]["rouge_l"] < 0.5 and scored["val_human_class_references"] is None
    with pytest.raises(DataError, match="4 generated images but 3 prompts"):
        captioner_as_judge(model, tok, images, CAPTIONS[:3])


def test_judge_generated_and_evaluate_section(tmp_path, monkeypatch):
    from rsgen.eval import captioner as captioner_module
    from rsgen.eval.evaluate import EvaluateConfig, _captioner_section
    from rsgen.eval.generated_set import load_generated_set, write_generated_set
    from rsgen.eval.report import render_markdown

    cfg = tiny_config()
    model, tok = train_captioner(solid_images(), [[c] for c in CAPTIONS], cfg, seed=0)
    summary = {"steps": cfg.steps, "val": {"cider": 0.5}, "val_shuffled_references": {"cider": 0.1}}
    save_captioner(tmp_path / "cap", model, tok, summary)
    result = judge_generated(tmp_path / "cap", solid_images(), CAPTIONS, n_real=0, max_length=cfg.max_length)
    assert result["cider"] > result["shuffled_prompts"]["cider"]
    assert "own val CIDEr 0.500 (shuffled references 0.100)" in result["markdown"]  # the judge's own quality
    assert "| generated, own prompts |" in result["markdown"]

    write_generated_set(tmp_path / "gen", solid_images(), [{"prompt": c} for c in CAPTIONS])
    gen = load_generated_set(tmp_path / "gen", size=32)
    report: dict = {"not_measured": []}
    monkeypatch.setattr(captioner_module, "DEFAULT_CAPTIONER_DIR", tmp_path / "not-shipped")
    _captioner_section(gen, EvaluateConfig(captioner=None), report)
    assert "caption_judge" not in report and "no trained captioner" in report["not_measured"][0]
    _captioner_section(gen, EvaluateConfig(captioner=str(tmp_path / "nowhere")), report)
    assert "captioning checkpoint not found" in report["not_measured"][1]
    _captioner_section(gen, EvaluateConfig(captioner=str(tmp_path / "cap"), captioner_real_images=0), report)
    assert report["caption_judge"]["n"] == 4
    assert "## Captioner as judge" in render_markdown(report)
    # None = the shipped judge when there is one; "off" skips the section
    monkeypatch.setattr(captioner_module, "DEFAULT_CAPTIONER_DIR", tmp_path / "cap")
    shipped: dict = {"not_measured": []}
    _captioner_section(gen, EvaluateConfig(captioner=None, captioner_real_images=0), shipped)
    assert shipped["caption_judge"]["n"] == 4
    off: dict = {"not_measured": []}
    _captioner_section(gen, EvaluateConfig(captioner="off"), off)
    assert "caption_judge" not in off and "switched off" in off["not_measured"][0]


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


def test_eurosat_pairs_with_human_class_captions():
    from rsgen.eval.captioner import eurosat_captioned, human_class_captions, human_reference_scores
    from rsgen.eval.reference_data import eurosat_root
    from rsgen.paths import datasets_dir

    if not (eurosat_root() / "val").is_dir() or not (datasets_dir() / "captions").is_dir():
        pytest.skip(f"EuroSAT or human captions not found under {datasets_dir()}")
    human = human_class_captions()
    assert {"Forest", "Highway", "River", "Residential"} <= set(human) and "PermanentCrop" not in human
    assert any("freeway" in c.lower() for c in human["Highway"])
    pairs = eurosat_captioned("val", n=6, captions_per_image=2, real_captions="human_class")
    for label, caps in zip(pairs.labels, pairs.captions, strict=True):
        assert len(caps) == 2 and (label not in human or all(c in human[label] for c in caps))
    other = eurosat_captioned("val", n=6, captions_per_image=1, seed=0, exclude=np.arange(4000))
    assert len(other) == 6  # drawn from the 50 images not excluded
    scores = human_reference_scores([c[0] for c in pairs.captions], pairs.labels, per_image=3)
    assert scores is None or set(scores) >= set(METRICS)
    with pytest.raises(DataError, match="real_captions"):
        eurosat_captioned("val", n=2, real_captions="humans")
