"""Readers on the real shared data sets (skipped when ../shared/datasets is absent)."""

import json

import pytest
from data_fixtures import save_jpeg, textured

from rsgen.data.captions import CaptionWriter, caption_words, clean_captions
from rsgen.data.geotiff_windows import GeoTiffWindowReader
from rsgen.data.readers import UCM_CLASSES, ClassFolderReader, CocoCaptionsReader, KarpathyReader
from rsgen.paths import datasets_dir

DATA = datasets_dir()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (DATA / "eurosat-rgb").is_dir(), reason=f"real data sets not found at {DATA}"),
]


def test_ucm_karpathy_json_with_an_image_folder(tmp_path):
    ann = DATA / "captions" / "ucm_karpathy.json"
    recs = list(KarpathyReader("ucm", ann, tmp_path, label_from="ucm_index").records())
    assert len(recs) == 2100 and sum(len(r["captions"]) for r in recs) == 10500
    assert {r["label"] for r in recs} == set(UCM_CLASSES)
    assert {r["split"] for r in recs} == {"train", "val", "test"}
    # the images are not shipped; users have them: fake two and read them
    for name in ("1.tif", "150.tif"):
        save_jpeg(tmp_path / "x.jpg", textured(1))
        (tmp_path / name).write_bytes((tmp_path / "x.jpg").read_bytes())
    r = KarpathyReader("ucm", ann, tmp_path, label_from="ucm_index", limit=200)
    samples = list(r)
    assert len(samples) == 2 and r.skipped["missing"] == 198
    assert samples[1]["label"] == "airplane" and samples[0]["captions"][0] == "There is a piece of farmland."


def test_rsicd_coco_and_sydney_captions_clean():
    recs = list(
        CocoCaptionsReader(
            "rsicd", DATA / "captions" / "rsicd_val_coco.json", DATA, label_from="prefix"
        ).records()
    )
    assert len(recs) == 1092 and all(r["label"] for r in recs)
    syd = json.loads((DATA / "captions" / "sydney_karpathy.json").read_text())["images"]
    cleaned = [c for im in syd for c in clean_captions(s["raw"] for s in im["sentences"])]
    assert len(cleaned) > 2500 and all(c[0].isupper() and c.endswith(".") for c in cleaned)


def test_writer_vocabulary_overlaps_human_captions():
    human = set()
    for name in ("ucm_karpathy.json", "sydney_karpathy.json"):
        for im in json.loads((DATA / "captions" / name).read_text())["images"]:
            for s in im["sentences"]:
                human.update(caption_words(s["raw"]))
    for ann in json.loads((DATA / "captions" / "rsicd_val_coco.json").read_text())["annotations"]:
        human.update(caption_words(ann["caption"]))
    w = CaptionWriter()
    tokens = [
        t
        for label in ("AnnualCrop", "Forest", "Residential", "River", "SeaLake", "Highway")
        for i in range(30)
        for c in w.captions(label, None, n=5, key=str(i))
        for t in caption_words(c)
    ]
    covered = sum(t in human for t in tokens) / len(tokens)
    assert covered > 0.85, f"only {covered:.0%} of caption words occur in the human captions"


def test_eurosat_and_naip_windows():
    r = ClassFolderReader("eurosat", DATA / "eurosat-rgb" / "val", metadata={"gsd_m": 10}, limit=3)
    assert [s["image"].shape for s in r] == [(64, 64, 3)] * 3
    naip = GeoTiffWindowReader(
        "naip",
        DATA / "naip-timeseries",
        size=64,
        bands=[1, 2, 3],
        gsd_factors=[1, 4],
        label="prairie_farmland",
        limit=200,
    )
    samples = list(naip)
    m = samples[0]["metadata"]
    assert m.gsd_m == pytest.approx(5.0) and m.date.year == 2009 and m.date.month == 8
    assert 46.9 < m.lat < 47.1 and -99.3 < m.lon < -99.0
    assert len({(s["metadata"].lat, s["metadata"].lon) for s in samples}) == len(samples)


@pytest.mark.skipif(not (DATA / "aid-rsicd").is_dir(), reason="ucm/ and aid-rsicd/ not found")
def test_ucm_and_aid_sources_of_the_default_curation_config():
    """The default config's human-captioned sources: counts, GSD only where known, AID held out per class."""
    from collections import Counter

    from rsgen.config import load_config
    from rsgen.data.curate_config import CurateConfig, make_reader

    cfg = load_config(CurateConfig, "curated", subdir="data")
    recs = {
        s.name: list(make_reader(s).records())
        for s in cfg.sources
        if s.name in ("ucm_val", "ucm_train", "aid")
    }
    assert len(recs["ucm_val"]) == 210 and len(recs["ucm_train"]) == 1680
    assert all(r["metadata"]["gsd_m"] == 0.3048 and len(r["captions"]) == 5 for r in recs["ucm_val"])
    aid = recs["aid"]
    assert len(aid) == 1092 + 1620 and all("gsd_m" not in r["metadata"] for r in aid)
    assert sum(bool(r["captions"]) for r in aid) == 1092
    per_class = Counter(r["label"] for r in aid)
    held = Counter(r["label"] for r in aid if r["split"] == "val")
    assert len(per_class) == 30 and all(held[c] == round(0.2 * n) for c, n in per_class.items())


@pytest.mark.skipif(not (DATA / "aid-rsicd").is_dir(), reason="aid-rsicd/ not found")
def test_aid_heldout_records_for_evaluation_and_judges():
    from rsgen.data.curate_config import source_records

    held = source_records("curated", "aid", "val")
    assert len(held) == 543 and sum(bool(r["captions"]) for r in held) == 223
    assert not {r["path"] for r in held} & {r["path"] for r in source_records("curated", "aid", "train")}
