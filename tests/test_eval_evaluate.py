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
    # the headline judge is the shipped EuroSAT class judge, its real held-out accuracy beside its verdict
    assert report["text_faithfulness"]["classifier"].startswith("class judge eurosat")
    assert report["text_faithfulness"]["real_accuracy"] > 0.95
    assert [o["classifier"] for o in report["text_faithfulness_second_opinions"]][-1].startswith("RS feature")
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
    args += [
        "--prompt-sets",
        "plain-eurosat",
        "--max-prompts",
        "2",
    ]  # of the config's three sets, one, capped
    assert main([*args, "num_images=2", "num_inference_steps=2", "batch_size=2"]) == 0
    cli_set = load_generated_set(out / "generated", size=32)
    assert len(cli_set) == 4 and not (out / "report.md").exists()
    assert {k: len(v) for k, v in cli_set.prompt_sets().items()} == {"plain-eurosat": 2}
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
        gen,
        tmp_path / "out",
        dataclasses.replace(cfg, class_judges="off", text_classifier=str(tmp_path / "judge")),
    )
    text = report["text_faithfulness"]
    assert "degradation-robust" in text["classifier"] and text["real_accuracy"] == 0.9  # no class judges
    others = report["text_faithfulness_second_opinions"]
    assert len(others) == 1 and others[0]["accuracy"] is not None  # the plain feature network
    assert "Second opinions" in (tmp_path / "out" / "report.md").read_text()
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


# ------------------------------------------------------------------------------------------------ prompt sets
def _prompt_set_folder(tmp_path):
    """Class-prompt images plus two prompt sets: plain prompts (no real images) and captions of real images."""
    from rsgen.eval.generated_set import write_generated_set

    real = [
        write_png(tmp_path / "real" / f"r{i}.png", im)
        for i, im in enumerate(smooth_images(6, seed=8, size=48))
    ]
    images = [*smooth_images(8, seed=4), *smooth_images(5, seed=6), *smooth_images(6, seed=7, size=48)]
    records = [{"prompt": "a dense forest", "label": "Forest", "metadata": {"gsd_m": 10.0}}] * 8
    records += [
        {"prompt": p, "label": lab, "metadata": {"gsd_m": 10.0}, "prompt_set": "plain", "size": 32}
        for p, lab in [
            ("thick pine woods", "Forest"),
            ("a reservoir behind a dam", "SeaLake"),
            ("cows grazing", "Pasture"),
            ("a busy freeway", "Highway"),
            ("tennis courts", "tenniscourt"),
        ]
    ]
    records += [
        {
            "prompt": f"many buildings {i}",
            "label": "denseresidential",
            "metadata": {"gsd_m": 0.3048},
            "prompt_set": "ucm",
            "real_image": str(real[i]),
        }
        for i in range(6)
    ]
    return write_generated_set(tmp_path / "gen", images, records)


