"""Metadata ablation: arm configs differ only in metadata.style; a tiny two-arm ablation trains, evaluates and
writes its comparison table."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import textured  # noqa: E402
from eval_fakes import one_thread  # noqa: E402, F401

from rsgen.errors import ConfigError  # noqa: E402
from rsgen.eval.ablation import (  # noqa: E402
    AblationConfig,
    ablation_markdown,
    arm_train_config,
    evaluate_arm,
    run_metadata_ablation,
    summary_row,
)
from rsgen.io import write_png  # noqa: E402


def test_arms_differ_only_in_metadata_style(tmp_path):
    cfg = AblationConfig(base_config="tiny", output_dir=str(tmp_path), max_steps=7, manifest=None)
    arms = {s: arm_train_config(cfg, s) for s in ("none", "diffusionsat", "fourier")}
    assert {a.metadata.style for a in arms.values()} == {"none", "diffusionsat", "fourier"}
    assert all(a.max_steps == 7 and a.data.cache_dir == str(tmp_path / "latent-cache") for a in arms.values())
    a, b = arms["none"], arms["fourier"]
    assert a.unet == b.unet and a.optim == b.optim and a.seed == b.seed and a.data == b.data
    with pytest.raises(ConfigError, match="style"):
        arm_train_config(cfg, "bogus")


def test_summary_row_and_table_from_reports():
    report = {
        "distribution": [{"metrics": {"FID_RS": 12.5, "KID_RS": 0.1}}],
        "text_faithfulness": {"accuracy": 0.4, "real_accuracy": 0.86},
        "clip": [{"name": "CLIP_RS", "generated": 20.0, "generated_shuffled": 8.0}],
        "metadata_faithfulness": [
            {
                "field": "gsd_m",
                "generated": 0.7,
                "shuffled": 1.1,
                "real": 0.5,
                "real_through_vae": 0.6,
                "by_value": [
                    {
                        "value": 10.0,
                        "generated": 0.3,
                        "real": 0.4,
                        "median_predicted": 17.5,
                        "real_through_vae": 0.8,
                    }
                ],
            }
        ],
    }
    row = summary_row("fourier", report)
    assert row["FID_RS"] == 12.5 and row["class_accuracy"] == 0.4 and row["gsd_error@10 m"] == 0.3
    assert (
        row["gsd_read_as_m@10 m"] == 17.5 and row["gsd_error_vae@10 m"] == 0.8 and row["gsd_error_vae"] == 0.6
    )
    text = ablation_markdown([row, summary_row("none", {})], AblationConfig(num_images=300))
    assert "| rsgen (Fourier" in text and "| no metadata |" in text and "WARNING: 300 images" in text
    assert "1.1" in text  # the shuffled reference is stated
    assert "gsd_read_as_m @ 10 m" in text and "| 0.3 | 0.4 | 0.8 | 17.5 |" in text


def _fake_manifest(root: Path, n: int = 8) -> Path:
    lines = []
    for i in range(n):
        write_png(root / f"img{i}.png", textured(i, 32))
        meta = {"gsd_m": [10.0, 20.0][i % 2], "lat": 47.0, "lon": 8.0, "date": "2019-07-04"}
        lines.append(
            {
                "id": f"img{i}",
                "path": f"img{i}.png",
                "captions": [f"a satellite image of a {['forest', 'river'][i % 2]}"],
                "metadata": meta,
                "split": "train",
                "source": "fake",
                "label": ["Forest", "River"][i % 2],
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return root / "manifest.jsonl"


@pytest.mark.slow
def test_tiny_two_arm_ablation_end_to_end(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    manifest = _fake_manifest(data)
    ref = tmp_path / "ref"
    for i in range(6):
        write_png(ref / f"r{i}.png", textured(100 + i, 32))
    cfg = AblationConfig(
        base_config="tiny",
        output_dir=str(tmp_path / "ablation"),
        manifest=str(manifest),
        styles=("none", "fourier"),
        max_steps=2,
        train_overrides=("data.image_size=32",),
        num_images=4,
        gsd_choices=(10.0, 20.0),
        num_inference_steps=2,
        batch_size=4,
        metadata_real_images=8,
        evaluate_overrides={"reference": str(ref), "image_size": 32, "clip_real_images": 8},
    )
    result = run_metadata_ablation(cfg, progress=False)
    assert [r["style"] for r in result["arms"]] == ["none", "fourier"]
    assert all(np.isfinite(r["FID_RS"]) for r in result["arms"])
    assert (tmp_path / "ablation" / "none" / "eval" / "report.md").is_file()
    text = (tmp_path / "ablation" / "ablation.md").read_text()
    assert "no metadata" in text and "FID_RS" in text
    assert "ablation.png" in text and (tmp_path / "ablation" / "ablation.png").is_file()
    # an arm whose set was generated elsewhere (a lent GPU) is evaluated without training, with the given VAE
    gpu = tmp_path / "gpu"
    shutil.copytree(tmp_path / "ablation" / "none" / "generated", gpu / "none" / "generated")
    cfg2 = dataclasses.replace(
        cfg,
        output_dir=str(gpu),
        manifest=None,
        styles=("none",),
        vae=str(tmp_path / "ablation" / "none" / "model"),
    )
    again = run_metadata_ablation(cfg2, progress=False)
    assert not (gpu / "none" / "checkpoints").exists()
    assert again["arms"][0]["FID_RS"] == pytest.approx(result["arms"][0]["FID_RS"], rel=1e-4)


def test_arm_without_model_needs_a_set_and_a_vae(tmp_path):
    cfg = AblationConfig(base_config="tiny", output_dir=str(tmp_path), manifest=None)
    with pytest.raises(ConfigError, match="no model and no `vae`"):
        evaluate_arm(cfg, "none", None)
    with pytest.raises(ConfigError, match="no generated set"):
        evaluate_arm(dataclasses.replace(cfg, vae=str(tmp_path / "vae")), "none", None)


def test_arm_overrides_reach_one_arm_only_and_are_reported(tmp_path):
    cfg = AblationConfig(
        base_config="tiny",
        output_dir=str(tmp_path),
        max_steps=7,
        manifest=None,
        arm_overrides={"fourier": ("metadata.local_season=true",)},
    )
    arms = {s: arm_train_config(cfg, s) for s in ("none", "diffusionsat", "fourier")}
    assert arms["fourier"].metadata.local_season is True
    assert arms["diffusionsat"].metadata.local_season is False and arms["none"].metadata.local_season is False
    assert "`fourier` has ['metadata.local_season=true']" in ablation_markdown([], cfg)
    with pytest.raises(ConfigError, match="arm_overrides: bogus"):
        arm_train_config(dataclasses.replace(cfg, arm_overrides={"bogus": ("seed=1",)}), "none")
