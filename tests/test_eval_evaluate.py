"""End to end: `rsgen evaluate` on a folder of fake generated images with a tiny feature network."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fakes import noise_images, one_thread, smooth_images, tiny_net  # noqa: F401

from rsgen.cli import main
from rsgen.eval.evaluate import EvaluateConfig, evaluate_folder, generate_class_prompt_set
from rsgen.eval.generated_set import load_generated_set, write_generated_set
from rsgen.eval.reference_data import EUROSAT_CLASSES
from rsgen.io import write_png

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tmp_path):
    net = tiny_net(num_classes=10, size=32)
    net.register_to_config(class_names=EUROSAT_CLASSES)
    net.save_pretrained(tmp_path / "net")
    ref = tmp_path / "ref" / "Forest"
    for i, im in enumerate(smooth_images(30, seed=3)):
        write_png(ref / f"r{i}.png", im)
    images = np.concatenate([smooth_images(12, seed=4), noise_images(4)])
    records = [
        {"prompt": "a dense forest", "metadata": {"gsd_m": 10.0}, "guidance_scale": g, "steps": 20}
        for g in (3.0, 5.0)
        for _ in range(8)
    ]
    gen = write_generated_set(tmp_path / "gen", images, records)
    cfg = EvaluateConfig(
        reference=str(tmp_path / "ref"),
        image_size=32,
        feature_net=str(tmp_path / "net"),
        gsd_predictor=str(tmp_path / "no-gsd"),
        rs_clip=str(tmp_path / "no-clip"),
    )
    return gen, cfg


def test_generated_set_reading(setup) -> None:
    gen, _ = setup
    data = load_generated_set(gen, size=32)
    assert data.images.shape == (16, 32, 32, 3)
    assert data.samples[0].metadata.gsd_m == 10.0 and data.samples[0].extra["guidance_scale"] == 3.0
    assert sorted(data.group_by("guidance_scale")) == [3.0, 5.0]


def test_evaluate_folder_writes_report(setup, tmp_path) -> None:
    gen, cfg = setup
    report = evaluate_folder(gen, tmp_path / "out", cfg)
    out = tmp_path / "out"
    for name in (
        "report.md",
        "report.json",
        "samples.png",
        "per_class_accuracy.png",
        "fid_rs_vs_guidance_scale.png",
        "class_accuracy_vs_guidance_scale.png",  # on the same images as the FID points
    ):
        assert (out / name).is_file(), name
    dist = report["distribution"][0]
    assert dist["num_generated"] == 16 and dist["num_reference"] == 30
    assert np.isfinite(dist["metrics"]["FID_RS"])
    assert report["text_faithfulness"]["num_scored"] == 16
    assert any("GSD predictor not found" in m for m in report["not_measured"])
    assert any("RS-CLIP not found" in m for m in report["not_measured"])
    md = (out / "report.md").read_text()
    assert "FID_RS" in md and "fewer than 1000" in md and "16 generated images vs 30 reference" in md
    sweep = json.loads((out / "report.json").read_text())["sweeps"][0]
    assert sweep["key"] == "guidance_scale" and len(sweep["class_accuracy"]) == len(sweep["x"]) == 2
    assert all(0 <= a <= 1 for a in sweep["class_accuracy"])
    assert sweep["gsd_error"] == [None, None] or all(not np.isfinite(e) for e in sweep["gsd_error"])
    assert not (out / "gsd_error_vs_guidance_scale.png").exists()  # no GSD predictor: not plotted
    assert "| guidance_scale | n | FID_RS | class accuracy | GSD error (octaves) |" in md


def test_cli_evaluate_and_bad_input(setup, tmp_path, capsys) -> None:
    gen, cfg = setup
    args = [
        "evaluate",
        "--images",
        str(gen),
        "--out",
        str(tmp_path / "cli"),
        "--reference",
        cfg.reference,
        "--feature-net",
        cfg.feature_net,
        "image_size=32",
        "sweep_keys=[]",
        f"rs_clip={cfg.rs_clip}",
        f"gsd_predictor={cfg.gsd_predictor}",
    ]
    assert main(args) == 0
    assert "FID_RS=" in capsys.readouterr().out
    assert main(["evaluate", "--images", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "generated-image folder not found" in capsys.readouterr().err


def test_effective_gsd_follows_resizing(tmp_path) -> None:
    gen = write_generated_set(tmp_path / "g", smooth_images(2, size=64), [{"metadata": {"gsd_m": 10.0}}, {}])
    data = load_generated_set(gen, size=32)
    assert data.samples[0].native_size == (64, 64)
    assert data.samples[0].effective_gsd(32) == pytest.approx(20.0)  # 64 px at 10 m shown as 32 px: 20 m
    assert data.samples[1].effective_gsd(32) is None


@pytest.mark.slow
def test_generate_from_saved_model(tmp_path) -> None:
    from pipelines_tiny import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "model")
    cfg = EvaluateConfig(
        num_images=3,
        num_inference_steps=2,
        batch_size=2,
        guidance_sweep=(1.0,),
        guidance_meta_sweep=(3.0,),
        sweep_images=1,
        gsd_choices=(10.0, 20.0),
    )
    folder = generate_class_prompt_set(tmp_path / "model", tmp_path / "gen", cfg)
    data = load_generated_set(folder, size=32)
    assert len(data) == 5 and data.samples[0].label == "AnnualCrop" and data.samples[1].label == "Forest"
    assert data.samples[0].prompt.startswith("a satellite image of")
    assert sorted(data.group_by("guidance_scale")) == [1.0, 5.0]
    assert data.samples[0].extra["seed"] == 0 and data.samples[2].extra["seed"] == 2
    assert data.samples[0].extra["guidance_meta"] == 1.0
    main_set = data.main()  # the sweep image is kept out of the headline metrics
    assert len(main_set) == 3 and data.samples[3].extra["sweep"] == "guidance_scale"
    assert data.samples[4].extra["sweep"] == "guidance_meta" and data.samples[4].extra["guidance_meta"] == 3.0
    assert data.samples[4].extra["seed"] == 0  # the sweep repeats the main set's first prompts and seeds
    assert sorted(data.group_by("guidance_meta")) == [1.0, 3.0]
    report = evaluate_folder(folder, tmp_path / "out", EvaluateConfig(image_size=32, reference=str(folder)))
    assert report["distribution"][0]["num_generated"] == 3
    assert report["sweeps"][0]["n"] == [1, 1]  # every sweep point uses the same number of images
    assert [s["key"] for s in report["sweeps"]] == ["guidance_scale", "guidance_meta"]

    # The CLI's --generate-only writes the same set and stops (no evaluation networks needed).
    out = tmp_path / "cli"
    args = ["evaluate", "--model", str(tmp_path / "model"), "--out", str(out), "--generate-only"]
    assert main([*args, "num_images=2", "num_inference_steps=2", "batch_size=2"]) == 0
    assert len(load_generated_set(out / "generated", size=32)) == 2 and not (out / "report.md").exists()
    assert main(["evaluate", "--images", str(folder), "--out", str(out), "--generate-only"]) == 2


def test_text_faithfulness_uses_the_robust_classifier_when_given(setup, tmp_path) -> None:
    import dataclasses

    from rsgen.errors import RsgenError

    gen, cfg = setup
    judge = tiny_net(num_classes=10, size=32, seed=5)
    judge.register_to_config(class_names=EUROSAT_CLASSES)
    judge.save_pretrained(tmp_path / "judge")
    (tmp_path / "judge" / "training_summary.json").write_text(
        json.dumps({"val_accuracy": 0.9, "val_accuracy_degraded": {"blur_sigma_0.8": 0.85}})
    )
    report = evaluate_folder(
        gen, tmp_path / "out", dataclasses.replace(cfg, text_classifier=str(tmp_path / "judge"))
    )
    text = report["text_faithfulness"]
    assert "degradation-robust" in text["classifier"] and text["real_accuracy"] == 0.9
    assert report["text_faithfulness_feature_net"]["accuracy"] is not None
    assert "With the plain feature network" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(RsgenError, match="text_classifier"):
        evaluate_folder(
            gen, tmp_path / "out2", dataclasses.replace(cfg, text_classifier=str(tmp_path / "none"))
        )


def test_metadata_section_reports_the_vae_ceiling(tmp_path) -> None:
    """With ``vae`` set, the real held-out images are also scored after that VAE's round trip."""
    import dataclasses

    from pipelines_tiny import tiny_pipeline

    from rsgen.eval.evaluate import MetadataPredictorSpec, _metadata_section
    from rsgen.eval.gsd_predictor import gsd_faithfulness, log2_errors

    tiny_pipeline().save_pretrained(tmp_path / "model")
    gen = load_generated_set(
        write_generated_set(tmp_path / "g", smooth_images(4), [{"metadata": {"gsd_m": 10.0}}] * 4), size=32
    )
    real = smooth_images(6, seed=9)

    def brightness_gsd(_model, images):  # a stand-in predictor: brighter reads coarser
        return 5.0 + np.asarray(images, dtype=np.float64).mean(axis=(1, 2, 3)) / 8.0

    spec = MetadataPredictorSpec(
        "gsd_m",
        lambda s: s.metadata.gsd_m,
        lambda: None,
        brightness_gsd,
        lambda n: (real[:n], np.full(min(n, len(real)), 10.0)),
        log2_errors,
        gsd_faithfulness,
        True,
    )
    cfg = EvaluateConfig(image_size=32, metadata_real_images=6)
    for vae, expect in ((None, False), (str(tmp_path / "model"), True)):
        report: dict = {"metadata_faithfulness": [], "not_measured": [], "plots": []}
        _metadata_section(spec, gen, dataclasses.replace(cfg, vae=vae), report, tmp_path)
        m = report["metadata_faithfulness"][0]
        assert (m["real_through_vae"] is not None) == expect
        if expect:  # a random tiny VAE changes the images, so the ceiling differs from the real error
            assert np.isfinite(m["real_through_vae"]) and m["real_through_vae"] != m["real"]
