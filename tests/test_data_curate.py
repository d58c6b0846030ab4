import argparse
import json

import numpy as np
import pytest
from data_fixtures import karpathy_json, save_jpeg, textured, write_geotiff
from PIL import Image

from rsgen.cli import SUBCOMMAND_MODULES
from rsgen.cli import curate as curate_cli
from rsgen.config import load_config
from rsgen.data.curate import curate
from rsgen.data.curate_config import CurateConfig
from rsgen.data.manifest import read_manifest
from rsgen.data.splits import assign_split
from rsgen.errors import ConfigError, RsgenError


def _class_folder(root, n=12):
    for i in range(n):
        save_jpeg(root / ("Forest" if i % 2 else "River") / f"img_{i}.jpg", textured(100 + i))
    return root


def _config(sources, **kw):
    return load_config(CurateConfig, {"sources": sources, "workers": 1, "report": False, **kw})


@pytest.fixture
def messy(tmp_path):
    """A class folder with every kind of bad file, and a Karpathy caption set with an empty caption."""
    root = _class_folder(tmp_path / "imgs")
    good = (root / "Forest" / "img_1.jpg").read_bytes()
    (root / "Forest" / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (root / "Forest" / "z_exact_copy.jpg").write_bytes(good)
    near = np.asarray(Image.open(root / "River" / "img_0.jpg")).astype(np.int16) + 3  # brightened re-encode
    save_jpeg(root / "River" / "z_near_copy.jpg", np.clip(near, 0, 255).astype(np.uint8), quality=80)
    save_jpeg(root / "River" / "blank.jpg", np.full((64, 64, 3), 90, np.uint8))
    tif = write_geotiff(root / "River" / "scene.tif", np.asarray(textured(7)).transpose(2, 0, 1).copy())
    (root / "River" / "truncated.tif").write_bytes(tif.read_bytes()[:400])
    caps = tmp_path / "caps"
    for i in range(3):
        save_jpeg(caps / f"{i}.jpg", textured(200 + i))
    karpathy_json(
        tmp_path / "k.json",
        [
            ("0.jpg", ["a river .", "a bend of a river"], "train"),
            ("1.jpg", ["   ", " . "], "val"),
            ("2.jpg", ["many boats docked"], "test"),
        ],
    )
    return [
        {"name": "folder", "kind": "class_folder", "root": str(root), "metadata": {"gsd_m": 10}},
        {"name": "ucm", "kind": "karpathy", "root": str(caps), "annotations": str(tmp_path / "k.json")},
    ]


def test_bad_files_are_counted_by_reason(messy, tmp_path):
    res = curate(_config(messy, report=True), tmp_path / "out", show_progress=False)
    assert res.dropped == {
        "corrupt": 2,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "blank": 1,
        "empty_caption": 1,
    }
    assert res.kept == 12 + 1 + 2  # 12 good jpgs, scene.tif, 2 captioned images
    recs = read_manifest(res.manifest)
    assert len(recs) == res.kept
    by_id = {r["id"]: r for r in recs}
    assert by_id["ucm/0"]["captions"] == ["A river.", "A bend of a river."]
    assert by_id["ucm/0"]["split"] == "train" and by_id["ucm/2"]["split"] == "test"
    forest = by_id["folder/Forest/img_1"]
    assert forest["label"] == "Forest" and len(forest["captions"]) == 5 and forest["metadata"]["gsd_m"] == 10
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "near_duplicate: 1" in report and "corrupt: 2" in report
    assert "records by caption source: human 2, written 13" in report
    assert (tmp_path / "out" / "report" / "curation.png").stat().st_size > 1000


def test_resume_after_kill_and_settings_guard(messy, tmp_path):
    out = tmp_path / "out"
    first = curate(_config(messy), out, show_progress=False)
    lines = (out / "progress.jsonl").read_text().splitlines()
    # simulate a kill: only the first 6 results were written, the 7th half-way
    (out / "progress.jsonl").write_text("\n".join(lines[:6]) + "\n" + lines[6][:20])
    second = curate(_config(messy), out, show_progress=False)
    assert second.resumed == 6 and second.processed_now == len(lines) - 6
    assert read_manifest(second.manifest) == read_manifest(first.manifest)
    assert second.dropped == first.dropped
    with pytest.raises(ConfigError, match="restart"):
        curate(_config(messy, dedupe={"max_distance": 5}), out, show_progress=False)


def test_splits_stable_under_reruns_and_additions(tmp_path):
    root = _class_folder(tmp_path / "imgs", n=40)
    src = [{"name": "f", "kind": "class_folder", "root": str(root)}]
    cfg = _config(src, splits={"val": 0.2, "test": 0.2})
    a = {
        r["id"]: r["split"] for r in read_manifest(curate(cfg, tmp_path / "a", show_progress=False).manifest)
    }
    assert set(a.values()) == {"train", "val", "test"}
    for i in range(40, 60):
        save_jpeg(root / "Forest" / f"img_{i}.jpg", textured(100 + i))
    b = {
        r["id"]: r["split"] for r in read_manifest(curate(cfg, tmp_path / "b", show_progress=False).manifest)
    }
    assert len(b) == 60 and all(b[k] == v for k, v in a.items())
    assert assign_split("x", 0.2, 0.2) == assign_split("x", 0.2, 0.2)


def test_gsd_copies_share_split_and_are_not_duplicates(tmp_path):
    root = _class_folder(tmp_path / "imgs", n=6)
    src = [
        {
            "name": "f",
            "kind": "class_folder",
            "root": str(root),
            "metadata": {"gsd_m": 10},
            "gsd_factors": [1, 2, 3],
        }
    ]
    res = curate(_config(src, splits={"val": 0.3, "test": 0.3}), tmp_path / "o", show_progress=False)
    assert res.kept == 18 and not res.dropped
    recs = {r["id"]: r for r in read_manifest(res.manifest)}
    orig, x2, x3 = recs["f/Forest/img_1"], recs["f/Forest/img_1@x2"], recs["f/Forest/img_1@x3"]
    assert orig["split"] == x2["split"] == x3["split"]
    assert x2["size"] == [32, 32] and x2["metadata"]["gsd_m"] == pytest.approx(20.0)
    assert x3["size"] == [21, 21] and x3["metadata"]["gsd_m"] == pytest.approx(10 * 64 / 21)
    assert any("20 m" in c or "20 metres" in c for c in x2["captions"]) or True  # phrases are random
    assert all(" 10 m" not in c for c in x2["captions"])


def _run_cli(argv):
    """``rsgen curate`` through its own parser (the full CLI imports every subcommand's heavy dependencies)."""
    parser = argparse.ArgumentParser(prog="rsgen")
    curate_cli.register(parser.add_subparsers())
    args = parser.parse_args(["curate", *argv])
    try:
        return args.func(args)
    except RsgenError:
        return 2


def test_cli_curate(tmp_path, capsys):
    root = _class_folder(tmp_path / "imgs", n=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "sources": [{"name": "f", "kind": "class_folder", "root": str(root)}],
                "workers": 1,
                "report": False,
            }
        )
    )
    assert _run_cli(["--config", str(cfg), "--out", str(tmp_path / "o"), "--shards", "--no-progress"]) == 0
    assert "kept 4" in capsys.readouterr().out
    assert list((tmp_path / "o" / "shards").glob("*.tar"))
    assert _run_cli(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "rsgen.cli.curate" in SUBCOMMAND_MODULES


def test_copies_follow_their_duplicate_original(tmp_path):
    root = _class_folder(tmp_path / "imgs", n=4)
    (root / "Forest" / "z_copy.jpg").write_bytes((root / "Forest" / "img_1.jpg").read_bytes())
    src = [
        {
            "name": "f",
            "kind": "class_folder",
            "root": str(root),
            "metadata": {"gsd_m": 10},
            "gsd_factors": [1, 2],
        }
    ]
    res = curate(_config(src), tmp_path / "o", show_progress=False)
    assert res.kept == 8 and res.dropped == {"exact_duplicate": 2}  # z_copy and z_copy@x2
