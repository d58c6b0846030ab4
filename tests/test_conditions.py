"""Tests for rsgen.conditions: every condition type on synthetic images and grids, the spec parser, errors,
and the real footprints-vs-heights check on ../shared/datasets/elevation."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform as warp_transform

from rsgen.conditions import (
    SEGMENTATION_PALETTE,
    ControlSpec,
    condition_to_tensor,
    known_conditions,
    make_condition,
    parse_control_spec,
)
from rsgen.errors import ConfigError, DataError, GeoTiffError, WeightsNotFoundError
from rsgen.io import GeoReference
from rsgen.paths import datasets_dir

UTM = CRS.from_epsg(32633)  # UTM 33N, around lon 15 E
ORIGIN = (500000.0, 5000000.0)  # top-left corner (x, y) of the test grid, metres


def utm_grid(width: int = 64, height: int = 48, gsd: float = 2.0) -> GeoReference:
    return GeoReference(UTM, Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1]), width, height)


def write_tif(path, data: np.ndarray, georef: GeoReference | None, nodata: float | None = None) -> str:
    """A small GeoTIFF (no CRS when ``georef`` is None)."""
    data = data[None] if data.ndim == 2 else data  # (C, H, W)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "nodata": nodata,
    }
    if georef is not None:
        profile.update(crs=georef.crs, transform=georef.transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return str(path)


def lonlat_polygon(grid: GeoReference, col0: int, row0: int, col1: int, row1: int) -> dict:
    """A polygon in EPSG:4326 whose corners are the pixel corners (col0, row0)-(col1, row1) of ``grid``."""
    corners = [(col0, row0), (col1, row0), (col1, row1), (col0, row1), (col0, row0)]
    xs, ys = zip(*[grid.transform @ c for c in corners], strict=True)
    lons, lats = warp_transform(grid.crs, "EPSG:4326", xs, ys)
    return {"type": "Polygon", "coordinates": [list(zip(lons, lats, strict=True))]}


def feature_collection(*geoms: dict, props: list[dict] | None = None, crs: str | None = None) -> dict:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": g, "properties": (props or [{}] * len(geoms))[i]}
            for i, g in enumerate(geoms)
        ],
    }
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    return fc


def square_image(size: int = 64) -> np.ndarray:
    img = np.full((size, size, 3), 40, np.uint8)
    img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 220
    return img


# ------------------------------------------------------------------------------------- registry, tensor


def test_registry_lists_all_types():
    assert {
        "canny",
        "lineart",
        "shuffle",
        "footprints",
        "height",
        "segmentation",
        "roads",
        "hed",
        "mlsd",
        "midas",
    } <= set(known_conditions())


def test_unknown_type_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown condition type 'sobel'.*canny.*footprints"):
        make_condition("sobel", square_image())


def test_condition_to_tensor():
    arr = np.zeros((8, 6, 3), np.uint8)
    arr[..., 1] = 255
    t = condition_to_tensor(arr)
    assert t.shape == (3, 8, 6) and t.dtype.is_floating_point
    assert float(t[1].min()) == 1.0 and float(t[0].max()) == 0.0
    assert condition_to_tensor(arr[..., 0]).shape == (3, 8, 6)
    with pytest.raises(DataError, match="uint8"):
        condition_to_tensor(arr.astype(np.float32))


# ------------------------------------------------------------------------------------------- detectors


def test_canny_finds_square_outline_and_not_flat_water():
    img = square_image(64)
    edges = make_condition("canny", img)
    assert edges.shape == (64, 64, 3) and edges.dtype == np.uint8
    on = edges[..., 0] > 0
    assert on[14:18, 20:44].any() and on[46:50, 20:44].any()  # top and bottom sides of the square
    assert not on[24:40, 24:40].any() and not on[:8].any()  # inside and far outside are empty
    flat = np.full((64, 64, 3), 90, np.uint8) + np.random.default_rng(0).integers(0, 3, (64, 64, 3), np.uint8)
    assert (make_condition("canny", flat)[..., 0] > 0).mean() < 0.01  # faint noise stays below the floor
    big = make_condition("canny", img, size=(128, 96))
    assert big.shape == (128, 96, 3) and big.any()


def test_canny_explicit_thresholds_and_image_file(tmp_path):
    path = tmp_path / "tile.png"
    Image.fromarray(square_image(64)).save(path)
    loose = make_condition("canny", str(path), low_threshold=10, high_threshold=20)
    strict = make_condition("canny", str(path), low_threshold=2000, high_threshold=4000)
    assert loose.any() and not strict.any()


def test_lineart_marks_dark_lines():
    img = np.full((96, 96, 3), 230, np.uint8)
    img[40:43, :] = 20  # a dark horizontal line
    out = make_condition("lineart", img, size=(96, 96))
    assert out.shape == (96, 96, 3)
    assert out[38:45, 10:86, 0].mean() > 5 * max(out[:25, :, 0].mean(), 1.0)


def test_shuffle_is_seeded():
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    a = make_condition("shuffle", img, seed=3)
    b = make_condition("shuffle", img, seed=3)
    c = make_condition("shuffle", img, seed=4)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_weighted_detectors_need_local_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("RSGEN_ANNOTATORS", raising=False)
    with pytest.raises(WeightsNotFoundError, match=r"ControlNetHED\.pth.*RSGEN_ANNOTATORS"):
        make_condition("hed", square_image())
    with pytest.raises(WeightsNotFoundError, match=rf"mlsd_large_512_fp32\.pth not found in {tmp_path}"):
        make_condition("mlsd", square_image(), annotators_dir=tmp_path)
    monkeypatch.setenv("RSGEN_ANNOTATORS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="dpt_hybrid-midas"):
        make_condition("midas", square_image())


# ----------------------------------------------------------------------------------------- footprints


def test_footprint_in_lonlat_lands_on_right_utm_pixels(tmp_path):
    grid = utm_grid(64, 48)
    geojson = tmp_path / "b.geojson"
    geojson.write_text(json.dumps(feature_collection(lonlat_polygon(grid, 10, 5, 21, 17))))
    out = make_condition("footprints", str(geojson), georef=grid)
    expected = np.zeros((48, 64), bool)
    expected[5:17, 10:21] = True
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out[..., 0] == 255, expected)
    # the grid given as a GeoTIFF path, output at twice the resolution (same footprint)
    tif = write_tif(tmp_path / "grid.tif", np.zeros((48, 64), np.uint8), grid)
    fine = make_condition("footprints", geojson, georef=tif, size=(96, 128))
    expected_fine = np.zeros((96, 128), bool)
    expected_fine[10:34, 20:42] = True
    assert np.array_equal(fine[..., 0] == 255, expected_fine)


def test_footprints_geojson_crs_member_and_single_feature(tmp_path):
    grid = utm_grid(32, 32, gsd=1.0)
    x0, y0 = ORIGIN
    poly = {
        "type": "Polygon",
        "coordinates": [
            [(x0 + 4, y0 - 4), (x0 + 12, y0 - 4), (x0 + 12, y0 - 10), (x0 + 4, y0 - 10), (x0 + 4, y0 - 4)]
        ],
    }
    out = make_condition(
        "footprints", feature_collection(poly, crs="urn:ogc:def:crs:EPSG::32633"), georef=grid
    )
    assert (out[..., 0] == 255).sum() == 8 * 6 and out[4:10, 4:12].min() == 255
    feature = {"type": "Feature", "geometry": poly, "properties": {}}
    assert np.array_equal(make_condition("footprints", feature, georef=grid, crs="EPSG:32633"), out)


def test_footprints_off_grid_warns_and_is_empty(tmp_path, caplog):
    grid = utm_grid()
    far = {"type": "Polygon", "coordinates": [[(2.0, 48.0), (2.01, 48.0), (2.01, 48.01), (2.0, 48.0)]]}
    path = tmp_path / "paris.geojson"
    path.write_text(json.dumps(feature_collection(far)))
    with caplog.at_level(logging.WARNING, logger="rsgen.conditions"):
        out = make_condition("footprints", str(path), georef=grid)
    assert not out.any() and "no feature" in caplog.text and "paris.geojson" in caplog.text


def test_geojson_errors(tmp_path):
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(feature_collection()))
    with pytest.raises(ConfigError, match="needs georef"):
        make_condition("footprints", str(path))
    with pytest.raises(DataError, match="does not exist"):
        make_condition("footprints", str(tmp_path / "missing.geojson"), georef=utm_grid())
    path.write_text('{"type": "Topology"}')
    with pytest.raises(DataError, match="not GeoJSON"):
        make_condition("footprints", str(path), georef=utm_grid())


# ---------------------------------------------------------------------------------------------- roads


def test_roads_width_in_metres():
    grid = utm_grid(64, 64, gsd=1.0)
    x0, y0 = ORIGIN
    road = {"type": "LineString", "coordinates": [(x0, y0 - 32), (x0 + 64, y0 - 32)]}  # along a pixel edge
    out = make_condition("roads", feature_collection(road, crs="EPSG:32633"), georef=grid, width_m=8.0)
    rows = np.flatnonzero(out[:, 32, 0])
    assert 7 <= len(rows) <= 10 and rows.min() >= 27 and rows.max() <= 36
    assert (out[:, :, 0] > 0).sum(axis=0).std() < 1.0  # same width all along
    wide = make_condition(
        "roads", feature_collection(road, props=[{"width": 20.0}], crs="EPSG:32633"), georef=grid
    )
    assert 19 <= np.count_nonzero(wide[:, 32, 0]) <= 22
    coarse = make_condition(
        "roads", feature_collection(road, crs="EPSG:32633"), georef=utm_grid(16, 16, 4.0), width_m=1.0
    )
    assert 1 <= np.count_nonzero(coarse[:, 8, 0]) <= 2  # narrower than a pixel: still drawn


def test_roads_on_geographic_grid_use_metres():
    grid = GeoReference(
        CRS.from_epsg(4326), Affine(1e-4, 0, 10.0, 0, -1e-4, 0.002), 40, 40
    )  # ~11 m at the equator
    road = {"type": "LineString", "coordinates": [(10.0, 0.0), (10.004, 0.0)]}  # along row 20's top edge
    out = make_condition("roads", feature_collection(road), georef=grid, width_m=50.0)
    assert 4 <= np.count_nonzero(out[:, 20, 0]) <= 6  # 50 m / 11.1 m per pixel


# --------------------------------------------------------------------------------------------- height


@pytest.fixture
def hag_tif(tmp_path):
    """A 40x40 height raster at 1 m in UTM: height = column index in metres, nodata -9999 in one block."""
    grid = utm_grid(40, 40, gsd=1.0)
    data = np.tile(np.arange(40, dtype=np.float32), (40, 1))
    data[:5, :5] = -9999
    return write_tif(tmp_path / "hag.tif", data, grid, nodata=-9999), grid


def test_height_scaling_and_nodata(hag_tif):
    path, grid = hag_tif
    out = make_condition("height", path, georef=grid, range_m=(0, 20))
    assert out.shape == (40, 40, 3)
    np.testing.assert_allclose(out[20, :21, 0], np.round(np.arange(21) / 20 * 255), atol=1)
    assert (out[20, 20:, 0] == 255).all()  # clipped above the range
    assert (out[:5, :5] == 0).all()  # nodata
    auto = make_condition("height", path, georef=grid, range_m="auto", nodata_value=1.0)
    assert auto[20, 39, 0] == 255 and auto[20, 0, 0] == 0 and (auto[:5, :5] == 255).all()


def test_height_reprojected_onto_coarser_shifted_grid(hag_tif):
    path, _ = hag_tif
    x0, y0 = ORIGIN
    grid = GeoReference(UTM, Affine(2.0, 0, x0 + 20, 0, -2.0, y0 - 10), 20, 10)  # right half sticks out
    out = make_condition("height", path, georef=grid, range_m=(0, 40))
    h = out[5, :10, 0] / 255 * 40  # source columns 20..39 at 2 m -> heights ~21, 23, ...
    np.testing.assert_allclose(h, 20.5 + 2 * np.arange(10), atol=0.6)
    assert (out[:, 10:] == 0).all()  # off the source raster -> nodata value


def test_height_band_selection_and_crs_errors(tmp_path, hag_tif):
    path, grid = hag_tif
    two = np.stack([np.zeros((8, 8), np.float32), np.full((8, 8), 10, np.float32)])
    multi = write_tif(tmp_path / "two.tif", two, utm_grid(8, 8))
    assert make_condition("height", f"{multi}:2", range_m=(0, 20))[0, 0, 0] == 128
    assert make_condition("height", multi, band=1, range_m=(0, 20))[0, 0, 0] == 0
    with pytest.raises(ConfigError, match="2 bands"):
        make_condition("height", multi)
    with pytest.raises(GeoTiffError, match="band 3 asked for"):
        make_condition("height", f"{multi}:3")
    no_crs = write_tif(tmp_path / "nocrs.tif", np.ones((8, 8), np.float32), None)
    with pytest.raises(GeoTiffError, match="has no CRS"):
        make_condition("height", no_crs, georef=grid)
    assert make_condition("height", no_crs, size=(16, 16), range_m=(0, 2)).shape == (16, 16, 3)


# --------------------------------------------------------------------------------------- segmentation


def test_segmentation_palette_and_sources(tmp_path):
    cls = np.zeros((16, 16), np.uint8)
    cls[:, 8:] = 3
    cls[8:, :4] = 15
    out = make_condition("segmentation", cls)
    assert np.array_equal(out[0, 0], SEGMENTATION_PALETTE[0]) and np.array_equal(
        out[0, 15], SEGMENTATION_PALETTE[3]
    )
    assert len({tuple(c) for c in SEGMENTATION_PALETTE[:21]}) == 21  # distinct colours
    png = tmp_path / "cls.png"
    Image.fromarray(cls, mode="L").save(png)
    assert np.array_equal(make_condition("segmentation", str(png)), out)
    # a class GeoTIFF reprojected at a finer grid keeps pure palette colours (nearest neighbour)
    tif = write_tif(tmp_path / "cls.tif", cls, utm_grid(16, 16, 2.0))
    fine = make_condition("segmentation", tif, georef=utm_grid(16, 16, 2.0), size=(40, 40))
    assert {tuple(c) for c in fine.reshape(-1, 3)} == {tuple(SEGMENTATION_PALETTE[k]) for k in (0, 3, 15)}
    with pytest.raises(DataError, match="not a class index"):
        make_condition("segmentation", np.full((4, 4), 2.5))


def test_detector_on_georeferenced_rgb_tif(tmp_path):
    grid = utm_grid(64, 64)
    tif = write_tif(tmp_path / "rgb.tif", square_image(64).transpose(2, 0, 1).copy(), grid)
    direct = make_condition("canny", square_image(64))
    assert np.array_equal(make_condition("canny", tif, georef=grid), direct)


# ---------------------------------------------------------------------------------------------- specs


def test_parse_control_spec(tmp_path):
    tif = tmp_path / "hag.tif"
    tif.write_bytes(b"")
    assert parse_control_spec(f"canny={tif}") == ControlSpec("canny", str(tif))
    spec = parse_control_spec(f"height={tif}:1@0.8[0.1:0.6]")
    assert spec == ControlSpec("height", str(tif), 1, 0.8, 0.1, 0.6)
    assert parse_control_spec(str(spec)) == spec  # str() round-trips
    assert parse_control_spec(f"lineart={tif}:3,2,1[:0.5]").band == (3, 2, 1)
    assert parse_control_spec(f"lineart={tif}[:0.5]").end == 0.5
    assert parse_control_spec("footprints=nowhere.geojson", check_exists=False).path == "nowhere.geojson"


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("canny", ConfigError, "expected TYPE=PATH"),
        ("=x.png", ConfigError, "expected TYPE=PATH"),
        ("edges=x.png", ConfigError, r"unknown condition type 'edges'; known types: .*canny"),
        ("canny=missing.png", DataError, "missing.png does not exist"),
        ("canny=x.png@heavy", ConfigError, "weight 'heavy' is not a number"),
        ("canny=x.png@-1", ConfigError, "must be a finite number >= 0"),
        ("canny=x.png[0.5:0.2]", ConfigError, "start 0.5 must be below end 0.2"),
        ("canny=x.png[0:1.5]", ConfigError, "outside 0..1"),
        ("height=x.tif:0", ConfigError, "1-based"),
    ],
)
def test_parse_control_spec_errors(spec, error, message):
    with pytest.raises(error, match=message):
        parse_control_spec(spec)


def test_control_spec_make(hag_tif):
    path, grid = hag_tif
    spec = parse_control_spec(f"height={path}:1@0.5")
    assert np.array_equal(
        spec.make(georef=grid, range_m=(0, 20)), make_condition("height", path, georef=grid, range_m=(0, 20))
    )


# ------------------------------------------------------------------------------------------ real data

ELEVATION = datasets_dir() / "elevation"


@pytest.mark.realdata
@pytest.mark.skipif(not (ELEVATION / "hag.tif").exists(), reason="../shared/datasets/elevation is absent")
def test_real_buildings_on_hag_grid():
    grid = GeoReference.from_raster(ELEVATION / "hag.tif")
    mask = make_condition("footprints", str(ELEVATION / "buildings.geojson"), georef=grid)[..., 0] > 0
    with rasterio.open(ELEVATION / "hag.tif") as src:
        hag = src.read(1, masked=True).filled(np.nan)  # (H, W) metres
    fraction = mask.mean()
    assert 0.05 < fraction < 0.6, fraction
    # almost every footprint pixel is raised (HAG > 3 m); the area is wooded, so outside is often raised too
    assert (hag[mask] > 3).mean() > 0.99 and (hag[~mask] > 3).mean() < 0.9
    # registration: shifting the footprints by 4 px (8 m) in any direction lowers the overlap
    for dy, dx in [(4, 0), (-4, 0), (0, 4), (0, -4)]:
        assert (hag[np.roll(mask, (dy, dx), axis=(0, 1))] > 3).mean() < (hag[mask] > 3).mean() - 0.01
    heights = make_condition(
        "height", str(ELEVATION / "hag.tif"), georef=grid.resized(128, 128), range_m=(0, 30)
    )
    assert heights.shape == (128, 128, 3) and heights.max() > 200
