"""MetadataEmbedding: zero-initialised output, learned missing embeddings, noise level, save/load."""

from __future__ import annotations

import pytest
import torch

from rsgen.errors import ConfigError
from rsgen.metadata import METADATA_DIM, NUM_METADATA_FIELDS, Metadata, encode_metadata
from rsgen.models.metadata_embedding import MetadataEmbedding, drop_metadata_fields
from rsgen.models.unet import UNetConfig, build_unet, time_embed_dim

TINY_UNET = UNetConfig(
    sample_size=8,
    block_out_channels=[32, 64],
    cross_attention_levels=[False, True],
    cross_attention_dim=64,
    attention_head_dim=4,
)
METAS = [
    Metadata(gsd_m=10, lat=47, lon=8, date="2019-07-04", cloud_cover=0.2, off_nadir_deg=5),
    Metadata(gsd_m=0.3),
    None,
]


def _perturbed(emb: MetadataEmbedding) -> MetadataEmbedding:
    torch.manual_seed(1)
    torch.nn.init.normal_(emb.proj_out.weight, std=0.1)
    return emb


def test_output_is_zero_at_init_for_any_input():
    emb = MetadataEmbedding(embed_dim=64)
    values, present = encode_metadata(METAS)
    out = emb(values, present)
    assert out.shape == (3, 64)
    assert torch.count_nonzero(out) == 0


def test_unet_with_metadata_embedding_is_unchanged_at_init():
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET, text_dim=384)
    emb = MetadataEmbedding(embed_dim=time_embed_dim(unet))
    x, t, ctx = torch.randn(3, 4, 8, 8), torch.tensor([1, 300, 900]), torch.randn(3, 32, 384)
    with torch.no_grad():
        plain = unet(x, t, ctx, class_labels=torch.zeros(3, time_embed_dim(unet))).sample
        with_meta = unet(x, t, ctx, class_labels=emb.embed(METAS)).sample
    torch.testing.assert_close(with_meta, plain, rtol=0, atol=0)


def test_missing_fields_use_their_learned_embedding():
    emb = _perturbed(MetadataEmbedding(embed_dim=32))
    values = torch.randn(2, METADATA_DIM)
    none_present = torch.zeros(2, NUM_METADATA_FIELDS, dtype=torch.bool)
    out = emb(values, none_present)
    # With every field missing, the values do not matter: both rows equal (the "missing" embeddings only).
    torch.testing.assert_close(out[0], out[1])
    # Marking the GSD present makes the output depend on the GSD value.
    gsd_present = none_present.clone()
    gsd_present[:, 0] = True
    out2 = emb(values, gsd_present)
    assert not torch.allclose(out2[0], out2[1])
    # ... and is not the same as missing.
    assert not torch.allclose(out2, out)


def test_partial_and_no_metadata_embed_differently():
    emb = _perturbed(MetadataEmbedding(embed_dim=32))
    out = emb.embed(METAS)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    torch.testing.assert_close(emb.embed([None]), emb.embed([Metadata()]))
    torch.testing.assert_close(emb.embed(METAS[:1], drop=True), emb.embed([None]))


def test_noise_level_input_changes_the_embedding():
    emb = _perturbed(MetadataEmbedding(embed_dim=32, use_noise_level=True))
    a = emb.embed([None, None], noise_level=torch.tensor([0, 350]))
    assert not torch.allclose(a[0], a[1])


