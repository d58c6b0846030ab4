"""Security and reliability rules (rsgen.safety, docs/reliability.md): outputs stay inside --out, pickle is
refused unless trusted (annotators included, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says), an image never
appears without its sidecar, stale temporary files are removed, explicit array layouts, one CLI error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from pipelines_tiny import tiny_pipeline, tiny_text

from rsgen import safety
from rsgen.cli import main
from rsgen.conditions.detectors import convert_annotators
from rsgen.errors import ConfigError, DataError, RsgenError, WeightsNotFoundError
from rsgen.io import atomic_write_json, write_geotiff


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipeline().save_pretrained(path)
    return path


def gen(model: Path, out: Path, *extra: str) -> int:
    return main(
        ["generate", "--model", str(model), "--steps", "1", "--out", str(out), "--no-progress", *extra]
    )


class Payload:
    """Unpickling this creates the folder ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.marker,))


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("bad", ["../x", "/tmp/x", "a/b", "..", ".", "", ".hidden", "a\\b", "x" * 101])
def test_safe_name_refuses_paths(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        safety.safe_name(bad)


def test_safe_name_replaces_odd_characters() -> None:
    assert safety.safe_name("my scene\t\x00é") == "my_scene__é"
    assert safety.safe_name("site-4.v2") == "site-4.v2"


def test_inside_refuses_escapes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert safety.inside(tmp_path / "a.tif", tmp_path) == tmp_path / "a.tif"
    with pytest.raises(ConfigError, match="outside the output folder"):
        safety.inside(tmp_path / ".." / "a.tif", tmp_path)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ConfigError):
        safety.inside(tmp_path / "link" / "a.tif", tmp_path)


