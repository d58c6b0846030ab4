"""The bad-input corpus: every input the reliability review tried (docs/reliability.md), run in-process through
``rsgen.cli.main`` on a tiny saved model. Each must end in exit 2 with one ``error:`` line naming the problem
(never a traceback, never exit 0), and nothing may be written outside ``--out``."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from pipelines_tiny import tiny_pipeline

from rsgen.cli import main
from rsgen.io import GeoReference, write_geotiff


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipeline().save_pretrained(path)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (valid CRCs) with a tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def small_png(path: Path, size: int = 16, channels: int = 3) -> Path:
    from PIL import Image

    arr = (np.random.default_rng(0).random((size, size, channels)) * 255).astype(np.uint8)
    Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(path)
    return path


def georef_tif(path: Path, crs: bool = True, gsd: float = 1.0) -> Path:
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")
    georef = GeoReference.from_latlon_gsd(47.0, -99.0, gsd, 32, 32) if crs else None
    return write_geotiff(path, img, georef, layout="HWC")


def prompts(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def bad_model(root: Path, model: Path, edit: str) -> str:
    """A copy of the tiny model with one fault."""
    import shutil

    dst = root / f"model-{edit}"
    shutil.copytree(model, dst)
    index = dst / "model_index.json"
    if edit == "garbage":
        index.write_bytes(b"\x00\xffnot json")
    elif edit == "list":
        index.write_text("[]")
    elif edit == "empty":
        index.write_text("{}")
    elif edit == "custom_class":
        data = json.loads(index.read_text())
        data["unet"] = ["my_unet_module", "EvilUNet"]
        index.write_text(json.dumps(data))
    elif edit == "custom_pipeline":
        data = json.loads(index.read_text())
        data["custom_pipeline"] = "evil_pipeline.py"
        index.write_text(json.dumps(data))
    elif edit == "auto_map":
        cfg = dst / "unet" / "config.json"
        data = json.loads(cfg.read_text())
        data["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        cfg.write_text(json.dumps(data))
    elif edit == "pickle_only":
        from safetensors.torch import load_file

        for f in (dst / "unet").glob("*.safetensors"):
            torch.save(load_file(f), dst / "unet" / "diffusion_pytorch_model.bin")
            f.unlink()
    return str(dst)


# Each case: id -> (function of (tmp, model) giving argv, regex the error line must match).
Case = Callable[[Path, Path], list[str]]


def gen(*extra: str) -> Case:
    def argv(tmp: Path, model: Path) -> list[str]:
        out = [a.replace("{tmp}", str(tmp)) for a in extra]
        return [
            "generate",
            "--model",
            str(model),
            "--steps",
            "1",
            "--out",
            str(tmp / "out"),
            "--no-progress",
            *out,
        ]

    return argv


def gen_with(make: Callable[[Path], str], *extra: str) -> Case:
    """``generate`` with an input file made by ``make(tmp)`` substituted for ``{input}``."""

    def argv(tmp: Path, model: Path) -> list[str]:
        path = make(tmp)
        return gen(*[a.replace("{input}", path) for a in extra])(tmp, model)

    return argv


def whatif(make: Callable[[Path], str], *extra: str) -> Case:
    def argv(tmp: Path, model: Path) -> list[str]:
        return [
            "whatif", make(tmp), "--model", str(model), "--steps", "1", "--out", str(tmp / "out"), "--no-progress",
            *extra,
        ]  # fmt: skip

    return argv


def with_model(edit: str) -> Case:
    def argv(tmp: Path, model: Path) -> list[str]:
        return gen("a forest")(tmp, Path(bad_model(tmp, model, edit)))

    return argv


def tif_input(tmp: Path) -> str:
    return str(georef_tif(tmp / "in.tif"))


def jsonl(tmp: Path, line: str | bytes) -> str:
    return prompts(tmp / "p.jsonl", line)


def _binary(path: Path) -> str:
    path.write_bytes(bytes(range(255, -1, -1)) * 4)  # starts with bytes that are not UTF-8
    return str(path)


def _karpathy_config(tmp: Path) -> str:
    """A curation config whose Karpathy caption file has 'sentences' as a string, not a list."""
    (tmp / "images").mkdir()
    small_png(tmp / "images" / "a.png")
    ann = {"images": [{"filename": "a.png", "split": "train", "sentences": "a forest"}]}
    (tmp / "caps.json").write_text(json.dumps(ann))
    cfg = tmp / "kp.yaml"
    cfg.write_text(
        f"sources:\n  - name: kp\n    kind: karpathy\n    annotations: {tmp / 'caps.json'}\n    root: {tmp / 'images'}\n"
    )
    return str(cfg)


CASES: dict[str, tuple[Case, str]] = {
    # path traversal
    "name-dotdot": (gen("forest", "--name", "../escaped"), r"--name '\.\./escaped'.*not a path"),
    "name-absolute": (gen("forest", "--name", "{tmp}/abs"), r"--name .*not a path"),
    "name-hidden": (gen("forest", "--name", ".hidden"), r"must not start with '\.'"),
    "jsonl-name-dotdot": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "name": "../../evil"}'), "--prompts", "{input}"),
        r"p\.jsonl:1: \"name\".*not a path",
    ),
    # guidance
    "guidance-text-inf": (gen("forest", "--guidance-text", "inf"), r"--guidance-text inf: .*finite"),
    "guidance-text-1e308": (gen("forest", "--guidance-text", "1e308"), r"--guidance-text 1e\+308.*limit"),
    "guidance-meta-inf": (gen("forest", "--guidance-meta", "inf"), r"--guidance-meta inf: .*finite"),
    "guidance-text-nan": (gen("forest", "--guidance-text", "nan"), r"--guidance-text nan"),
    "guidance-negative": (gen("forest", "--guidance-text", "-2"), r"--guidance-text -2"),
    # --like
    "like-jpeg": (
        gen_with(lambda t: str(small_png(t / "ref.jpg")), "forest", "--like", "{input}"),
        r"--like .*ref\.jpg.*(no CRS|georeferenced)",
    ),
    "like-no-crs": (
        gen_with(lambda t: str(georef_tif(t / "nocrs.tif", crs=False)), "forest", "--like", "{input}"),
        r"--like .*nocrs\.tif: has no CRS",
    ),
    "like-garbage": (
        gen_with(lambda t: prompts(t / "g.tif", b"\x00garbage"), "forest", "--like", "{input}"),
        r"g\.tif",
    ),
    # windows
    "overlap-above-window": (
        gen("forest", "--window", "8", "--overlap", "100"),
        r"--overlap 100: .*--window 8",
    ),
    "overlap-negative": (gen("forest", "--overlap", "-1"), r"--overlap -1"),
    # prompts files
    "jsonl-float-seed": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "seed": 1.5}'), "--prompts", "{input}"),
        r"p\.jsonl:1: \"seed\"",
    ),
    "jsonl-bool-seed": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "seed": true}'), "--prompts", "{input}"),
        r"p\.jsonl:1: \"seed\"",
    ),
    "jsonl-text-seed": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "seed": "abc"}'), "--prompts", "{input}"),
        r"p\.jsonl:1: \"seed\"",
    ),
    "jsonl-list-prompt": (
        gen_with(lambda t: jsonl(t, '{"prompt": ["a", "b"]}'), "--prompts", "{input}"),
        r"\"prompt\" must be a string",
    ),
    "jsonl-extra-key": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "sed": 3}'), "--prompts", "{input}"),
        r"unknown key.*'sed'",
    ),
    "jsonl-not-object": (
        gen_with(lambda t: jsonl(t, '# c\n{"prompt": "x"}\n{]'), "--prompts", "{input}"),
        r"p\.jsonl:3: invalid JSON",
    ),
    "jsonl-bad-metadata": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "metadata": {"gsd_m": -1}}'), "--prompts", "{input}"),
        r"p\.jsonl:1: ",
    ),
    "jsonl-metadata-list": (
        gen_with(lambda t: jsonl(t, '{"prompt": "x", "metadata": [1]}'), "--prompts", "{input}"),
        r"\"metadata\" must be an object",
    ),
    "prompts-binary": (
        gen_with(lambda t: jsonl(t, b"\x89PNG\r\n\x1a\n\x00\x00"), "--prompts", "{input}"),
        r"p\.jsonl:\d+: binary data",
    ),
    "prompts-latin1": (
        gen_with(lambda t: jsonl(t, "forest\nfor\u00eat\n".encode("latin-1")), "--prompts", "{input}"),
        r"p\.jsonl:2: not UTF-8",
    ),
    "prompts-empty": (
        gen_with(lambda t: jsonl(t, "\n# only a comment\n"), "--prompts", "{input}"),
        r"no prompts",
    ),
    "prompts-missing": (gen("--prompts", "{tmp}/nope.txt"), r"no such file"),
    # limits
    "steps-too-many": (gen("forest", "--steps", "5000"), r"--steps 5000: .*limit.*--allow-large"),
    "ddim-2000": (
        gen("forest", "--scheduler", "ddim", "--steps", "2000", "--allow-large"),
        r"--steps 2000: .*trained with 1000",
    ),
    "size-huge": (gen("forest", "--size", "100000"), r"--size: 100000x100000 .*memory.*disk.*--allow-large"),
    "n-huge": (gen("forest", "--n", "100000"), r"--n 100000: .*limit"),
    "seed-huge": (gen("forest", "--seed", str(2**70)), r"--seed"),
    "control-png-bomb": (
        gen_with(
            lambda t: prompts(t / "bomb.png", png_header(100_000, 100_000)),
            "forest",
            "--control",
            "canny={input}",
        ),
        r"bomb\.png: .*(too many pixels|above the input limit)",
    ),
    "control-png-12000": (
        gen_with(
            lambda t: prompts(t / "big.png", png_header(12_000, 12_000)),
            "forest",
            "--control",
            "canny={input}",
        ),
        r"big\.png: 12000x12000 pixels is above the input limit",
    ),
    "control-png-band5": (
        gen_with(
            lambda t: str(small_png(t / "c.png", channels=1)), "forest", "--control", "height={input}:5"
        ),
        r"c\.png: band 5 asked for",
    ),
    "control-geojson-bad-geometry": (
        gen_with(
            lambda t: prompts(
                t / "b.geojson",
                json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "abc"}}),
            ),
            "forest",
            "--lat",
            "47",
            "--lon",
            "-99",
            "--gsd",
            "1",
            "--control",
            "footprints={input}",
        ),
        r"b\.geojson: feature 0 has an invalid geometry",
    ),  # fmt: skip
    # output folder
    "out-is-file": (
        gen_with(lambda t: prompts(t / "f", "x"), "forest", "--out", "{input}"),
        r"--out .*: is a file",
    ),
    "out-under-file": (
        gen_with(lambda t: prompts(t / "f", "x") + "/sub", "forest", "--out", "{input}"),
        r"is under the file",
    ),
    "out-proc": (gen("forest", "--out", "/proc/rsgen-out"), r"--out /proc/rsgen-out: a system folder"),
    # models
    "model-index-garbage": (with_model("garbage"), r"model_index\.json is not readable JSON"),
    "model-index-list": (with_model("list"), r"must be a JSON object, found list"),
    "model-index-empty": (with_model("empty"), r"no '_class_name'"),
    "model-custom-class": (with_model("custom_class"), r"'unet' comes from 'my_unet_module'"),
    "model-custom-pipeline": (with_model("custom_pipeline"), r"'custom_pipeline' asks to run code"),
    "model-auto-map": (with_model("auto_map"), r"'auto_map' asks to run code"),
    "model-pickle-only": (with_model("pickle_only"), r"only pickled weights.*--trust-pickle"),
    # what-if inputs and sweeps
    "whatif-garbage": (
        whatif(lambda t: prompts(t / "g.png", b"garbage" * 10), "--sweep", "month=1,7"),
        r"g\.png: not a readable image",
    ),
    "whatif-zero-byte": (
        whatif(lambda t: prompts(t / "z.png", b""), "--sweep", "month=1,7"),
        r"z\.png: not a readable image",
    ),
    "whatif-truncated": (
        whatif(
            lambda t: prompts(t / "t.png", small_png(t / "full.png", 64).read_bytes()[:200]),
            "--sweep",
            "month=1,7",
        ),
        r"t\.png: image data cannot be decoded",
    ),
    "whatif-binary-tif": (
        whatif(lambda t: prompts(t / "b.tif", bytes(range(256)) * 4), "--sweep", "month=1,7"),
        r"b\.tif: not a readable raster",
    ),
    "sweep-month-abc": (
        whatif(tif_input, "--sweep", "month=abc"),
        r"sweep 'month=abc': 'abc' is not a number",
    ),
    "sweep-gsd-abc": (whatif(tif_input, "--sweep", "gsd=abc"), r"'abc' is not a number"),
    "sweep-year-nan": (whatif(tif_input, "--sweep", "year=nan"), r"'nan' is not a finite number"),
    "sweep-month-inf": (whatif(tif_input, "--sweep", "month=inf"), r"'inf' is not a finite number"),
    "sweep-year-dots": (whatif(tif_input, "--sweep", "year=1.2.3..5"), r"'1\.2\.3' is not a number"),
    "sweep-month-13": (whatif(tif_input, "--sweep", "month=13"), r"month '13' must be 1\.\.12"),
    "sweep-too-long": (whatif(tif_input, "--sweep", "year=0..100000"), r"100001 values, above the limit"),
    "sweep-gsd-tiny": (
        whatif(tif_input, "--sweep", "gsd=0.005"),
        r"--sweep gsd=0\.005: 6400x6400 .*above the limit",
    ),
    "whatif-strength-nan": (whatif(tif_input, "--sweep", "month=1", "--strength", "nan"), r"--strength nan"),
    "whatif-name-traversal": (whatif(tif_input, "--sweep", "month=1", "--name", "../up"), r"not a path"),
    # evaluate
    "evaluate-one-image": (
        lambda t, m: ["evaluate", "--images", str(small_png(t / "one.png").parent), "--out", str(t / "out")],
        r"--images .*: 1 image\(s\); evaluation needs at least 2",
    ),
    # training and curation inputs
    "train-binary-manifest": (
        lambda t, m: [
            "train",
            "--config",
            "tiny",
            "--manifest",
            _binary(t / "m.jsonl"),
            "--set",
            f"output_dir={t / 'run'}",
        ],  # fmt: skip
        r"m\.jsonl:1: not UTF-8 text",
    ),
    "curate-karpathy-sentences-not-a-list": (
        lambda t, m: ["curate", "--config", _karpathy_config(t), "--out", str(t / "cur"), "--no-progress"],
        r"images\[0\] must be an object whose 'sentences' is a list",
    ),
    # argument parsing
    "argparse-bad-int": (gen("forest", "--steps", "abc"), r"argument --steps: invalid int value: 'abc'"),
    "argparse-unknown-option": (gen("forest", "--bogus"), r"unrecognized arguments: --bogus"),
}


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    """(exit code, stderr lines) of an in-process ``rsgen`` call; argparse's SystemExit becomes its code."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err.splitlines()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line(case, model, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    make_argv, pattern = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    argv = make_argv(work, model)
    before = files_under(tmp_path)
    code, err = run_cli(argv, capsys)
    assert code == 2, f"{case}: exit {code}, stderr {err}"
    assert not any("Traceback" in line for line in err)
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, f"{case}: {err}"
    assert err[-1] == errors[0], f"{case}: the error line must be the last line: {err}"
    import re

    assert re.search(pattern, errors[0]), f"{case}: {errors[0]!r} does not match {pattern!r}"
    # nothing written outside the work folder (model copies and inputs live there)
    new = files_under(tmp_path) - before
    assert all(work in p.parents for p in new), f"{case}: wrote {new}"
    out = work / "out"
    if out.is_dir():
        assert not [p for p in out.iterdir() if p.suffix in (".tif", ".png")], f"{case}: wrote an image"


def test_corpus_size() -> None:
    """docs/reliability.md quotes this count."""
    assert len(CASES) >= 64
