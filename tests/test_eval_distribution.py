"""FID/KID/IS through torchmetrics on the RS feature network and on the standard InceptionV3 weights path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_fakes import noise_images, one_thread, smooth_images, tiny_net  # noqa: F401

from rsgen.errors import WeightsNotFoundError
from rsgen.eval.distribution import (
    RSFeatureExtractor,
    StandardInceptionExtractor,
    compare_image_sets,
    distribution_metrics,
    extract_features,
    frechet_distance,
    inception_score,
    kernel_distance,
)
from rsgen.eval.feature_net import DEFAULT_FEATURE_NET_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def extractor() -> RSFeatureExtractor:
    return RSFeatureExtractor(tiny_net())


def test_set_against_itself_is_zero_and_noise_is_far(extractor: RSFeatureExtractor) -> None:
    real = extract_features(extractor, smooth_images(300, seed=0))
    real2 = extract_features(extractor, smooth_images(300, seed=5))
    noise = extract_features(extractor, noise_images(300))
    assert abs(frechet_distance(real[0], real[0])) < 1e-6
    same_kind = frechet_distance(real[0], real2[0])
    far = frechet_distance(real[0], noise[0])
    assert far > 100 * same_kind > 0
    kid_self, _ = kernel_distance(real[0], real[0], subsets=10)
    kid_far, _ = kernel_distance(real[0], noise[0], subsets=10)
    assert abs(kid_self) < 0.01 * kid_far
    # subsets are drawn from a seed: the same sets give the same numbers, another seed other subsets
    again = kernel_distance(real[0], real2[0], subsets=10)
    assert again == kernel_distance(real[0], real2[0], subsets=10)
    assert again != kernel_distance(real[0], real2[0], subsets=10, seed=1)


def test_inception_score_bounds() -> None:
    confident = torch.eye(4).repeat(25, 1) * 50  # 100 images, 4 classes, certain and balanced
    assert 3.8 < inception_score(confident, splits=4)[0] <= 4.0 + 1e-6  # splits are not exactly balanced
    assert inception_score(torch.zeros(100, 4), splits=4)[0] == pytest.approx(1.0, rel=1e-6)


def test_result_is_named_and_warns_under_1000(extractor: RSFeatureExtractor) -> None:
    gen = extract_features(extractor, smooth_images(50, seed=2))
    ref = extract_features(extractor, smooth_images(60, seed=3))
    res = distribution_metrics(gen, ref, "tiny", "_RS", "fake reference")
    assert set(res.metrics) >= {"FID_RS", "KID_RS_mean", "KID_RS_std", "IS_RS_mean", "IS_RS_reference"}
    assert not any(k.startswith("FID") and k != "FID_RS" for k in res.metrics)
    assert res.num_generated == 50 and res.num_reference == 60
    assert any("fewer" in w or "only 50" in w for w in res.warnings)
    assert any("not comparable" in w for w in res.warnings)


def _random_inception_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """A randomly initialised FID InceptionV3 state dict (no download: loading is patched out here only)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_standard_inception_loads_from_weight_files(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from safetensors.torch import save_file

    state = _random_inception_state(monkeypatch)
    st, pth = tmp_path / "inception.safetensors", tmp_path / "inception.pth"
    save_file(state, st)
    torch.save(state, pth)
    images = smooth_images(3, size=64)
    for path in (st, pth):
        ext = StandardInceptionExtractor(path)
        assert ext.suffix == "" and "InceptionV3" in ext.description
        feats, logits = extract_features(ext, images)
        assert feats.shape == (3, 2048) and logits.shape == (3, 1008)
        key = "Conv2d_1a_3x3.conv.weight"
        assert torch.equal(ext.inception.state_dict()[key], state[key])  # the file's weights were loaded
    res = distribution_metrics(extract_features(ext, images), extract_features(ext, images), "inc", "", "x")
    assert "FID" in res.metrics and "FID_RS" not in res.metrics


def test_missing_inception_weights_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        StandardInceptionExtractor(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="bad.pth"):
        StandardInceptionExtractor(bad)


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_network_eurosat_halves_close_noise_far(datasets) -> None:
    if not (DEFAULT_FEATURE_NET_DIR / "config.json").is_file():
        pytest.skip("RS feature network not trained yet (eval/train_feature_net.py)")
    from rsgen.eval.reference_data import load_eurosat

    val = load_eurosat("val")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(val))
    a, b = val.images[idx[:400]], val.images[idx[400:800]]
    same = compare_image_sets(a, b, "EuroSAT val half")
    noise = compare_image_sets(noise_images(400, size=64), b, "EuroSAT val half")
    assert same.metrics["FID_RS"] < 0.1 * noise.metrics["FID_RS"]
    assert same.metrics["KID_RS_mean"] < noise.metrics["KID_RS_mean"]
    assert same.metrics["IS_RS_mean"] > noise.metrics["IS_RS_mean"]
