"""`rsgen generate` / `rsgen whatif` end to end on a saved tiny model: outputs + sidecars, --like, prompts
files, sweeps, the untrained-weights fallback, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from pipelines_tiny import tiny_pipeline

from rsgen.cli import main
from rsgen.io import GeoReference, read_geotiff, write_geotiff


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipeline().save_pretrained(path)
    return path


@pytest.fixture()
def ref_tif(tmp_path) -> Path:
    import numpy as np

    georef = GeoReference.from_latlon_gsd(47.0, -99.0, 1.0, 32, 32)
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")
    return write_geotiff(tmp_path / "ref_20190704.tif", img, georef, layout="HWC")


def gen(model, tmp_path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--model",
            str(model),
            "--steps",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            *extra,
        ]
    )


def test_generate_writes_geotiff_png_and_sidecar(model, tmp_path):
    assert (
        gen(
            model,
            tmp_path,
            "a forest",
            "--lat",
            "47",
            "--lon",
            "-99",
            "--gsd",
            "0.5",
            "--date",
            "2020-07",
            "--n",
            "2",
            "--seed",
            "5",
            "--guidance-meta",
            "2",
        )
        == 0
    )
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [
        "rsgen_0000_s5.json",
        "rsgen_0000_s5.png",
        "rsgen_0000_s5.tif",
        "rsgen_0001_s6.json",
        "rsgen_0001_s6.png",
        "rsgen_0001_s6.tif",
    ]
    side = json.loads((tmp_path / "out" / "rsgen_0001_s6.json").read_text())
    assert side["gsd_m"] == 0.5 and side["date"] == "2020-07"
    g = side["generation"]
    assert g["prompt"] == "a forest" and g["seed"] == 6 and g["steps"] == 2 and g["guidance_meta"] == 2.0
    r = read_geotiff(tmp_path / "out" / "rsgen_0001_s6.tif")
    assert r.georef is not None and r.georef.gsd == pytest.approx(0.5)
    assert r.metadata.lat == pytest.approx(47.0, abs=1e-6)


def test_without_guidance_meta_the_models_default_is_used_and_recorded(model, tmp_path):
    from rsgen.pipelines import RSGenPipeline

    strong = tmp_path / "strong"
    pipe = RSGenPipeline.from_pretrained(model)
    pipe.register_to_config(default_guidance_meta=4.0)
    pipe.save_pretrained(strong)
    for folder, expected in ((model, 1.0), (strong, 4.0)):
        out = tmp_path / f"out-{folder.name}"
        assert gen(folder, tmp_path, "a forest", "--gsd", "10", "--format", "png", "--out", str(out)) == 0
        side = json.loads((out / "rsgen_0000_s0.json").read_text())
        assert side["generation"]["guidance_meta"] == expected


def test_like_takes_metadata_and_georeference(model, tmp_path, ref_tif):
    assert (
        gen(
            model,
            tmp_path,
            "fields",
            "--like",
            str(ref_tif),
            "--size",
            "64",
            "--format",
            "tif",
            "--name",
            "like",
        )
        == 0
    )
    r = read_geotiff(tmp_path / "out" / "like_0000_s0.tif")
    ref = GeoReference.from_raster(ref_tif)
    assert r.array.shape == (3, 64, 64) and r.georef.crs == ref.crs
    assert r.georef.gsd == pytest.approx(0.5)  # same footprint on a 2x finer grid
    assert str(r.metadata.date) == "2019-07-04"  # from the reference's file name


def test_prompts_file_jsonl(model, tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text(
        '{"prompt": "a lake", "metadata": {"gsd": 2}, "seed": 9, "name": "lake"}\nplain text prompt\n'
    )
    assert gen(model, tmp_path, "--prompts", str(f), "--format", "png") == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "lake_0000_s9.png" in names and "rsgen_0001_s1.png" in names


def test_whatif_sweep_grid(model, tmp_path, ref_tif):
    assert (
        main(
            [
                "whatif",
                str(ref_tif),
                "--model",
                str(model),
                "--prompt",
                "farmland",
                "--sweep",
                "month=1,7",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "w"),
                "--no-progress",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert "whatif_grid.png" in names and "whatif_00_Jan.tif" in names and "whatif_01_Jul.tif" in names
    r = read_geotiff(tmp_path / "w" / "whatif_01_Jul.tif")
    assert r.georef.crs == GeoReference.from_raster(ref_tif).crs and r.metadata.date.month == 7


def test_default_model_fallback_warns(tmp_path, monkeypatch, capsys):
    import rsgen.pipelines.default as default

    monkeypatch.setattr(default, "DEFAULT_MODEL_DIR", tmp_path / "nothing-here")
    assert (
        main(
            [
                "generate",
                "x",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
                "--format",
                "png",
            ]
        )
        == 0
    )
    assert "WARNING: untrained random weights" in capsys.readouterr().err
    pipe = default.load_default_pipeline(tmp_path / "nothing-here")
    assert pipe.untrained and list(pipe.unet.config.block_out_channels) == [32, 64]  # the tiny config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--size", "36"], "multiple of 8"),
        (["x", "--scheduler", "heun9"], "unknown scheduler 'heun9'"),
        (["x", "--control", "canny=/no/such.png"], "does not exist"),
        (["x", "--lat", "95", "--lon", "0"], "lat=95 is outside"),
        (["x", "--steps", "-4"], "--steps -4"),
        (["x", "--cascade", "nope"], "unknown config 'nope'"),
    ],
)
def test_errors_exit_2_with_one_line(model, tmp_path, capsys, args, message):
    assert main(["generate", "--model", str(model), "--out", str(tmp_path), "--no-progress", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err


def test_default_model_finds_its_canny_controlnet(tmp_path):
    """Without --model, --control canny=IMG uses the shipped assets/default-model/controlnet-canny."""
    from rsgen.io import write_png
    from rsgen.paths import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "controlnet-canny" / "config.json").is_file():
        pytest.skip("no shipped Canny ControlNet")
    src = tmp_path / "src.png"
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    write_png(src, (((xx // 8 + yy // 8) % 2) * 255).to(torch.uint8)[..., None].expand(64, 64, 3).numpy())
    args = ["generate", "farmland", "--steps", "1", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*args, "--format", "png", "--control", f"canny={src}"]) == 0
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert "rsgen_0000_s0.condition-canny.png" in names and "rsgen_0000_s0.png" in names


def test_a_long_job_shows_a_measured_time_estimate_first(model, tmp_path, monkeypatch, caplog):
    import logging

    import rsgen.cli.jobs as jobs

    caplog.set_level(logging.WARNING, logger="rsgen")
    assert gen(model, tmp_path, "a forest", "--gsd", "10") == 0  # 2 steps: a short job, no probe runs
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("job: "))
    assert "UNet evaluations" in line and " s;" not in line
    caplog.clear()
    monkeypatch.setattr(jobs, "TIME_PROBE_MIN_EVALUATIONS", 1)
    assert gen(model, tmp_path, "a forest", "--gsd", "10", "--n", "3") == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("job: "))
    assert re.search(r"3 image\(s\) .* about \d+ s; output memory", line), line
