"""Procedural benchmark scenes: each rule moves the right way, determinism, the written set is readable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsgen.data.procedural import (
    MASK_NAMES,
    MetadataRanges,
    ProceduralConfig,
    SceneParams,
    expected_rules,
    generate_scene,
    noon_sun_elevation_deg,
    season_and_sun,
    write_procedural_set,
)
from rsgen.errors import DataError
from rsgen.metadata import AcquisitionDate, Metadata

RESIDENTIAL = SceneParams(scene_weights=(1.0, 0.0, 0.0))


def meta(lat: float, date: str, gsd: float = 1.0, cloud: float = 0.0) -> Metadata:
    return Metadata(gsd_m=gsd, lat=lat, lon=10.0, date=date, cloud_cover=cloud)


def test_snow_in_local_winter_only_hemisphere_aware():
    north = generate_scene(meta(60.0, "2020-01-15"), seed=1)
    south = generate_scene(meta(-60.0, "2020-01-15"), seed=1)
    assert north.rules["snow_cover"] == 1.0 and north.masks["snow"].mean() > 0.5
    assert south.rules["snow_cover"] == 0.0 and not south.masks["snow"].any()
    # Six months later the hemispheres swap.
    assert generate_scene(meta(-60.0, "2020-07-15"), seed=1).rules["snow_cover"] == 1.0
    assert generate_scene(meta(60.0, "2020-07-15"), seed=1).rules["snow_cover"] == 0.0
    # The tropics never get snow.
    assert max(season_and_sun(5.0, d).snow_cover for d in range(1, 366, 10)) == 0.0


def test_snow_fraction_of_open_land_is_exactly_the_rule():
    for lat in (44.0, 47.0, 50.0):  # partial snow cover in mid-January
        s = generate_scene(meta(lat, "2021-01-20"), seed=3)
        assert 0.0 < s.rules["snow_cover"] <= 1.0
        assert abs(s.rules["snow_fraction"] - s.rules["snow_cover"]) < 0.01
        open_land = ~s.masks["water"] & ~s.masks["roads"]
        assert not (s.masks["snow"] & ~open_land).any()


def test_leaf_colour_by_season():
    summer, autumn, winter = (
        season_and_sun(45.0, AcquisitionDate.parse(d).day_of_year)
        for d in ("2020-07-10", "2020-10-25", "2020-01-10")
    )
    assert summer.greenness == 1.0 and summer.autumn == 0.0
    assert autumn.autumn > 0.5 and autumn.greenness < 1.0
    assert winter.greenness == 0.0 and winter.autumn == 0.0
    g_summer, g_autumn = summer.leaf_colour, autumn.leaf_colour
    assert g_summer[1] > g_summer[0]  # green
    assert g_autumn[0] > g_autumn[1] > g_autumn[2]  # orange-yellow
    # Southern hemisphere: October is spring, no autumn colour.
    assert season_and_sun(-45.0, AcquisitionDate.parse("2020-10-25").day_of_year).autumn == 0.0


def test_sun_and_shadows():
    winter = generate_scene(meta(45.0, "2020-12-21"), seed=7, params=RESIDENTIAL)
    summer = generate_scene(meta(45.0, "2020-06-21"), seed=7, params=RESIDENTIAL)
    assert winter.rules["sun_elevation_deg"] == pytest.approx(90 - 45 - 23.44, abs=0.2)
    assert summer.rules["sun_elevation_deg"] == pytest.approx(90 - 45 + 23.44, abs=0.2)
    assert winter.rules["shadow_length_px"] > 5 * summer.rules["shadow_length_px"]
    assert winter.masks["shadow"].sum() > 3 * summer.masks["shadow"].sum() > 0
    assert winter.rules["shadow_direction"] == "north"
    assert (
        generate_scene(meta(-45.0, "2020-06-21"), seed=7, params=RESIDENTIAL).rules["shadow_direction"]
        == "south"
    )
    # Inside the tropics in local summer the sun is poleward of the zenith: shadows point to the equator.
    assert season_and_sun(10.0, 172).shadow_direction == "south"
    assert noon_sun_elevation_deg(0.0, 80) == pytest.approx(90.0, abs=1.0)  # equinox at the equator
    # Shadows lie north of the buildings (rows above) in the northern hemisphere.
    rows = np.nonzero(winter.masks["shadow"])[0].mean()
    assert rows < np.nonzero(winter.masks["buildings"])[0].mean()


@pytest.mark.parametrize("cover", [0.0, 0.1, 0.35, 0.8])
def test_cloud_fraction_matches_cloud_cover(cover):
    s = generate_scene(meta(30.0, "2020-05-01", cloud=cover), seed=7)
    assert abs(s.masks["cloud"].mean() - cover) <= 1 / 64**2
    assert s.rules["cloud_fraction"] == pytest.approx(cover, abs=0.001)
    if cover > 0:
        assert s.masks["cloud_shadow"].any() and not (s.masks["cloud_shadow"] & s.masks["cloud"]).any()


def test_building_size_in_pixels_follows_gsd():
    from scipy import ndimage

    # The same world seen at 1 m on 128 px and at 2 m on 64 px: the same buildings, half as many pixels.
    fine = generate_scene(meta(40.0, "2020-06-01", gsd=1.0), seed=11, size=128, params=RESIDENTIAL)
    coarse = generate_scene(meta(40.0, "2020-06-01", gsd=2.0), seed=11, size=64, params=RESIDENTIAL)
    assert fine.rules["n_buildings"] == coarse.rules["n_buildings"] >= 3
    assert fine.rules["building_size_px"] == pytest.approx(2 * coarse.rules["building_size_px"])
    assert fine.masks["buildings"].mean() == pytest.approx(coarse.masks["buildings"].mean(), rel=0.1)
    sizes = []
    for s in (fine, coarse):
        labels, n = ndimage.label(s.masks["buildings"])
        sizes.append(np.median(np.sqrt(np.bincount(labels.ravel())[1:])))
    assert sizes[0] / sizes[1] == pytest.approx(2.0, rel=0.12)
    assert expected_rules(fine.metadata)["building_size_px"] == pytest.approx(
        2 * expected_rules(coarse.metadata)["building_size_px"]
    )


def test_determinism_and_seeds():
    a = generate_scene(None, seed=42)
    b = generate_scene(None, seed=42)
    c = generate_scene(None, seed=43)
    assert np.array_equal(a.image, b.image) and a.metadata == b.metadata
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in MASK_NAMES)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert set(a.masks) == set(MASK_NAMES) and all(m.dtype == bool for m in a.masks.values())


def test_missing_metadata_is_drawn_and_recorded():
    s = generate_scene(
        Metadata(gsd_m=2.0, date="2019"),
        seed=9,
        ranges=MetadataRanges(lat=(10.0, 20.0), cloud_free_probability=0.0),
    )
    m = s.metadata
    assert m.gsd_m == 2.0 and m.date is not None and m.date.year == 2019
    assert m.date.month is not None and m.date.day is not None
    assert 10.0 <= (m.lat or 0) <= 20.0 and m.cloud_cover is not None and m.cloud_cover >= 0.0
    assert set(s.drawn) == {"lat", "lon", "date.month", "cloud_cover"}
    full = generate_scene(meta(10.0, "2020-03-03"), seed=9)
    assert full.drawn == []


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="size"):
        generate_scene(None, seed=0, size=4)
    with pytest.raises(DataError, match="building_size_m"):
        SceneParams(building_size_m=(5.0, 2.0))
    with pytest.raises(DataError, match="n=0"):
        write_procedural_set("/nonexistent", 0)


def test_written_set_is_deterministic_and_readable(tmp_path):
    manifest = write_procedural_set(tmp_path / "a", 12, size=32, seed=3, val=0.25, progress=False)
    again = write_procedural_set(tmp_path / "b", 12, size=32, seed=3, val=0.25, progress=False)
    assert manifest.read_text() == again.read_text()
    assert (tmp_path / "a/images/000004.png").read_bytes() == (tmp_path / "b/images/000004.png").read_bytes()
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(records) == 12
    for r in records:
        assert {
            "id",
            "path",
            "window",
            "bands",
            "captions",
            "metadata",
            "split",
            "source",
            "label",
            "false_color",
            "gsd_factor",
            "conditions",
        } <= set(r)
        assert r["split"] in ("train", "val") and r["captions"] and r["source"] == "procedural"
        assert "seen from" in r["captions"][0] or "per pixel" in r["captions"][0]
        for p in [*r["masks"].values(), *r["conditions"].values()]:
            assert (tmp_path / "a" / p).is_file()
        assert Metadata.from_dict(r["metadata"]).gsd_m == pytest.approx(
            r["rules"]["shadow_length_m"] / r["rules"]["shadow_length_px"]
        )
    dataset_mod = pytest.importorskip("rsgen.data.dataset")
    ds = dataset_mod.ImageCaptionDataset(manifest, split=None, image_size=32)
    assert len(ds) == 12
    item = ds[0]
    assert tuple(item["pixel_values"].shape) == (3, 32, 32) and item["caption"]
    assert item["metadata"].gsd_m == pytest.approx(records[0]["metadata"]["gsd_m"])
    assert ds.skipped == 0
    train = dataset_mod.ImageCaptionDataset(manifest, split="train", image_size=32)
    assert 0 < len(train) < 12


def test_config_loads():
    from rsgen.config import load_config

    cfg = load_config(ProceduralConfig, "procedural", subdir="data")
    assert cfg.size == 64 and cfg.ranges.gsd_m == (0.5, 4.0) and cfg.scene.building_height_m == 8.0