def test_save_load_roundtrip(tmp_path):
    emb = _perturbed(MetadataEmbedding(embed_dim=48, hidden_dim=16, num_frequencies=3, use_noise_level=True))
    emb.save_pretrained(tmp_path)
    loaded = MetadataEmbedding.from_pretrained(tmp_path)
    assert loaded.config.use_noise_level and loaded.config.hidden_dim == 16
    for (k, a), (_, b) in zip(emb.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    level = torch.tensor([20, 20, 20])
    torch.testing.assert_close(loaded.embed(METAS, level), emb.embed(METAS, level))


def test_metadata_dropout_only_removes_fields():
    present = torch.ones(1000, NUM_METADATA_FIELDS, dtype=torch.bool)
    present[:, 2] = False
    g = torch.Generator().manual_seed(0)
    dropped = drop_metadata_fields(present, field_prob=0.2, all_prob=0.1, generator=g)
    assert not (dropped & ~present).any()  # never adds a field
    assert not dropped[:, 2].any()
    frac_kept = dropped[:, 0].float().mean().item()
    assert 0.62 < frac_kept < 0.82  # about (1 - 0.2) * (1 - 0.1) = 0.72
    assert (~dropped).all(dim=1).float().mean() > 0.05  # some samples lose every field


def test_diffusionsat_style_sets_dropped_values_to_zero():
    emb = _perturbed(MetadataEmbedding(embed_dim=64, hidden_dim=32, style="diffusionsat"))
    values, present = encode_metadata(METAS)
    out = emb(values, present)  # (3, 64)
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    # a field marked missing reads exactly like the value 0: DiffusionSat has no learned "unknown" state
    dropped = present.clone()
    dropped[0, 0] = False
    zeroed = values.clone()
    zeroed[0, 0:1] = 0.0  # GSD is the first field, one column wide
    torch.testing.assert_close(emb(values, dropped)[0], emb(zeroed, present)[0])
    assert not torch.allclose(out[0], emb(values, dropped)[0])


def test_no_metadata_style_is_always_zero():
    emb = _perturbed(MetadataEmbedding(embed_dim=64, style="none"))
    values, present = encode_metadata(METAS)
    assert torch.count_nonzero(emb(values, present)) == 0


def test_unknown_style_is_a_config_error():
    import pytest

    from rsgen.errors import ConfigError

    with pytest.raises(ConfigError, match="style"):
        MetadataEmbedding(embed_dim=64, style="bogus")


def test_parameters_a_style_never_uses_are_frozen_and_sr_noise_level_works():
    values, present = encode_metadata(METAS)
    assert not any(p.requires_grad for p in MetadataEmbedding(embed_dim=64, style="none").parameters())
    sat = MetadataEmbedding(embed_dim=64, hidden_dim=32, style="diffusionsat", use_noise_level=True)
    assert not sat.missing.requires_grad and sat.proj_out.weight.requires_grad
    out = _perturbed(sat)(values, present, noise_level=torch.tensor([0, 100, 500]))  # (3, 64)
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    out.sum().backward()  # every trainable parameter of the style gets a gradient
    assert all(p.grad is not None for p in sat.parameters() if p.requires_grad)


def test_joint_layer_couples_fields_that_the_sum_keeps_apart():
    """Season x hemisphere: without a joint layer the embedding is a sum of per-field terms, so the interaction
    contrast e(A, N) + e(B, S) - e(A, S) - e(B, N) is exactly zero; the joint layer can represent it."""
    from rsgen.metadata import Metadata, encode_metadata

    def contrast(emb: MetadataEmbedding) -> torch.Tensor:
        metas = [
            Metadata(lat=lat, lon=10.0, date=f"2019-{month:02d}-15") for month, lat in ((1, 45.0), (7, -45.0))
        ] + [
            Metadata(lat=lat, lon=10.0, date=f"2019-{month:02d}-15") for month, lat in ((1, -45.0), (7, 45.0))
        ]
        e = emb(*encode_metadata(metas))  # (4, D)
        return e[0] + e[1] - e[2] - e[3]

    torch.manual_seed(0)
    for joint_dim, local_season, coupled in ((0, False, False), (32, False, True), (0, True, True)):
        emb = MetadataEmbedding(embed_dim=16, hidden_dim=16, joint_dim=joint_dim, local_season=local_season)
        torch.nn.init.normal_(emb.proj_out.weight)  # (zero at initialisation: give it weights)
        c = contrast(emb).abs().max().item()
        assert (c > 1e-3) == coupled, (joint_dim, local_season, c)


def test_local_season_is_the_date_turned_half_a_year_south_of_the_equator():
    from rsgen.metadata import Metadata, encode_metadata, field_slices

    torch.manual_seed(0)
    emb = MetadataEmbedding(embed_dim=16, hidden_dim=16, local_season=True)
    values, present = encode_metadata([Metadata(lat=45.0, lon=10.0, date="2019-01-15")] * 2)
    season, location = field_slices()["season"], field_slices()["location"]
    values[1, season] = -values[0, season]  # half a year later ...
    values[1, location] = values[0, location] * torch.tensor([1.0, 1.0, -1.0])  # ... at the mirrored latitude
    local = emb._local_season(values, present)  # (2, H)
    assert torch.allclose(local[0], local[1], atol=1e-6)  # the same local season: midwinter in both
    values[1, location] = values[0, location]  # half a year later in the same hemisphere: midsummer
    assert not torch.allclose(emb._local_season(values, present)[0], emb._local_season(values, present)[1])
    # unknown unless both location and date are known
    for meta in (Metadata(lat=45.0, lon=10.0), Metadata(date="2019-01-15"), None):
        v, p = encode_metadata([meta])
        assert torch.equal(emb._local_season(v, p)[0], emb.local_season_missing)
    with pytest.raises(ConfigError, match="local_season"):
        MetadataEmbedding(style="diffusionsat", local_season=True)


def test_local_season_latitude_tells_the_tropics_from_high_latitudes():
    """With local_season_latitude the local season field sees |latitude| too: the same local winter embeds
    differently at 10 and 60 degrees (without it, identically), and mirrored hemispheres still match."""
    from rsgen.metadata import Metadata, encode_metadata, field_slices

    torch.manual_seed(0)
    metas = [Metadata(lat=lat, lon=10.0, date="2019-01-15") for lat in (60.0, 10.0, 60.0)]
    values, present = encode_metadata(metas)
    season, location = field_slices()["season"], field_slices()["location"]
    values[2, season] = -values[
        0, season
    ]  # half a year later at the mirrored latitude: the same local winter
    values[2, location] = values[0, location] * torch.tensor([1.0, 1.0, -1.0])
    plain = MetadataEmbedding(embed_dim=16, hidden_dim=16, local_season=True)._local_season(values, present)
    assert torch.allclose(plain[0], plain[1], atol=1e-6)
    emb = MetadataEmbedding(embed_dim=16, hidden_dim=16, local_season=True, local_season_latitude=True)
    local = emb._local_season(values, present)  # (3, H)
    assert not torch.allclose(local[0], local[1], atol=1e-4)
    assert torch.allclose(local[0], local[2], atol=1e-6)
    with pytest.raises(ConfigError, match="local_season_latitude needs local_season"):
        MetadataEmbedding(local_season_latitude=True)
