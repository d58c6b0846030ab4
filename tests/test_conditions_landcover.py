"""Land-cover maps as a condition (GeoTIFF class band, palette PNG, GeoJSON polygons -> the colour-coded map)
and the training pairs of a land-cover ControlNet (single-class tiles and mosaics)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_fake_geotiff
from PIL import Image

from rsgen.conditions import SEGMENTATION_PALETTE, make_condition, parse_control_spec
from rsgen.conditions.landcover import (
    CLASS_IDS,
    LANDCOVER_CLASSES,
    label_class,
    landcover_ids,
    landcover_image,
    landcover_onehot,
)
from rsgen.errors import DataError
from rsgen.io import GeoReference

FOREST, CROP, WATER = CLASS_IDS["forest"], CLASS_IDS["cropland"], CLASS_IDS["water"]


def test_dataset_labels_map_to_classes():
    assert label_class("Forest") == FOREST and label_class("forest") == FOREST
    assert label_class("AnnualCrop") == CROP and label_class("Farmland") == CROP
    assert label_class("SeaLake") == WATER and label_class("river") == WATER and label_class("Pond") == WATER
    assert label_class("denseresidential") == label_class("Residential") == CLASS_IDS["residential"]
    assert label_class("spaceship") is None and label_class(None) is None
    # every EuroSAT / UCM / AID label of the shared data sets has a class
    eurosat = (
        "AnnualCrop Forest HerbaceousVegetation Highway Industrial Pasture PermanentCrop Residential River"
    )
    assert all(label_class(lbl) is not None for lbl in (eurosat + " SeaLake").split())


def test_ids_colours_onehot_round_trip():
    ids = np.array([[0, FOREST], [WATER, len(LANDCOVER_CLASSES) - 1]])
    img = landcover_image(ids)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    assert (img[0, 1] == SEGMENTATION_PALETTE[FOREST]).all()  # the segmentation ControlNet's palette
    np.testing.assert_array_equal(landcover_ids(img), ids)
    onehot = landcover_onehot(ids)
    assert onehot.shape == (len(LANDCOVER_CLASSES), 2, 2) and (onehot.sum(0) == 1).all()
    assert onehot[WATER, 1, 0] == 1
    with pytest.raises(DataError, match="class id 99"):
        landcover_image(np.array([[99]]))
    with pytest.raises(DataError, match="not a land-cover class colour"):
        landcover_ids(np.array([[[1, 2, 3]]], np.uint8))


def test_geotiff_band_reprojected_by_nearest(tmp_path):
    cls = np.zeros((1, 40, 40), np.uint8)
    cls[0, :, 20:] = WATER
    cls[0, :, :20] = FOREST
    src = write_fake_geotiff(tmp_path / "lc.tif", width=40, height=40, count=1, data=cls, nodata=255)
    grid = GeoReference.from_raster(src).resized(20, 20)
    out = make_condition("landcover", f"{src}:1", georef=grid)
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(landcover_ids(out)[:, :10], FOREST)  # no mixed class at the border
    np.testing.assert_array_equal(landcover_ids(out)[:, 10:], WATER)
    # WorldCover codes: 10 tree cover, 80 water; unknown codes become the nodata class
    wc = np.array([[[10, 80, 77]]], np.uint8)
    src2 = write_fake_geotiff(tmp_path / "wc.tif", width=3, height=1, count=1, data=wc)
    ids = landcover_ids(make_condition("landcover", src2, value_map="worldcover"))
    assert ids.tolist() == [[FOREST, WATER, 0]]


def test_palette_png_and_colour_png(tmp_path):
    ids = np.zeros((16, 16), np.uint8)
    ids[8:] = CROP
    im = Image.fromarray(ids, mode="P")
    im.putpalette(np.random.default_rng(0).integers(0, 255, 768).astype(np.uint8).tobytes())
    im.save(tmp_path / "map.png")
    out = make_condition("landcover", str(tmp_path / "map.png"), size=(32, 32))
    np.testing.assert_array_equal(landcover_ids(out)[16:], CROP)
    np.testing.assert_array_equal(landcover_ids(out)[:16], 0)
    Image.fromarray(landcover_image(ids)).save(tmp_path / "colours.png")  # already colour-coded
    again = make_condition("landcover", str(tmp_path / "colours.png"))
    np.testing.assert_array_equal(landcover_ids(again), ids)
    assert parse_control_spec(f"landcover={tmp_path / 'map.png'}@0.8").kind == "landcover"


def test_geojson_polygons_rasterised_on_the_grid(tmp_path):
    grid = GeoReference.from_latlon_gsd(45.0, 7.0, 10.0, 32, 32)
    t = grid.transform
    x0, y0 = t.c, t.f  # top-left corner, grid CRS (UTM)

    def box(c0, r0, c1, r1):  # pixel box -> polygon in the grid's CRS
        pts = [(x0 + c * t.a, y0 + r * t.e) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
        return {"type": "Polygon", "coordinates": [pts]}

    gj = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": str(grid.crs)}},
        "features": [
            {"type": "Feature", "geometry": box(0, 0, 32, 16), "properties": {"class": "Forest"}},
            {"type": "Feature", "geometry": box(0, 16, 32, 32), "properties": {"class": CROP}},
            {"type": "Feature", "geometry": box(10, 10, 20, 20), "properties": {"class": "river"}},
        ],
    }
    path = tmp_path / "lc.geojson"
    path.write_text(json.dumps(gj))
    ids = landcover_ids(make_condition("landcover-polygons", str(path), georef=grid))
    assert ids[2, 2] == FOREST and ids[30, 2] == CROP and ids[15, 15] == WATER  # later features on top
    assert (ids == WATER).sum() == 100
    gj["features"][0]["properties"] = {"kind": "Forest"}
    path.write_text(json.dumps(gj))
    with pytest.raises(DataError, match="feature 0 has no 'class' property"):
        make_condition("landcover-polygons", str(path), georef=grid)


def _labelled_tiles(tmp_path, size=32):
    """A tiny labelled-tile manifest: 3 classes x 4 tiles, each tile one flat colour."""
    from rsgen.data.manifest import write_manifest

    colours = {"Forest": (20, 90, 30), "AnnualCrop": (200, 180, 90), "SeaLake": (20, 40, 160)}
    recs = []
    for label, colour in colours.items():
        for i in range(4):
            rel = f"tiles/{label}_{i}.jpg"
            (tmp_path / "src" / "tiles").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(
                tmp_path / "src" / rel, quality=100
            )
            recs.append(
                {
                    "id": f"eurosat/{label}_{i}",
                    "path": rel,
                    "captions": [f"{label}"],
                    "split": "train",
                    "source": "eurosat",
                    "label": label,
                    "metadata": {"gsd_m": 10.0},
                }
            )
    recs.append(
        {"id": "x", "path": "tiles/Forest_0.jpg", "captions": ["?"], "split": "train", "label": "Alien"}
    )
    write_manifest(recs, tmp_path / "src" / "manifest.jsonl")
    return colours


def test_guillotine_partition_covers_the_tile():
    from rsgen.data.landcover_pairs import guillotine_partition

    rng = np.random.default_rng(1)
    for k in (2, 3, 6):
        rects = guillotine_partition(64, k, rng, 12)
        cover = np.zeros((64, 64), int)
        for r in rects:
            cover[r.slices()] += 1
            assert min(r.height, r.width) >= 12
        assert len(rects) == k and (cover == 1).all()


def test_landcover_pairs_single_class_and_mosaics(tmp_path):
    from rsgen.data.landcover_pairs import write_landcover_pairs
    from rsgen.data.manifest import iter_manifest

    colours = _labelled_tiles(tmp_path)
    manifest = write_landcover_pairs(
        tmp_path / "src" / "manifest.jsonl", tmp_path / "pairs", mosaics_per_tile=0.5, progress=False
    )
    recs = list(iter_manifest(manifest))
    singles = [r for r in recs if r["source"] == "eurosat"]
    mosaics = [r for r in recs if r["source"] == "landcover-mosaic"]
    assert len(singles) == 12 and len(mosaics) == 6  # the unlabelled class is left out
    root = manifest.parent
    for r in singles:  # the map the ControlNet trainer makes from the record: all the tile's class
        ids = landcover_ids(
            make_condition("landcover", str(root / r["conditions"]["landcover"]), size=(32, 32))
        )
        assert (ids == label_class(r["label"])).all()
    by_colour = {colours[k]: label_class(k) for k in colours}
    for r in mosaics:
        image = np.asarray(Image.open(root / r["path"]).convert("RGB")).astype(int)
        ids = landcover_ids(
            make_condition("landcover", str(root / r["conditions"]["landcover"]), size=(32, 32))
        )
        assert len(np.unique(ids)) >= 2 and r["metadata"] == {"gsd_m": 10.0}
        for colour, cls in by_colour.items():  # each pixel shows the tile of its map's class
            near = np.abs(image - np.array(colour)).max(axis=2) <= 3
            assert (near == (ids == cls)).all()
        assert r["captions"][0].startswith("a satellite image of ")
    again = write_landcover_pairs(
        tmp_path / "src" / "manifest.jsonl", tmp_path / "pairs2", mosaics_per_tile=0.5, progress=False
    )
    assert [r["captions"] for r in iter_manifest(again)] == [r["captions"] for r in recs]  # deterministic


def test_landcover_controlnet_config_loads():
    from rsgen.training.config import load_train_config

    cfg = load_train_config("default-landcover-controlnet")
    assert cfg.mode == "controlnet" and cfg.controlnet.condition == "landcover"
    assert cfg.data.manifest and cfg.init_from
