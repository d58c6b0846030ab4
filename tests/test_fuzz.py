"""Property-based fuzzing (hypothesis) of the input parsers: metadata, sweeps, prompts files, CLI options and
the GeoTIFF / image readers. Every input must give either a result or an RsgenError (CLI: exit 0, or exit 2
with one ``error:`` line), never another exception. Example counts are small for CI; the number of inputs
tried is printed at the end of the module (docs/reliability.md quotes it)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipelines_tiny import tiny_pipeline

from rsgen.cli import main
from rsgen.cli.jobs import read_prompts_file
from rsgen.errors import RsgenError
from rsgen.io import GeoReference, read_geotiff, write_geotiff
from rsgen.metadata import AcquisitionDate, Metadata, read_geotiff_metadata
from rsgen.pipelines.whatif import SWEEP_FIELDS, parse_sweep, variants
from rsgen.safety import read_image_rgb

TRIED: Counter[str] = Counter()
# CI runs a fixed, small sample; RSGEN_FUZZ_EXAMPLES=N runs N random examples per parser (N/2 per CLI test)
EXAMPLES = int(os.environ.get("RSGEN_FUZZ_EXAMPLES", "0")) or 100
RANDOM = "RSGEN_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, suppress_health_check=[HealthCheck.too_slow]
)
CLI_FUZZ = settings(
    max_examples=max(EXAMPLES * 3 // 5, 1),
    deadline=None,
    derandomize=not RANDOM,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", autouse=True)
def report_counts():  # type: ignore[no-untyped-def]
    yield
    print(f"\nfuzz inputs tried: {dict(TRIED)} total {sum(TRIED.values())}")


@pytest.fixture(scope="module")
def workdir() -> Path:
    with tempfile.TemporaryDirectory(prefix="rsgen-fuzz-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def model(workdir) -> Path:
    torch.set_num_threads(1)
    path = workdir / "model"
    tiny_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tif(workdir) -> Path:
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")
    georef = GeoReference.from_latlon_gsd(47.0, -99.0, 1.0, 32, 32)
    return write_geotiff(workdir / "tile_20190704.tif", img, georef, layout="HWC")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["gsd_m", "gsd", "lat", "lon", "latlon", "date", "cloud_cover", "cloud", "off_nadir_deg", "sensor", "extra",
     "timestamp", "latitude", "year"]
)  # fmt: skip


@FUZZ
@given(st.dictionaries(st.one_of(field_names, st.text(max_size=8)), json_values, max_size=6))
def test_metadata_from_dict(data) -> None:  # type: ignore[no-untyped-def]
    TRIED["metadata dict"] += 1
    try:
        meta = Metadata.from_dict(data)
    except RsgenError:
        return
    # the typed fields of a parsed Metadata are valid JSON (``extra`` is carried as given; writing a non-finite
    # extra value is a DataError of rsgen.io.json_text)
    json.dumps({k: v for k, v in meta.to_dict().items() if k != "extra"}, allow_nan=False, default=str)


number_text = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["0.5m", "15%", "1e308", "-0", "nan", "inf", "47,-99", "2019-07-04", "2019-13", "0x10"]),
)


@FUZZ
@given(
    gsd=st.none() | number_text,
    latlon=st.none() | number_text,
    date=st.none() | number_text,
    cloud=st.none() | number_text,
)
def test_metadata_from_cli(gsd, latlon, date, cloud) -> None:  # type: ignore[no-untyped-def]
    TRIED["metadata options"] += 1
    with contextlib.suppress(RsgenError):
        Metadata.from_cli(gsd=gsd, latlon=latlon, date=date, cloud=cloud)


@FUZZ
@given(st.text(max_size=30))
def test_acquisition_date_parse(text) -> None:  # type: ignore[no-untyped-def]
    TRIED["dates"] += 1
    with contextlib.suppress(RsgenError):
        AcquisitionDate.parse(text)


sweep_values = st.one_of(
    st.text(max_size=20),
    st.lists(number_text, min_size=1, max_size=4).map(",".join),
    st.tuples(number_text, number_text, st.none() | number_text).map(
        lambda t: f"{t[0]}..{t[1]}" + (f":{t[2]}" if t[2] is not None else "")
    ),
)


@FUZZ
@given(st.one_of(st.sampled_from(SWEEP_FIELDS), st.text(max_size=6)), sweep_values)
def test_sweeps(field, values) -> None:  # type: ignore[no-untyped-def]
    TRIED["sweeps"] += 1
    base = Metadata(gsd_m=1.0, lat=47.0, lon=-99.0, date="2019-07-04")
    try:
        name, parsed = parse_sweep(f"{field}={values}", max_values=64)
        assert 1 <= len(parsed) <= 64
        variants(base, "a forest", name, parsed)
    except RsgenError:
        pass


records = st.dictionaries(
    st.one_of(st.sampled_from(["prompt", "metadata", "seed", "name"]), st.text(max_size=6)),
    json_values,
    max_size=5,
)
prompt_lines = st.one_of(
    records.map(lambda r: json.dumps(r)),
    st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t),
)


@FUZZ
@given(
    st.one_of(
        st.lists(prompt_lines, max_size=5).map(lambda ls: "\n".join(ls).encode()), st.binary(max_size=80)
    )
)
def test_prompts_files(workdir, content) -> None:  # type: ignore[no-untyped-def]
    TRIED["prompts files"] += 1
    path = workdir / "prompts.jsonl"
    path.write_bytes(content)
    try:
        items = read_prompts_file(path)
    except RsgenError:
        return
    for item in items:  # what is accepted is typed as the job expects
        assert isinstance(item.prompt, str)
        assert item.seed is None or (type(item.seed) is int and item.seed >= 0)
        assert item.name is None or ("/" not in item.name and not item.name.startswith("."))


def one_error_line(code: int, err: str) -> None:
    TRIED[f"CLI exit {code}"] += 1
    lines = err.strip().splitlines()
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        assert lines and lines[-1].startswith("error:") and sum(x.startswith("error:") for x in lines) == 1


def run(argv: list[str], capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


option_values = {
    "--steps": st.sampled_from(["1", "2", "0", "-1", "abc", "1e3", "5000", "2.5", ""]),
    "--size": st.sampled_from(
        ["8", "16", "24x16", "16x8", "3", "0", "-3", "abc", "100000", "16x", "x16", "8x8x8"]
    ),
    "--n": st.sampled_from(["1", "2", "0", "-1", "1000", "x"]),
    "--seed": st.sampled_from(["0", "7", "-1", str(2**64), "1.5", "x"]),
    "--guidance-text": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=5)
    ),
    "--guidance-meta": st.one_of(st.floats(-10, 100).map(str), st.sampled_from(["inf", "nan", "-inf"])),
    "--window": st.sampled_from(["1", "2", "4", "8", "-2", "x"]),
    "--overlap": st.sampled_from(["0", "1", "3", "100", "-1"]),
    "--name": st.text(max_size=12),
    "--format": st.sampled_from(["tif", "png", "tif,png", "jpg", ",", "TIFF"]),
    "--scheduler": st.sampled_from(["ddim", "euler", "dpm++", "nope", ""]),
    "--gsd": number_text,
    "--latlon": number_text,
    "--date": number_text,
    "--cloud": number_text,
}


@CLI_FUZZ
@given(st.dictionaries(st.sampled_from(sorted(option_values)), st.none(), min_size=1, max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: option_values[k] for k in keys})
))  # fmt: skip
def test_generate_options(model, workdir, capsys, options) -> None:  # type: ignore[no-untyped-def]
    TRIED["generate option sets"] += 1
    options.setdefault("--steps", "1")
    options.setdefault("--size", "16")
    argv = ["generate", "a forest", "--model", str(model), "--out", str(workdir / "out"), "--no-progress"]
    for key, value in options.items():
        argv.append(f"{key}={value}")
    code, err = run(argv, capsys)
    one_error_line(code, err)


@CLI_FUZZ
@given(st.sampled_from(SWEEP_FIELDS), sweep_values, st.sampled_from(["0.6", "0", "1", "nan", "2", "x"]))
def test_whatif_options(model, workdir, tif, capsys, field, values, strength) -> None:  # type: ignore[no-untyped-def]
    TRIED["whatif option sets"] += 1
    argv = [
        "whatif", str(tif), "--model", str(model), "--out", str(workdir / "wout"), "--no-progress", "--steps", "1",
        f"--sweep={field}={values}", f"--strength={strength}",
    ]  # fmt: skip
    code, err = run(argv, capsys)
    one_error_line(code, err)


def _mutations():  # type: ignore[no-untyped-def]
    """(kind, position fraction, byte) edits of a file: flip a byte, truncate, or insert garbage."""
    return st.lists(
        st.tuples(st.sampled_from(["flip", "truncate", "insert"]), st.floats(0, 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )


def _mutate(data: bytes, edits) -> bytes:  # type: ignore[no-untyped-def]
    buf = bytearray(data)
    for kind, where, byte in edits:
        i = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if kind == "flip" and buf:
            buf[i] ^= byte or 1
        elif kind == "truncate":
            del buf[i:]
        else:
            buf[i:i] = bytes([byte]) * 16
    return bytes(buf)


@FUZZ
@given(_mutations())
def test_geotiff_reader(workdir, tif, edits) -> None:  # type: ignore[no-untyped-def]
    TRIED["mutated GeoTIFFs"] += 1
    path = workdir / "mutated.tif"
    path.write_bytes(_mutate(tif.read_bytes(), edits))
    for read in (read_geotiff, read_geotiff_metadata):
        with contextlib.suppress(RsgenError):
            read(path)


@FUZZ
@given(_mutations())
def test_image_reader(workdir, edits) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    TRIED["mutated PNGs"] += 1
    src = workdir / "src.png"
    if not src.exists():
        Image.fromarray((np.random.default_rng(1).random((24, 24, 3)) * 255).astype("uint8")).save(src)
    path = workdir / "mutated.png"
    path.write_bytes(_mutate(src.read_bytes(), edits))
    try:
        arr = read_image_rgb(path)
    except RsgenError:
        return
    assert arr.ndim == 3 and arr.shape[2] == 3