def test_report_has_one_section_per_prompt_set(setup, tmp_path) -> None:
    import dataclasses

    from rsgen.eval.prompt_sets import PromptSetConfig

    _, cfg = setup
    folder = _prompt_set_folder(tmp_path)
    wanted = [
        PromptSetConfig("plain", prompts="plain-eurosat"),
        PromptSetConfig("absent", prompts="plain-eurosat"),
    ]
    report = evaluate_folder(folder, tmp_path / "out", dataclasses.replace(cfg, prompt_sets=wanted))
    assert report["distribution"][0]["num_generated"] == 8  # the headline metrics: class prompts only
    sets = {s["name"]: s for s in report["prompt_sets"]}
    assert list(sets) == ["plain", "ucm"]
    plain, ucm = sets["plain"], sets["ucm"]
    assert plain["num_images"] == 5 and plain["gsd_m"] == [10.0] and plain["size"] == [32]
    assert plain["text_faithfulness"]["num_scored"] == 4 and plain["labels_not_judged"] == ["tenniscourt"]
    assert ucm["gsd_m"] == [0.3048] and ucm["size"] == [48] and ucm["num_real"] == 6
    # each set is read by the class judge of its labels, at the size it was generated
    assert ucm["text_faithfulness"]["count_per_class"] == {"denseresidential": 6}
    assert ucm["text_faithfulness"]["classifier"].startswith("class judge ucm")
    assert plain["text_faithfulness"]["classifier"].startswith("class judge eurosat")
    assert np.isfinite(ucm["distribution"]["metrics"]["FID_RS"]) and "distribution" not in plain
    assert any("prompt set absent: no generated image" in m for m in report["not_measured"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert (
        md.count("## Prompt set: ") == 2 and "## Prompt set: ucm" in md and "FID_RS vs its real images" in md
    )
    assert (tmp_path / "out" / "samples_plain.png").is_file() and (
        tmp_path / "out" / "samples_ucm.png"
    ).is_file()


def test_plain_prompts_are_unlike_the_caption_templates() -> None:
    """The plain-language set: >= 5 prompts per EuroSAT class, none a caption the writer makes, none opening
    with a template's frame or view phrase, none containing a scene phrase of the caption vocabulary."""
    import re

    import yaml

    from rsgen.data.captions import CAPTION_ASSETS, CaptionWriter, clean_caption
    from rsgen.eval.prompt_sets import PromptSetConfig, load_prompt_set

    items = load_prompt_set(PromptSetConfig("plain", prompts="plain-eurosat"))
    per_class = {c: [i.prompt for i in items if i.label == c] for c in EUROSAT_CLASSES}
    assert all(len(p) >= 5 for p in per_class.values()) and len({i.prompt for i in items}) == len(items)
    templates = yaml.safe_load((CAPTION_ASSETS / "templates.yaml").read_text())
    openings = {
        re.split(r"\{", f)[0].strip().lower() for k in ("singular", "plural", "whole") for f in templates[k]
    }
    openings |= {v.lower() for v in templates["views"]}
    openings.discard("")
    classes = yaml.safe_load((CAPTION_ASSETS / "classes.yaml").read_text())
    phrases = {
        p.lower()
        for spec in classes.values()
        for k in ("singular", "plural", "sentences")
        for p in spec.get(k, [])
    }
    writer = CaptionWriter(metadata_probability=0.0)
    for label, prompts in per_class.items():
        written = {c.lower() for c in writer.captions(label, None, n=300, key="x")}
        for p in prompts:
            assert clean_caption(p).lower() not in written, p
            assert not any(p.lower().startswith(o + " ") for o in openings), p
            assert not any(len(ph.split()) >= 3 and ph in p.lower() for ph in phrases), p


def test_curation_prompt_sets_follow_the_curation_split(tmp_path) -> None:
    import yaml
    from data_fixtures import save_jpeg, textured

    from rsgen.errors import ConfigError
    from rsgen.eval.prompt_sets import PromptSetConfig, load_prompt_set, prompt_set_records

    items = [
        {
            "path": f"im/{i}.jpg",
            "label": "forest" if i % 2 else "river",
            "captions": [f"scene {i} a .", f"scene {i} b .", f"scene {i} a ."],
        }
        for i in range(10)
    ]
    for i in range(10):
        save_jpeg(tmp_path / "im" / f"{i}.jpg", textured(i, 32))
    (tmp_path / "list.json").write_text(json.dumps(items))
    source = {
        "name": "mine",
        "kind": "image_list",
        "root": str(tmp_path),
        "annotations": str(tmp_path / "list.json"),
        "split": "train",
        "heldout": 0.2,
        "metadata": {"gsd_m": 0.5},
    }
    (tmp_path / "cur.yaml").write_text(yaml.safe_dump({"sources": [source]}))
    ps = PromptSetConfig("mine", curation=f"{tmp_path / 'cur.yaml'}:mine", gsd_m=0.5, size=32)
    held = load_prompt_set(ps)
    assert len(held) == 4 and {i.label for i in held} == {
        "forest",
        "river",
    }  # 1 image per class, 2 captions each
    assert held[0].prompt.startswith("Scene") and "0.5" not in " ".join(i.prompt for i in held)  # as written
    recs = prompt_set_records(ps)
    assert (
        recs[0]["metadata"] == {"gsd_m": 0.5}
        and recs[0]["size"] == 32
        and recs[0]["real_image"].endswith(".jpg")
    )
    train = load_prompt_set(
        PromptSetConfig("t", curation=f"{tmp_path / 'cur.yaml'}:mine", split="train", max_prompts=5)
    )
    assert (
        len(train) == 5 and len({i.real_image for i in train}) == 5
    )  # a cap keeps more images, not more captions
    with pytest.raises(ConfigError, match="no source 'other'"):
        load_prompt_set(PromptSetConfig("x", curation=f"{tmp_path / 'cur.yaml'}:other"))
    with pytest.raises(ConfigError, match="exactly one of"):
        PromptSetConfig("x")


def test_cli_prompt_set_selection() -> None:
    from rsgen.cli.evaluate import select_prompt_sets
    from rsgen.config import load_config
    from rsgen.errors import ConfigError

    sets = load_config(EvaluateConfig, "default", subdir="eval").prompt_sets
    assert [s.name for s in sets] == ["plain-eurosat", "ucm-val", "rsicd-heldout"]
    assert [(s.gsd_m, s.size) for s in sets] == [(10.0, 64), (0.3048, 256), (None, 160)]
    chosen = select_prompt_sets(sets, "ucm-val", 3)
    assert [(s.name, s.max_prompts) for s in chosen] == [("ucm-val", 3)]
    assert select_prompt_sets(sets, "none", None) == []
    with pytest.raises(ConfigError, match="not in the config's prompt_sets"):
        select_prompt_sets(sets, "mystery", None)


@pytest.mark.slow
def test_model_generates_each_prompt_set_and_the_report_has_a_section_per_set(tmp_path) -> None:
    """With the tiny pipeline: every prompt set is generated at its own size and GSD and reported by itself."""
    from pipelines_tiny import tiny_pipeline

    from rsgen.eval.prompt_sets import PromptSetConfig

    tiny_pipeline().save_pretrained(tmp_path / "model")
    (tmp_path / "p.yaml").write_text(
        "prompts:\n  Forest: [thick pine woods, dark conifers]\n  River: [a river bend]\n"
    )
    sets = [
        PromptSetConfig("plain", prompts=str(tmp_path / "p.yaml"), gsd_m=10.0, size=32),
        PromptSetConfig("wide", prompts=str(tmp_path / "p.yaml"), gsd_m=0.5, size=48, max_prompts=2),
        PromptSetConfig("gone", curation=f"{tmp_path / 'no-such-curation.yaml'}:x"),  # data absent: skipped
    ]
    cfg = EvaluateConfig(num_images=2, num_inference_steps=2, batch_size=2, image_size=32, prompt_sets=sets)
    folder = generate_class_prompt_set(tmp_path / "model", tmp_path / "gen", cfg)
    data = load_generated_set(folder, size=32)
    assert len(data) == 2 + 3 + 2 and len(data.main()) == 2
    groups = data.prompt_sets()
    assert {k: len(v) for k, v in groups.items()} == {"plain": 3, "wide": 2}
    assert data.samples[groups["wide"][0]].native_size == (48, 48)
    assert data.samples[groups["plain"][0]].metadata.gsd_m == 10.0 and data.samples[2].label == "Forest"
    net = tiny_net(num_classes=10, size=32)
    net.register_to_config(class_names=EUROSAT_CLASSES)
    net.save_pretrained(tmp_path / "net")
    eval_cfg = EvaluateConfig(
        image_size=32,
        reference=str(folder),
        feature_net=str(tmp_path / "net"),
        gsd_predictor=str(tmp_path / "none"),
        rs_clip=str(tmp_path / "none"),
        prompt_sets=sets,
    )
    report = evaluate_folder(folder, tmp_path / "out", eval_cfg)
    assert [s["name"] for s in report["prompt_sets"]] == ["plain", "wide"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("## Prompt set: ") == 2 and "GSD 0.5 m; generated at 48 px" in md
    assert any("prompt set gone: no generated image" in m for m in report["not_measured"])


def test_prompt_set_draws_each_prompt_several_times() -> None:
    from rsgen.errors import ConfigError
    from rsgen.eval.prompt_sets import PromptSetConfig, prompt_set_records

    once = prompt_set_records(PromptSetConfig("plain", prompts="plain-eurosat", gsd_m=10.0))
    thrice = prompt_set_records(
        PromptSetConfig("plain", prompts="plain-eurosat", gsd_m=10.0, images_per_prompt=3)
    )
    assert len(thrice) == 3 * len(once) and thrice[: len(once)] == once == thrice[len(once) : 2 * len(once)]
    with pytest.raises(ConfigError, match="images_per_prompt"):
        prompt_set_records(PromptSetConfig("plain", prompts="plain-eurosat", images_per_prompt=0))
