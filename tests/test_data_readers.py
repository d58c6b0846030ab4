import json

import pytest
from data_fixtures import karpathy_json, save_jpeg, textured

from rsgen.data.readers import ClassFolderReader, CocoCaptionsReader, FmowReader, KarpathyReader, label_for
from rsgen.errors import DataError


def test_class_folder_reader(tmp_path):
    for i in range(3):
        save_jpeg(tmp_path / "SeaLake" / f"SeaLake_{i}.jpg", textured(i))
    (tmp_path / "SeaLake" / "SeaLake_9.jpg").write_bytes(b"\xff\xd8junk")
    r = ClassFolderReader("e", tmp_path, metadata={"gsd_m": 10, "sensor": "Sentinel-2"}, gsd_factors=[1, 2])
    samples = list(r)
    assert len(samples) == 6 and r.skipped == {"corrupt": 2}
    s = samples[0]
    assert s["label"] == "SeaLake" and s["metadata"].sensor == "Sentinel-2" and len(s["captions"]) == 5
    assert samples[1]["record"]["id"].endswith("@x2") and samples[1]["metadata"].gsd_m == 20.0
    with pytest.raises(DataError, match="does not exist"):
        ClassFolderReader("e", tmp_path / "nope")
    with pytest.raises(DataError, match="gsd_factors"):
        ClassFolderReader("e", tmp_path, gsd_factors=[0.5])


def test_karpathy_reader_with_image_folder(tmp_path):
    for f in ("1.jpg", "201.jpg"):
        save_jpeg(tmp_path / "im" / f, textured(int(f[:-4])))
    karpathy_json(
        tmp_path / "k.json",
        [
            ("1.jpg", ["There is a piece of farmland ."], "train"),
            ("201.jpg", ["lots of boats ."], "restval"),
            ("404.jpg", ["gone ."], "test"),
        ],
    )
    r = KarpathyReader(
        "ucm", tmp_path / "k.json", tmp_path / "im", label_from="ucm_index", metadata={"gsd_m": 0.3}
    )
    samples = list(r)
    assert [s["record"]["split"] for s in samples] == ["train", "train"]
    assert samples[0]["captions"] == ["There is a piece of farmland."]
    assert samples[0]["label"] == "agricultural" and samples[1]["label"] == "baseballdiamond"
    assert r.skipped == {"missing": 1}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        list(KarpathyReader("x", tmp_path / "bad.json", tmp_path).records())


def test_coco_reader(tmp_path):
    save_jpeg(tmp_path / "square_221.jpg", textured(5))
    coco = {
        "images": [{"id": 7, "file_name": "square_221.jpg"}],
        "annotations": [
            {"image_id": 7, "caption": "some buildings are around a square ."},
            {"image_id": 7, "caption": "a square with trees ."},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    s = next(iter(CocoCaptionsReader("rsicd", tmp_path / "c.json", tmp_path, label_from="prefix")))
    assert s["label"] == "square" and len(s["captions"]) == 2 and s["captions"][0].endswith("square.")
    assert label_for("storage_tanks_12.jpg", "prefix") == "storage_tanks"
    assert label_for("x_3.jpg", r"^(\w)_") == "x"


def test_fmow_reader(tmp_path):
    d = tmp_path / "airport" / "airport_0"
    save_jpeg(d / "airport_0_1_rgb.jpg", textured(8, 80))
    info = {
        "gsd": 0.5,
        "timestamp": "2016-04-18T15:23:01Z",
        "cloud_cover": 12,
        "off_nadir_angle_dbl": 14.2,
        "raw_location": "POLYGON ((30.1 -1.9, 30.2 -1.9, 30.2 -1.8, 30.1 -1.8, 30.1 -1.9))",
        "country_code": "RWA",
        "bounding_boxes": [{"category": "airport", "box": [10, 20, 40, 30], "ID": 1}],
    }
    (d / "airport_0_1_rgb.json").write_text(json.dumps(info))
    (d / "airport_0_2_rgb.json").write_text("{broken")
    save_jpeg(d / "airport_0_2_rgb.jpg", textured(9))
    r = FmowReader("fmow", tmp_path, crop_to_box=True)
    samples = list(r)
    assert len(samples) == 1 and r.skipped == {"bad_metadata": 1}
    m = samples[0]["metadata"]
    assert (m.gsd_m, m.cloud_cover, m.off_nadir_deg) == (0.5, 0.12, 14.2)
    assert m.lat == pytest.approx(-1.85) and m.lon == pytest.approx(30.15) and str(m.date) == "2016-04-18"
    assert samples[0]["image"].shape == (30, 40, 3) and samples[0]["label"] == "airport"
    assert any("airport" in c for c in samples[0]["captions"])
