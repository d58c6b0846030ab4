import numpy as np
import pytest
from data_fixtures import write_geotiff

from rsgen.data.curate import check_record
from rsgen.data.curate_config import ChecksConfig
from rsgen.data.geotiff_windows import GeoTiffWindowReader


def _scene(tmp_path, name="m_4709963_se_14_1_20190904.tif", **kw):
    rng = np.random.default_rng(0)
    arr = rng.integers(1, 255, (4, 128, 128), dtype=np.uint8)
    return write_geotiff(tmp_path / name, arr, **kw)


def test_windows_have_their_own_metadata(tmp_path):
    _scene(tmp_path, crs="EPSG:32614", gsd=5.0, origin=(500000.0, 5210000.0))
    r = GeoTiffWindowReader("naip", tmp_path, size=32, bands=[1, 2, 3], gsd_factors=[1, 2], label="farmland")
    recs = list(r.records())
    native = [x for x in recs if x["gsd_factor"] == 1.0]
    coarse = [x for x in recs if x["gsd_factor"] == 2.0]
    assert len(native) == 16 and len(coarse) == 4
    m0, m1 = native[0]["metadata"], native[1]["metadata"]
    assert m0["gsd_m"] == pytest.approx(5.0) and coarse[0]["metadata"]["gsd_m"] == pytest.approx(10.0)
    assert m0["date"] == "2019-09-04"  # NAIP file name
    assert m1["lon"] > m0["lon"] and m0["lat"] == pytest.approx(m1["lat"], abs=1e-4)  # centre of each window
    assert 47.0 < m0["lat"] < 47.1 and -99.1 < m0["lon"] < -98.9
    samples = list(r)
    assert all(s["image"].shape == (32, 32, 3) for s in samples)
    assert any(
        "10 m" in c or "10 metres" in c for s in samples if s["metadata"].gsd_m == 10.0 for c in s["captions"]
    )


def test_geotiff_without_crs_is_dropped_with_reason(tmp_path):
    _scene(tmp_path, name="plain.tif", crs=None)
    r = GeoTiffWindowReader("x", tmp_path, size=32)
    recs = list(r.records())
    assert len(recs) == 1 and recs[0]["_drop"] == "no_crs"
    assert list(r) == [] and r.skipped["no_crs"] == 1
    # allowed when asked: windows without GSD or location
    recs = list(GeoTiffWindowReader("x", tmp_path, size=32, require_crs=False).records())
    assert len(recs) == 16 and "gsd_m" not in recs[0]["metadata"]


def test_all_nodata_window_is_dropped(tmp_path):
    arr = np.random.default_rng(1).integers(1, 255, (3, 64, 64), dtype=np.uint8)
    arr[:, :32, :32] = 0  # one window entirely nodata
    arr[:, 32:, :32][:, :, :6] = 0  # another partly nodata (6/32 columns)
    write_geotiff(tmp_path / "s.tif", arr, nodata=0)
    r = GeoTiffWindowReader("s", tmp_path, size=32)
    results = {
        rec["window"][0:2].__repr__(): check_record(rec, ChecksConfig(min_valid_fraction=0.9), 2.0)
        for rec in r.records()
    }
    assert results["[0, 0]"]["status"] == "dropped" and results["[0, 0]"]["reason"] == "mostly_nodata"
    assert results["[0, 32]"]["reason"] == "mostly_nodata"  # 81% valid < 90%
    assert results["[32, 0]"]["status"] == "kept"
    assert sum(1 for _ in r) == 2 and r.skipped["mostly_nodata"] == 2  # the reader alone skips them too


def test_landsat_like_false_colour_flag(tmp_path):
    arr = np.random.default_rng(2).integers(1, 255, (4, 64, 64), dtype=np.uint8)
    write_geotiff(tmp_path / "1985.tif", arr, crs="EPSG:4326", gsd=0.0008, origin=(-74.5, -8.4))
    r = GeoTiffWindowReader(
        "landsat", tmp_path, size=32, bands=[1, 2, 3], false_color=True, label="tropical_rainforest"
    )
    s = next(iter(r))
    assert s["record"]["false_color"] is True
    assert s["metadata"].date.year == 1985
    assert 85 < s["metadata"].gsd_m < 92  # degrees converted to metres at the latitude
