"""Image lists with human captions (UCM / AID-RSICD layouts), the per-class held-out split, Sydney's Karpathy
layout with an image folder, plain folders for `rsgen curate PATH`, and flips / rotations in the dataset."""

import csv
import json
import re
from collections import Counter

import numpy as np
import pytest
from data_fixtures import karpathy_json, save_jpeg, textured
from PIL import Image

from rsgen.cli import main
from rsgen.config import load_config
from rsgen.data.curate import curate
from rsgen.data.curate_config import CurateConfig, folder_config
from rsgen.data.dataset import ImageCaptionDataset, random_orientation
from rsgen.data.manifest import read_manifest
from rsgen.data.readers import ImageListReader, KarpathyReader, read_image_list
from rsgen.data.splits import heldout_by_class
from rsgen.errors import ConfigError, DataError


def _aid_like(root):
    """AID-RSICD layout: 2 classes x 10 images, 4 per class with 5 (partly repeated) captions, 6 label-only."""
    listed, extra = [], []
    for cls in ("Stadium", "Viaduct"):
        for i in range(10):
            rel = f"images/{cls}/{cls.lower()}_{i}.jpg"
            save_jpeg(root / rel, textured(len(cls) * 100 + i, 48))
            if i < 4:
                caps = [f"a big {cls.lower()} number {i} ."] * 3 + ["many cars are parked nearby .", " "]
                listed.append(
                    {"path": rel, "label": cls, "rsicd_file": f"{cls.lower()}_{i}.jpg", "captions": caps}
                )
            else:
                extra.append((rel, cls))
    (root / "captions_val.json").write_text(json.dumps(listed))
    with (root / "labels_extra.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(extra)
    return [root / "captions_val.json", root / "labels_extra.csv"]


def test_image_list_keeps_human_captions_and_holds_out_each_class(tmp_path):
    lists = _aid_like(tmp_path)
    reader = ImageListReader("aid", tmp_path, lists, split="train", heldout=0.2)
    recs = list(reader.records())
    assert len(recs) == 20
    held = Counter(r["label"] for r in recs if r["split"] == "val")
    assert held == {"Stadium": 2, "Viaduct": 2} and {r["split"] for r in recs} == {"train", "val"}
    again = [
        r["split"]
        for r in ImageListReader("other_name", tmp_path, lists, split="train", heldout=0.2).records()
    ]
    assert again == [r["split"] for r in recs]  # a function of the files, not of the source's name
    samples = list(ImageListReader("aid", tmp_path, lists, split="train"))
    human = [s for s in samples if s["record"]["caption_source"] == "human"]
    written = [s for s in samples if s["record"]["caption_source"] == "written"]
    assert len(human) == 8 and len(written) == 12
    # repeats and blank captions collapse; the words are the annotator's; no GSD is known, so none is written
    assert human[0]["captions"] == ["A big stadium number 0.", "Many cars are parked nearby."]
    assert all(s["metadata"].gsd_m is None for s in samples)
    assert all(len(s["captions"]) == 5 and not re.search(r"\d m\b", " ".join(s["captions"])) for s in written)


def test_human_captions_get_the_writers_gsd_phrases_where_the_gsd_is_known(tmp_path):
    items = [
        {
            "path": f"im/{i}.jpg",
            "label": "forest",
            "captions": [f"trees number {j} of {i} ." for j in range(5)],
        }
        for i in range(8)
    ]
    for i in range(8):
        save_jpeg(tmp_path / "im" / f"{i}.jpg", textured(i, 32))
    (tmp_path / "val.json").write_text(json.dumps(items))
    caps = [
        c
        for s in ImageListReader("ucm", tmp_path, [tmp_path / "val.json"], metadata={"gsd_m": 0.3048})
        for c in s["captions"]
    ]
    assert len(caps) == 40 and all(c.startswith("Trees number") for c in caps)
    with_gsd = [c for c in caps if "0.3 m" in c or "0.3 metres" in c]
    assert 4 <= len(with_gsd) <= 30  # some, not all (the writer's metadata probability)
    plain = [
        c
        for s in ImageListReader(
            "ucm", tmp_path, [tmp_path / "val.json"], metadata={"gsd_m": 0.3048}, caption_metadata=False
        )
        for c in s["captions"]
    ]
    assert all("0.3" not in c for c in plain)


def test_heldout_by_class_is_exact_per_class_and_stable():
    keys = [f"f{i}.jpg" for i in range(50)]
    labels = ["a"] * 30 + ["b"] * 20
    held = heldout_by_class(keys, labels, 0.2)
    assert Counter(labels[keys.index(k)] for k in held) == {"a": 6, "b": 4}
    more = heldout_by_class([*keys, "new.jpg"], [*labels, "b"], 0.2)
    assert len(held ^ more) <= 2  # adding a file moves at most one other of its class
    with pytest.raises(DataError, match="fraction"):
        heldout_by_class(keys, labels, 1.0)


def test_image_list_formats_and_errors(tmp_path):
    (tmp_path / "m.json").write_text(
        json.dumps({"a.jpg": "one", "b.png": ["two", "three"], "c.jpg": {"label": "x"}})
    )
    assert read_image_list(tmp_path / "m.json") == [
        ("a.jpg", None, ["one"]),
        ("b.png", None, ["two", "three"]),
        ("c.jpg", "x", []),
    ]
    (tmp_path / "c.csv").write_text("file,caption,label\na.jpg,first,Forest\na.jpg,second,Forest\n")
    assert read_image_list(tmp_path / "c.csv") == [
        ("a.jpg", "Forest", ["first"]),
        ("a.jpg", "Forest", ["second"]),
    ]
    (tmp_path / "bad.csv").write_text("name,caption\na.jpg,x\n")
    with pytest.raises(DataError, match="no path/file"):
        read_image_list(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a list of records"):
        read_image_list(tmp_path / "bad.json")


def test_sydney_karpathy_layout_with_an_image_folder(tmp_path):
    """Sydney-captions are text only here; a user's image folder (1.tif ... with Karpathy JSON) is read."""
    for i in (1, 2, 3):
        save_jpeg(tmp_path / "x.jpg", textured(i))
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{i}.tif").write_bytes((tmp_path / "x.jpg").read_bytes())
    ann = karpathy_json(
        tmp_path / "sydney.json",
        [
            ("1.tif", ["A residential area with houses arranged neatly .", "some roads go through"], "train"),
            ("2.tif", ["A lot of boats are docked in the harbor ."], "val"),
            ("3.tif", ["An airport with runways ."], "test"),
            ("4.tif", ["this image is missing ."], "train"),
        ],
    )
    reader = KarpathyReader(
        "sydney", ann, tmp_path / "images", metadata={"gsd_m": 0.5}, caption_metadata=False
    )
    samples = list(reader)
    assert [s["record"]["split"] for s in samples] == ["train", "val", "test"] and reader.skipped == {
        "missing": 1
    }
    assert samples[0]["captions"] == [
        "A residential area with houses arranged neatly.",
        "Some roads go through.",
    ]
    assert samples[1]["metadata"].gsd_m == 0.5


def _folder(root, captions=None):
    for i in range(6):
        sub = root if captions is not None else root / ("Forest" if i % 2 else "River")
        save_jpeg(sub / f"img_{i}.jpg", textured(300 + i))
    bad = root / ("" if captions is not None else "Forest") / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    if captions is not None:  # same stem as a listed image, but not listed itself
        Image.fromarray(textured(400)).save(root / "img_0.png")
    if captions == "json":
        (root / "captions.json").write_text(
            json.dumps(
                {f"img_{i}.jpg": [f"a field {i} next to a road", f"field {i}"] for i in range(5)}
                | {"broken.jpg": "x"}
            )
        )
    elif captions == "csv":
        rows = "".join(f"img_{i}.jpg,a field {i} next to a road\n" for i in range(5))
        (root / "captions.csv").write_text("file,caption\n" + rows + "broken.jpg,x\n")
    return root


@pytest.mark.parametrize("layout", ["classes", "json", "csv"])
def test_cli_curates_a_plain_folder(tmp_path, capsys, layout):
    root = _folder(tmp_path / "in", None if layout == "classes" else layout)
    out = tmp_path / "out"
    args = [
        "curate",
        str(root),
        "--out",
        str(out),
        "--gsd",
        "0.5",
        "--lat",
        "45.7",
        "--lon",
        "4.8",
        "--date",
        "2021-06",
        "--no-progress",
        "--set",
        "report=false",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    recs = read_manifest(out / "manifest.jsonl")
    assert recs[0]["metadata"] == {"gsd_m": 0.5, "lat": 45.7, "lon": 4.8, "date": "2021-06"}
    if layout == "classes":
        assert len(recs) == 6 and {r["label"] for r in recs} == {"Forest", "River"}
        assert "corrupt 1" in printed and all(r["caption_source"] == "written" for r in recs)
    else:  # img_5.jpg and img_0.png are named in no caption list: counted, not kept
        assert len(recs) == 5 and "corrupt 1" in printed and "no_caption 2" in printed
        assert all(r["caption_source"] == "human" and r["captions"][0].startswith("A field") for r in recs)


def test_folder_config_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such folder"):
        folder_config(tmp_path / "missing")
    (tmp_path / "loose").mkdir()
    save_jpeg(tmp_path / "loose" / "a.jpg", textured(1))
    with pytest.raises(ConfigError, match="neither captions.json nor captions.csv"):
        folder_config(tmp_path / "loose")
    cfg = load_config(CurateConfig, folder_config(tmp_path / "loose", label="Forest"))
    assert cfg.sources[0].kind == "class_folder" and cfg.sources[0].label == "Forest"
    assert main(["curate", "--out", str(tmp_path / "o"), "--gsd", "1"]) == 2
    assert "give PATH" in capsys.readouterr().err
    assert main(["curate", str(tmp_path / "loose"), "--config", "curated", "--out", str(tmp_path / "o")]) == 2
    assert "not both" in capsys.readouterr().err
    bad_date = folder_config(tmp_path / "loose", label="Forest", metadata={"date": "June"})
    with pytest.raises(DataError, match="source loose: metadata"):
        curate(load_config(CurateConfig, bad_date | {"report": False}), tmp_path / "o2", show_progress=False)


def test_random_orientation_and_dataset_option(tmp_path):
    a = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    seen = {random_orientation(a, np.random.default_rng(s)).tobytes() for s in range(200)}
    assert len(seen) == 8  # the 8 symmetries of the square
    r = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    outs = {random_orientation(r, np.random.default_rng(s)).tobytes() for s in range(100)}
    assert len(outs) == 4 and all(np.frombuffer(o, np.uint8).size == r.size for o in outs)
    save_jpeg(tmp_path / "i.jpg", textured(5, 32))
    recs = [{"id": "a", "path": "i.jpg", "captions": ["x"], "split": "train"}]
    plain = ImageCaptionDataset(recs, image_size=32, root=tmp_path)[0]["pixel_values"]
    aug = ImageCaptionDataset(recs, image_size=32, root=tmp_path, flips_rotations=True)
    views = set()
    for epoch in range(12):
        aug.set_epoch(epoch)
        v = aug[0]["pixel_values"]
        assert any(torch_equal(v, o) for o in orientations(plain))
        views.add(v.numpy().tobytes())
    assert len(views) > 2


def orientations(t):
    import torch

    return [torch.flip(torch.rot90(t, k, dims=(1, 2)), dims=f) for k in range(4) for f in ((), (2,))]


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)