def test_unwritable_out_is_one_error_before_loading(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """(Tests run as root, where chmod cannot make a folder unwritable: the probe write is made to fail.)"""
    import tempfile

    def denied(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    with pytest.raises(ConfigError, match=r"--out .*: cannot write there \(Permission denied\)"):
        safety.check_output_dir(tmp_path / "out")


def test_jsonl_names_write_inside_out(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a forest", "name": "plot 7", "seed": 3}\n')
    out = tmp_path / "out"
    assert gen(model, out, "--prompts", str(prompts), "--format", "png") == 0
    assert sorted(p.name for p in out.iterdir()) == ["plot_7_0000_s3.json", "plot_7_0000_s3.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "p.jsonl"]


# ------------------------------------------------------------------------------------------------ pickle


def test_malicious_annotator_pickle_does_not_execute(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rsgen.conditions import make_condition

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    folder = tmp_path / "annotators"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"w": Payload(marker)}, folder / "ControlNetHED.pth")
    image = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(
        WeightsNotFoundError, match="pickled weights are refused.*convert-annotators.*--trust-pickle"
    ):
        make_condition("hed", image, annotators_dir=str(folder))
    assert not marker.exists()
    with (
        safety.overrides(trust_pickle=True),
        pytest.raises(WeightsNotFoundError, match="refused to unpickle"),
    ):
        make_condition("hed", image, annotators_dir=str(folder))  # trusted, yet read as tensors only
    assert not marker.exists()
    with pytest.raises(WeightsNotFoundError, match="not a plain tensor file"):
        convert_annotators(folder)  # the converter reads tensors only too
    assert not marker.exists() and not (folder / "ControlNetHED.safetensors").exists()
    # the file is really malicious: an unrestricted load (what controlnet-aux does with that variable) runs it
    torch.load(folder / "ControlNetHED.pth", weights_only=False)
    assert marker.exists()


def test_annotator_safetensors_and_plain_state_dicts_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from controlnet_aux.hed import ControlNetHED_Apache2
    from safetensors.torch import save_file

    from rsgen.conditions import make_condition

    torch.manual_seed(0)
    state = ControlNetHED_Apache2().state_dict()
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    maps = []
    for name, save in (
        ("ControlNetHED.safetensors", lambda p: save_file({k: v.contiguous() for k, v in state.items()}, p)),
        ("ControlNetHED.pth", lambda p: torch.save(state, p)),  # tensors only: converted once, then read
    ):
        folder = tmp_path / name
        folder.mkdir()
        save(folder / name)
        if name.endswith(".pth"):
            with pytest.raises(WeightsNotFoundError, match="convert-annotators"):
                make_condition("hed", image, size=(64, 64), annotators_dir=str(folder))
            assert main(["models", "convert-annotators", str(folder)]) == 0
            assert (folder / "ControlNetHED.safetensors").is_file()
            assert convert_annotators(folder) == []  # already converted
        maps.append(make_condition("hed", image, size=(64, 64), annotators_dir=str(folder)))
    assert maps[0].shape == (64, 64, 3) and np.array_equal(maps[0], maps[1])


def test_pickled_unet_refused_unless_trusted(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rsgen.pipelines.default import load_pipeline

    pickled = tmp_path / "pickled"
    tiny_pipeline().save_pretrained(pickled, safe_serialization=False)
    assert list((pickled / "unet").glob("*.bin")) and not list((pickled / "unet").glob("*.safetensors"))
    with pytest.raises(WeightsNotFoundError, match=r"pickled/\w+: only pickled weights.*--trust-pickle"):
        load_pipeline(pickled)
    with safety.overrides(trust_pickle=True):
        assert load_pipeline(pickled).unet is not None
    out = tmp_path / "out"
    assert gen(pickled, out, "a forest", "--format", "png") == 2
    assert gen(pickled, out, "a forest", "--format", "png", "--trust-pickle") == 0


def test_evaluate_model_path_refuses_pickle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rsgen.pipelines import RSGenPipeline

    pickled = tmp_path / "pickled"
    tiny_pipeline().save_pretrained(pickled, safe_serialization=False)
    with pytest.raises(WeightsNotFoundError, match="only pickled weights"):
        RSGenPipeline.from_pretrained(str(pickled))  # the call rsgen.eval.evaluate makes


def test_pickled_text_encoder_refused_unless_trusted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rsgen.models.text import load_text_encoder

    tok, bert = tiny_text()
    folder = tmp_path / "text"
    bert.save_pretrained(folder)
    tok.save_pretrained(folder)
    torch.save(bert.state_dict(), folder / "pytorch_model.bin")  # a pickled checkpoint, as older tools save
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="pytorch_model.bin.*--trust-pickle"):
        load_text_encoder(folder)
    with safety.overrides(trust_pickle=True):
        assert load_text_encoder(folder)[1].config.hidden_size == 32


def test_pickled_component_refused_by_from_pretrained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """MetadataEmbedding (loaded by training's resume) defaults to safetensors only."""
    emb = tiny_pipeline().metadata_embedding
    emb.save_pretrained(tmp_path / "emb", safe_serialization=False)
    with pytest.raises(OSError):
        type(emb).from_pretrained(tmp_path / "emb")
    with safety.overrides(trust_pickle=True):
        assert type(emb).from_pretrained(tmp_path / "emb") is not None


def test_every_from_pretrained_of_weights_is_safe() -> None:
    """Every from_pretrained call in rsgen that loads weights passes use_safetensors (tokenizers and
    processors hold no weights); the class-level defaults cover MetadataEmbedding."""
    import ast

    root = Path(__file__).resolve().parents[1] / "rsgen"
    no_weights = {"AutoTokenizer", "CLIPTokenizer", "CLIPProcessor", "MetadataEmbedding"}
    offenders, calls = [], 0
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "from_pretrained":
                continue
            owner = node.func.value
            if isinstance(owner, ast.Call):  # super().from_pretrained(...) and controlnet-aux's _aux(m, c)
                continue  # (annotators load through restricted_torch_load)
            calls += 1
            if isinstance(owner, ast.Name) and owner.id in no_weights:
                continue
            if not any(k.arg == "use_safetensors" for k in node.keywords):
                offenders.append(f"{path.relative_to(root.parent)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert calls >= 10 and not offenders, offenders


# ------------------------------------------------------------------------------------------- atomic writes


def test_sidecar_json_is_strict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="non-finite"):
        atomic_write_json(tmp_path / "s.json", {"guidance": float("inf")}, strict=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(model, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import rsgen.pipelines.output as output

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise SystemExit(143)  # as SIGTERM arrives through rsgen.cli's handler

    monkeypatch.setattr(output, "write_geotiff", boom)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        gen(model, out, "a forest")
    assert list(out.iterdir()) == []  # no image, no sidecar, no hidden temp file


def test_image_never_appears_without_its_sidecar(model, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import rsgen.io as io

    real = os.replace
    calls = []

    def kill_after_first(src, dst):  # type: ignore[no-untyped-def]
        if not str(dst).endswith(".tmp"):  # a rename into place (not a writer's own temp -> group temp)
            calls.append(Path(dst).name)
            if len(calls) > 1:
                raise KeyboardInterrupt  # killed between the renames of the group
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", kill_after_first)
    out = tmp_path / "out"
    assert gen(model, out, "a forest") == 130
    names = sorted(p.name for p in out.iterdir())
    assert names == ["rsgen_0000_s0.json"], names  # sidecar first; no image, no temp file


def test_stale_temp_files_removed_at_start(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that is no longer alive
    stale = [out / f".rsgen_0000_s0.tif.{proc.pid}.a1b2c3d4.tmp", out / ".old.json.zz9_yy8x.tmp"]
    live = out / f".rsgen_0000_s0.png.{os.getpid()}.q1w2e3r4.tmp"  # another job running now
    keep = out / ".notes.tmp"  # not an rsgen temp name
    for p in [*stale, live, keep]:
        p.write_bytes(b"partial")
    assert gen(model, out, "a forest", "--format", "png") == 0
    assert not any(p.exists() for p in stale)
    assert live.exists() and keep.exists()


def test_sigterm_becomes_system_exit() -> None:
    import signal

    from rsgen.cli import _terminate

    with pytest.raises(SystemExit) as e:
        _terminate(signal.SIGTERM, None)
    assert e.value.code == 128 + signal.SIGTERM


# ---------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("side", [16, 3])
def test_geotiff_layout_is_explicit(tmp_path, side) -> None:  # type: ignore[no-untyped-def]
    hwc = np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)
    write_geotiff(tmp_path / "hwc.tif", hwc, layout="HWC")
    write_geotiff(tmp_path / "chw.tif", hwc.transpose(2, 0, 1).copy(), layout="CHW")
    for name in ("hwc.tif", "chw.tif"):
        with rasterio.open(tmp_path / name) as ds:
            assert (ds.count, ds.height, ds.width) == (3, side, side)
            assert np.array_equal(ds.read(), hwc.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="layout"):
        write_geotiff(tmp_path / "guess.tif", hwc)


def test_generate_size_16_writes_a_16x16_rgb_geotiff(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert gen(model, out, "a forest", "--size", "16", "--format", "tif") == 0
    with rasterio.open(out / "rsgen_0000_s0.tif") as ds:
        assert (ds.count, ds.height, ds.width) == (3, 16, 16)


# ------------------------------------------------------------------------------------------ CLI errors


def test_argparse_error_is_one_line_and_help_stays_full(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(["generate", "--steps", "many"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: rsgen generate: argument --steps")
    with pytest.raises(SystemExit) as e:
        main(["generate", "--help"])
    assert e.value.code == 0 and len(capsys.readouterr().out.splitlines()) > 15


def test_unexpected_exception_is_one_line_unless_debug(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import rsgen.cli.info as info

    def broken() -> dict:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(info, "collect_info", broken)
    assert main(["info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected RuntimeError: disk on fire (rerun with --debug for the traceback)"]
    assert main(["info", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["--debug", "info"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_rsgen_error_traceback_only_with_debug(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["metadata", str(tmp_path / "missing.tif")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["metadata", str(tmp_path / "missing.tif"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_subcommand_with_missing_dependency_stays_visible(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib

    real = importlib.import_module

    def fake(name: str, *args):  # type: ignore[no-untyped-def]
        if name == "rsgen.cli.curate":
            raise ModuleNotFoundError("No module named 'imagehash'", name="imagehash")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "curate" in capsys.readouterr().out
    assert main(["curate", "anything", "--x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imagehash" in err[0] and err[0].startswith("error: rsgen curate: unavailable")


def test_pipelines_do_not_import_cli() -> None:
    root = Path(__file__).resolve().parents[1] / "rsgen" / "pipelines"
    assert not (root / "jobs.py").exists()
    assert not [p.name for p in root.glob("*.py") if "rsgen.cli" in p.read_text()]


# --------------------------------------------------------------------------------------- limits / overrides


def test_allow_large_lifts_limits(model, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert gen(model, out, "a forest", "--guidance-text", "60", "--format", "png") == 2
    assert gen(model, out, "a forest", "--guidance-text", "60", "--format", "png", "--allow-large") == 0
    side = json.loads((out / "rsgen_0000_s0.json").read_text())
    assert side["generation"]["guidance_text"] == 60.0
    monkeypatch.setenv(safety.ALLOW_LARGE_ENV, "1")
    safety.check_limit("--n", 10**6, 64, "images")  # no error
    with pytest.raises(ConfigError, match="finite"):
        safety.check_guidance("--guidance-text", float("inf"))  # never lifted


def test_estimate_logged_before_work(model, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    with caplog.at_level(logging.WARNING, logger="rsgen"):
        assert gen(model, tmp_path / "out", "a forest", "--n", "2", "--format", "png") == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("job:"))
    assert "2 image(s)" in line and "UNet evaluations" in line and "disk" in line


def test_overlap_recorded_is_the_one_used(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert gen(model, out, "a forest", "--window", "4", "--overlap", "2", "--format", "png") == 0
    assert json.loads((out / "rsgen_0000_s0.json").read_text())["generation"]["overlap"] == 2


def test_errors_are_rsgen_errors() -> None:
    assert issubclass(WeightsNotFoundError, RsgenError) and issubclass(DataError, RsgenError)
