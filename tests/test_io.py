"""GeoTIFF / PNG writing and reading: georeference and metadata round trips, atomic writes, block writing."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image

from rsgen.errors import GeoTiffError, MetadataError
from rsgen.io import (
    GeoReference,
    GeoTiffBlockWriter,
    atomic_dir,
    atomic_path,
    generation_tags,
    read_geotiff,
    to_hwc_uint8,
    utm_epsg,
    write_geotiff,
    write_png,
)
from rsgen.metadata import AcquisitionDate, Metadata


def test_utm_zones() -> None:
    assert utm_epsg(47.02, -99.15) == 32614
    assert utm_epsg(-8.4, -74.4) == 32718
    assert utm_epsg(60.0, 5.0) == 32632  # Norway exception
    assert utm_epsg(78.0, 15.0) == 32633  # Svalbard exception
    assert utm_epsg(0.0, 180.0) == 32660


def test_georeference_from_latlon_gsd_is_centred_and_read_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = GeoReference.from_latlon_gsd(47.02, -99.15, 0.5, 64, 32)
    meta = Metadata(gsd_m=0.5, lat=47.02, lon=-99.15, date="2019-07-04")
    path = write_geotiff(
        tmp_path / "out.tif",
        np.zeros((32, 64, 3), np.uint8),
        ref,
        layout="HWC",
        tags=generation_tags(meta, prompt="a farm", seed=7, model_id="tiny"),
    )
    back = read_geotiff(path)
    assert back.array.shape == (3, 32, 64)
    assert back.georef is not None and back.georef.crs.to_epsg() == 32614
    assert back.georef.transform.almost_equals(ref.transform)
    assert back.metadata.gsd_m == pytest.approx(0.5)
    assert back.metadata.lat == pytest.approx(47.02, abs=1e-6) and back.metadata.lon == pytest.approx(
        -99.15, abs=1e-6
    )
    assert back.metadata.date == AcquisitionDate(2019, 7, 4)
    assert back.tags["RSGEN_PROMPT"] == "a farm" and back.tags["RSGEN_SEED"] == "7"
    assert back.tags["RSGEN_MODEL"] == "tiny" and "RSGEN_VERSION" in back.tags


def test_georeference_copied_from_reference_and_resized(tmp_path, fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    src = fake_geotiff("ref.tif", width=64, height=48)
    ref = GeoReference.from_raster(src)
    out = write_geotiff(
        tmp_path / "big.tif", np.ones((3, 192, 256), np.uint8), ref, layout="CHW"
    )  # 4x the pixels, same footprint
    back = read_geotiff(out)
    assert back.georef is not None
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert a.bounds == pytest.approx(b.bounds)
    assert back.metadata.gsd_m == pytest.approx(0.5)


def test_geographic_crs_round_trip(tmp_path, fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    src = fake_geotiff("geo.tif", crs="EPSG:4326")
    raster = read_geotiff(src)
    out = write_geotiff(
        tmp_path / "copy.tif", raster.array, raster.georef, metadata=raster.metadata, layout="CHW"
    )
    back = read_geotiff(out)
    assert back.georef.crs == raster.georef.crs
    assert back.metadata.gsd_m == pytest.approx(raster.metadata.gsd_m)
    np.testing.assert_array_equal(back.array, raster.array)


def test_missing_crs(tmp_path, fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    src = fake_geotiff("nocrs.tif", crs=None)
    assert read_geotiff(src).georef is None
    with pytest.raises(GeoTiffError, match="nocrs.tif: has no CRS"):
        read_geotiff(src, require_crs=True)
    with pytest.raises(GeoTiffError, match="has no CRS"):
        GeoReference.from_raster(src)


def test_nodata_and_float_data_kept(tmp_path, fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    data = np.full((1, 16, 16), -9999, np.float32)
    data[0, 4:8, 4:8] = 12.5
    src = fake_geotiff("dsm.tif", count=1, dtype="float32", nodata=-9999, data=data, width=16, height=16)
    raster = read_geotiff(src)
    out = write_geotiff(
        tmp_path / "dsm2.tif", raster.array, raster.georef, nodata=raster.nodata, layout="CHW"
    )
    back = read_geotiff(out)
    assert back.nodata == -9999 and back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, data)


def test_cog_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = GeoReference.from_latlon_gsd(-8.4, -74.4, 10.0, 512, 512)
    out = write_geotiff(
        tmp_path / "cog.tif",
        np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8),
        ref,
        cog=True,
        layout="HWC",
    )
    with rasterio.open(out) as ds:
        assert ds.overviews(1), "a COG has internal overviews"
        assert ds.profile["tiled"]
        assert ds.crs.to_epsg() == 32718


def test_png_and_image_conversions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    t = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)  # (C, H, W) in [-1, 1]
    arr = to_hwc_uint8(t)
    assert arr.shape == (4, 5, 3) and arr.min() == 0 and arr.max() == 255
    path = write_png(tmp_path / "x.png", arr, text={"prompt": "a river"})
    with Image.open(path) as im:
        assert im.size == (5, 4) and im.text["prompt"] == "a river"


def test_atomic_write_leaves_nothing_on_failure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as d:
        (d / "w").write_text("x")
        raise RuntimeError("killed")
    assert not (tmp_path / "model").exists()
    with atomic_dir(tmp_path / "model") as d:
        (d / "w").write_text("new")
    assert (tmp_path / "model" / "w").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin", "model"]


def test_block_writer_assembles_windows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = GeoReference.from_latlon_gsd(10.0, 20.0, 1.0, 96, 64)
    full = np.random.default_rng(1).integers(0, 255, (3, 64, 96), np.uint8)
    meta = Metadata(gsd_m=1.0, lat=10.0, lon=20.0)
    with GeoTiffBlockWriter(tmp_path / "scene.tif", 96, 64, 3, ref, metadata=meta, block=32) as w:
        assert not (tmp_path / "scene.tif").exists()
        for row in (0, 32):
            for col in (0, 32, 64):
                w.write_window(full[:, row : row + 32, col : col + 32], col, row)
    back = read_geotiff(tmp_path / "scene.tif")
    np.testing.assert_array_equal(back.array, full)
    assert back.metadata.gsd_m == pytest.approx(1.0)


def test_invalid_georeference_values() -> None:
    with pytest.raises(MetadataError, match="lat=95"):
        GeoReference.from_latlon_gsd(95.0, 0.0, 1.0, 8, 8)


@pytest.mark.realdata
def test_real_elevation_keeps_nodata(datasets, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raster = read_geotiff(datasets / "elevation" / "dsm.tif")
    assert raster.nodata == -9999
    out = write_geotiff(tmp_path / "dsm.tif", raster.array, raster.georef, nodata=raster.nodata, layout="CHW")
    back = read_geotiff(out)
    assert back.nodata == -9999
    np.testing.assert_array_equal(back.array, raster.array)
    assert back.metadata.gsd_m == pytest.approx(2.0)


def test_atomic_outputs_have_ordinary_permissions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "w").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
