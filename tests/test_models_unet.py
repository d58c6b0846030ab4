"""UNet building / adapting / LoRA, ControlNet from a UNet, VAE, super-resolution inputs, text encoders."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.metadata import Metadata
from rsgen.models.controlnet import controlled_unet_forward, controlnet_from_unet, load_controlnet
from rsgen.models.metadata_embedding import MetadataEmbedding
from rsgen.models.super_resolution import degrade, low_res_condition, output_metadata, sr_unet_input
from rsgen.models.unet import (
    UNetConfig,
    adapt_unet,
    add_lora,
    build_unet,
    load_unet,
    merge_lora,
    time_embed_dim,
)
from rsgen.models.vae import (
    VAEConfig,
    build_vae,
    calibrate_scaling_factor,
    load_vae,
    vae_loss,
    vae_scale_factor,
)

TINY = UNetConfig(
    sample_size=8,
    block_out_channels=[32, 64],
    cross_attention_levels=[False, True],
    cross_attention_dim=64,
    attention_head_dim=4,
)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_unet(TINY, text_dim=384).eval()


def _inputs(b=2, c=4):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn((b, c, 8, 8), generator=g),
        torch.tensor([5, 700][:b]),
        torch.randn((b, 32, 384), generator=g),
        torch.randn((b, 128), generator=g),
    )


def test_build_uses_identity_class_embedding_and_text_projection(unet):
    assert unet.config.class_embed_type == "identity"
    assert unet.config.encoder_hid_dim == 384 and unet.encoder_hid_proj.out_features == 64
    assert time_embed_dim(unet) == 128
    with pytest.raises(ConfigError, match="cross_attention_levels"):
        build_unet(UNetConfig(block_out_channels=[32, 64], cross_attention_levels=[True]), 384)


def test_unet_save_load_equality(unet, tmp_path):
    unet.save_pretrained(tmp_path / "unet")
    loaded = load_unet(tmp_path)  # a pipeline root with unet/ works
    x, t, ctx, cl = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x, t, ctx, class_labels=cl).sample, unet(x, t, ctx, class_labels=cl).sample, rtol=0, atol=0
        )
    with pytest.raises(WeightsNotFoundError):
        load_unet(tmp_path / "nowhere")


def test_adapting_a_pretrained_unet_keeps_its_output(tmp_path):
    """A 'pretrained' UNet without class embedding: after adapting (identity class embedding, more input
    channels) it predicts exactly as before when the metadata embedding is at its zero init."""
    torch.manual_seed(0)
    plain = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=4,
    ).eval()
    x, t, _, _ = _inputs()
    ctx = torch.randn(2, 7, 64)
    with torch.no_grad():
        before = plain(x, t, ctx).sample
        plain.save_pretrained(tmp_path)
        adapted = load_unet(tmp_path, text_dim=64, in_channels=7).eval()
        meta = MetadataEmbedding(embed_dim=time_embed_dim(adapted)).embed([Metadata(gsd_m=1.0), None])
        after = adapted(torch.cat([x, torch.randn(2, 3, 8, 8)], 1), t, ctx, class_labels=meta).sample
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    adapted.save_pretrained(tmp_path / "again")
    assert UNet2DConditionModel.from_pretrained(tmp_path / "again").config.in_channels == 7
    adapt_unet(adapted)  # idempotent


def test_lora_starts_as_noop_and_merges(unet):
    import copy

    u = copy.deepcopy(unet)
    x, t, ctx, cl = _inputs()
    with torch.no_grad():
        ref = u(x, t, ctx, class_labels=cl).sample
        params = add_lora(u, rank=4)
        assert params and all("lora" in n for n, p in u.named_parameters() if p.requires_grad)
        torch.testing.assert_close(u(x, t, ctx, class_labels=cl).sample, ref)
        for p in params:
            p.add_(0.01)
        changed = u(x, t, ctx, class_labels=cl).sample
        merged = merge_lora(u)
        assert not any("lora" in k for k in merged.state_dict())
        torch.testing.assert_close(merged(x, t, ctx, class_labels=cl).sample, changed, rtol=1e-4, atol=1e-4)


def test_controlnet_from_unet_starts_as_noop_and_roundtrips(unet, tmp_path):
    cn = controlnet_from_unet(unet, latent_factor=4).eval()
    x, t, ctx, cl = _inputs()
    cond = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = controlled_unet_forward(unet, [], x, t, ctx, cl)
        controlled = controlled_unet_forward(unet, [cn, cn], x, t, ctx, cl, [cond, cond], [1.0, 0.5])
        torch.testing.assert_close(controlled, plain, rtol=0, atol=0)
        cn.save_pretrained(tmp_path / "controlnet")
        loaded = load_controlnet(tmp_path)
        for (k, a), (_, b) in zip(cn.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(a, b), k
    torch.testing.assert_close(cn.encoder_hid_proj.weight, unet.encoder_hid_proj.weight)


def test_vae_shapes_loss_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(block_out_channels=[32, 32, 32], sample_size=32))
    assert vae_scale_factor(vae) == 4
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    assert vae.encode(pixels).latent_dist.mean.shape == (2, 4, 8, 8)
    loss, parts = vae_loss(vae, pixels, kl_weight=1e-6, ssim_weight=0.2)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"l1", "ssim", "kl"}
    factor = calibrate_scaling_factor(vae, pixels)
    vae.save_pretrained(tmp_path / "vae")
    assert load_vae(tmp_path).config.scaling_factor == pytest.approx(factor)


def test_super_resolution_inputs():
    hi = torch.rand(2, 3, 32, 32) * 2 - 1
    low = degrade(hi, 2)
    assert low.shape == (2, 3, 16, 16)
    cond0 = low_res_condition(low, (8, 8), torch.tensor([0, 0]))
    cond1 = low_res_condition(low, (8, 8), torch.tensor([350, 350]), torch.Generator().manual_seed(0))
    assert cond0.shape == (2, 3, 8, 8)
    assert (cond1 - cond0).abs().mean() > 0.05  # level 350 adds visible noise
    assert sr_unet_input(torch.zeros(2, 4, 8, 8), cond0).shape == (2, 7, 8, 8)
    assert output_metadata(Metadata(gsd_m=10.0, lat=1, lon=2), 4).gsd_m == 2.5
    assert output_metadata(None, 4) is None


def test_text_encoders_one_interface(tmp_path):
    from rsgen.models.text import PromptEncoder, encode_prompts, load_text_encoder

    tok, model = load_text_encoder(None)
    hidden = encode_prompts(tok, model, ["a forest next to a river", ""])
    assert hidden.shape == (2, 32, 384)
    enc = PromptEncoder(tok, model)
    cached = enc(["a forest next to a river", "", "a forest next to a river"])
    torch.testing.assert_close(cached[0], hidden[0])
    torch.testing.assert_close(cached[2], hidden[0])
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        load_text_encoder(tmp_path / "no-clip-here")


def test_text_encoder_loads_clip_from_a_local_folder(tmp_path):
    import json

    from transformers import CLIPTextConfig, CLIPTextModel

    from rsgen.models.text import encode_prompts, load_text_encoder

    words = ["a</w>", "field</w>", "river</w>"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(cfg).save_pretrained(tmp_path / "text_encoder")
    tok, model = load_text_encoder(tmp_path)
    assert type(model).__name__ == "CLIPTextModel" and "clip" in type(tok).__name__.lower()
    assert encode_prompts(tok, model, ["a field"]).shape == (1, 77, 32)  # CLIP keeps its 77 tokens
