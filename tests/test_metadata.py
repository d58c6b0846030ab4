"""Metadata: validation, parsers (property-based), GeoTIFF reading, model-side encoding."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st

from rsgen.errors import GeoTiffError, MetadataError
from rsgen.metadata import (
    METADATA_DIM,
    NUM_METADATA_FIELDS,
    AcquisitionDate,
    Metadata,
    date_from_filename,
    encode_metadata,
    field_slices,
    metres_per_degree,
    read_geotiff_metadata,
)

# ------------------------------------------------------------------------------------------- validation


def test_every_field_may_be_missing() -> None:
    m = Metadata()
    assert m.present_fields() == []
    assert m.describe() == "no metadata"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lat": 91.0, "lon": 0.0}, "lat=91 is outside the allowed range [-90, 90]"),
        ({"lat": 0.0, "lon": -180.5}, "lon=-180.5 is outside the allowed range [-180, 180]"),
        ({"gsd_m": 0.0}, "gsd_m=0 is outside the allowed range"),
        ({"gsd_m": -1.0}, "gsd_m=-1"),
        ({"gsd_m": 1e6}, "gsd_m=1e+06 is outside"),
        ({"gsd_m": float("nan")}, "gsd_m=nan is not a finite number"),
        ({"lat": float("inf"), "lon": 0.0}, "lat=inf is not a finite number"),
        ({"cloud_cover": 1.5}, "cloud_cover=1.5 is outside the allowed range [0, 1]"),
        ({"cloud_cover": -0.1}, "cloud_cover=-0.1"),
        ({"off_nadir_deg": 95.0}, "off_nadir_deg=95"),
        ({"lat": 10.0}, "lat given without lon"),
        ({"gsd_m": "abc"}, "gsd_m: expected a number, got 'abc'"),
        ({"gsd_m": True}, "gsd_m: expected a number"),
    ],
)
def test_validation_names_field_value_and_range(kwargs: dict, needle: str) -> None:
    with pytest.raises(MetadataError) as e:
        Metadata(**kwargs)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(MetadataError) as e:
        Metadata(gsd_m=-1, lat=100, lon=200, cloud_cover=2)
    msg = str(e.value)
    for field in ("gsd_m", "lat", "lon", "cloud_cover"):
        assert field + "=" in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2019-02-30", "date.day=30 is outside the allowed range [1, 28] for 2019-02"),
        ("2019-13-01", "date.month=13"),
        ("1800-01-01", "date.year=1800"),
        ("July 4th", "cannot parse"),
        ("2019-7-4x", "cannot parse"),
    ],
)
def test_impossible_dates(text: str, needle: str) -> None:
    with pytest.raises(MetadataError) as e:
        AcquisitionDate.parse(text)
    assert needle in str(e.value)


def test_leap_day_is_valid() -> None:
    assert AcquisitionDate.parse("2020-02-29").day_of_year == 60


def test_partial_dates() -> None:
    assert AcquisitionDate.parse("1990") == AcquisitionDate(1990)
    assert AcquisitionDate.parse("1990-07") == AcquisitionDate(1990, 7)
    assert AcquisitionDate.parse("20190704") == AcquisitionDate(2019, 7, 4)
    assert AcquisitionDate.parse("2019-07-04T10:30:00Z") == AcquisitionDate(2019, 7, 4)
    assert AcquisitionDate(1990).day_of_year is None
    assert AcquisitionDate(2019, 7).day_of_year == pytest.approx(181 + 16)
    with pytest.raises(MetadataError, match="without a month"):
        AcquisitionDate(2019, None, 4)


# ---------------------------------------------------------------------------------------------- parsers


def test_from_cli() -> None:
    m = Metadata.from_cli(gsd="0.5", latlon="47.02,-99.15", date="2019-07-04", cloud="15%")
    assert (m.gsd_m, m.lat, m.lon, m.cloud_cover) == (0.5, 47.02, -99.15, 0.15)
    assert m.date == AcquisitionDate(2019, 7, 4)
    assert Metadata.from_cli(gsd="10m").gsd_m == 10.0
    assert Metadata.from_cli(latlon="-8.4 -74.4").lat == -8.4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"latlon": "47.02"}, "--latlon: expected 'LAT,LON'"),
        ({"latlon": "a,b"}, "--latlon: expected a number"),
        ({"gsd": "fast"}, "--gsd: expected a number, got 'fast'"),
        ({"latlon": "95,0"}, "lat=95"),
        ({"latlon": "1,2", "lat": "3"}, "not both"),
    ],
)
def test_from_cli_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(MetadataError) as e:
        Metadata.from_cli(**kwargs)
    assert needle in str(e.value)


def test_dict_and_json_round_trip_with_aliases_and_extra() -> None:
    m = Metadata.from_dict(
        {"gsd": 0.3, "latlon": [10, 20], "timestamp": "2017-05-01T10:00:00Z", "sensor": "WV3", "x": 1}
    )
    assert m.gsd_m == 0.3 and m.lat == 10 and m.date == AcquisitionDate(2017, 5, 1) and m.extra == {"x": 1}
    back = Metadata.from_json(m.to_json())
    assert back == m and back.extra == {"x": 1}
    with pytest.raises(MetadataError, match="invalid JSON"):
        Metadata.from_json("{nope")
    with pytest.raises(MetadataError, match="expected a JSON object"):
        Metadata.from_dict([1, 2])  # type: ignore[arg-type]


dates = st.dates(
    min_value=__import__("datetime").date(1900, 1, 1), max_value=__import__("datetime").date(2100, 12, 31)
)
finite = {"allow_nan": False, "allow_infinity": False}


@given(
    gsd=st.floats(0.005, 10_000, **finite) | st.none(),
    lat=st.floats(-90, 90, **finite),
    lon=st.floats(-180, 180, **finite),
    has_loc=st.booleans(),
    day=dates | st.none(),
    cloud=st.floats(0, 1, **finite) | st.none(),
)
def test_valid_metadata_round_trips_through_json(gsd, lat, lon, has_loc, day, cloud) -> None:  # type: ignore[no-untyped-def]
    m = Metadata(
        gsd_m=gsd, lat=lat if has_loc else None, lon=lon if has_loc else None, date=day, cloud_cover=cloud
    )
    assert Metadata.from_json(m.to_json()) == m
    assert Metadata.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@given(day=dates)
def test_date_strings_round_trip(day) -> None:  # type: ignore[no-untyped-def]
    for text in (day.isoformat(), day.strftime("%Y%m%d"), f"{day.isoformat()}T12:00:00Z"):
        d = AcquisitionDate.parse(text)
        assert (d.year, d.month, d.day) == (day.year, day.month, day.day)
        assert AcquisitionDate.parse(d.isoformat()) == d


@given(lat=st.floats(-90, 90, **finite), lon=st.floats(-180, 180, **finite))
def test_latlon_strings_round_trip(lat: float, lon: float) -> None:
    m = Metadata.from_cli(latlon=f"{lat!r},{lon!r}")
    assert (m.lat, m.lon) == (lat, lon)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_gsd_is_accepted_or_rejected_cleanly(value: float) -> None:
    try:
        m = Metadata.from_cli(gsd=repr(value))
    except MetadataError as e:
        assert "gsd_m" in str(e)
    else:
        assert m.gsd_m is not None and 0.005 <= m.gsd_m <= 10_000


@given(text=st.text(max_size=20))
def test_arbitrary_date_text_never_crashes(text: str) -> None:
    with contextlib.suppress(MetadataError):
        AcquisitionDate.parse(text)


# ------------------------------------------------------------------------------------- file-name dates


@pytest.mark.parametrize(
    ("name", "expected", "source"),
    [
        ("m_4709963_se_14_1_20120731.tif", AcquisitionDate(2012, 7, 31), "NAIP file name"),
        ("m_3807537_ne_18_060_20180815_20190211.tif", AcquisitionDate(2018, 8, 15), "NAIP file name"),
        (
            "LC08_L1TP_044034_20200715_20200722_02_T1_B4.TIF",
            AcquisitionDate(2020, 7, 15),
            "Landsat product id",
        ),
        (
            "S2A_MSIL2A_20210504T101031_N0300_R022_T32TQM.tif",
            AcquisitionDate(2021, 5, 4),
            "Sentinel-2 product id",
        ),
        ("scene_2019-03-02.tif", AcquisitionDate(2019, 3, 2), "ISO date in file name"),
        ("1990.tif", AcquisitionDate(1990), "year as file name"),
    ],
)
def test_date_from_filename(name: str, expected: AcquisitionDate, source: str) -> None:
    assert date_from_filename(name) == (expected, source)


def test_no_date_in_filename() -> None:
    assert date_from_filename("OSBS_029.tif") is None
    assert date_from_filename("tile_99999999.tif") is None  # not a valid date


# ------------------------------------------------------------------------------------- GeoTIFF reading


def test_projected_crs_gsd_and_centre(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    path = fake_geotiff("m_4709963_se_14_1_20120731.tif", crs="EPSG:32614")
    meta, sources = read_geotiff_metadata(path)
    assert meta.gsd_m == pytest.approx(2.0)
    assert meta.lat == pytest.approx(47.0, abs=0.05) and meta.lon == pytest.approx(-99.0, abs=0.05)
    assert meta.date == AcquisitionDate(2012, 7, 31)
    assert sources["date"] == "NAIP file name"


def test_projected_crs_in_feet(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    # NAD83 / Texas Central (ftUS): 3 ft pixels are 0.9144 m
    path = fake_geotiff(crs="EPSG:2277", transform=Affine(3.0, 0, 3_000_000, 0, -3.0, 10_000_000))
    meta, _ = read_geotiff_metadata(path)
    assert meta.gsd_m == pytest.approx(3 * 0.3048006, rel=1e-4)


def test_geographic_crs_gsd_from_degrees(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    path = fake_geotiff(crs="EPSG:4326", transform=Affine(0.001, 0, 10.0, 0, -0.001, 60.0))
    meta, sources = read_geotiff_metadata(path)
    mx, my = metres_per_degree(meta.lat)  # at 60 N a degree of longitude is half a degree of latitude
    assert meta.gsd_m == pytest.approx(math.sqrt(0.001 * mx * 0.001 * my), rel=1e-3)
    assert 70 < meta.gsd_m < 80
    assert "degrees" in sources["gsd_m"]


def test_mercator_gsd_is_scaled_to_ground(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    # World Mercator at ~60 N: a 1 m Mercator pixel is ~0.5 m on the ground
    path = fake_geotiff(crs="EPSG:3395", transform=Affine(1.0, 0, 1_000_000, 0, -1.0, 8_390_000))
    meta, _ = read_geotiff_metadata(path)
    assert meta.lat == pytest.approx(60, abs=0.3)
    assert meta.gsd_m == pytest.approx(math.cos(math.radians(meta.lat)), rel=0.01)


def test_missing_crs_gives_no_location(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    meta, _ = read_geotiff_metadata(fake_geotiff("nocrs.tif", crs=None))
    assert meta.gsd_m is None and meta.lat is None


def test_date_from_tag_and_sidecar(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    path = fake_geotiff("a.tif", tags={"ACQUISITION_DATE": "2015:06:01 10:00:00"})
    assert read_geotiff_metadata(path)[0].date == AcquisitionDate(2015, 6, 1)
    path.with_suffix(".json").write_text(json.dumps({"date": "2016-01-02", "cloud_cover": 0.2}))
    meta, sources = read_geotiff_metadata(path)
    assert meta.date == AcquisitionDate(2016, 1, 2) and meta.cloud_cover == 0.2
    assert sources["date"] == "sidecar a.json"


def test_bad_sidecar_names_the_file(fake_geotiff) -> None:  # type: ignore[no-untyped-def]
    path = fake_geotiff("b.tif")
    path.with_suffix(".json").write_text(json.dumps({"cloud_cover": 40}))
    with pytest.raises(MetadataError, match=r"b\.json: .*cloud_cover=40"):
        read_geotiff_metadata(path)


def test_unreadable_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GeoTiffError, match="no such file"):
        read_geotiff_metadata(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(GeoTiffError, match="not a readable raster"):
        read_geotiff_metadata(bad)


# ---------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_naip_tiles(datasets) -> None:  # type: ignore[no-untyped-def]
    files = sorted((datasets / "naip-timeseries").glob("*.tif"))
    assert len(files) == 8
    for path in files:
        meta = Metadata.from_geotiff(path)
        assert meta.gsd_m == pytest.approx(5.0)
        assert meta.lat == pytest.approx(47.02, abs=0.01) and meta.lon == pytest.approx(-99.15, abs=0.01)
        assert (
            meta.date is not None
            and meta.date.isoformat() == path.stem[-8:-4] + "-" + path.stem[-4:-2] + "-" + path.stem[-2:]
        )


@pytest.mark.realdata
def test_landsat_tiles_gsd_from_degrees(datasets) -> None:  # type: ignore[no-untyped-def]
    import rasterio

    for path in sorted((datasets / "landsat-timeseries").glob("*.tif")):
        meta = Metadata.from_geotiff(path)
        with rasterio.open(path) as ds:
            deg = ds.transform.a  # 0.000808 degrees per pixel in these files
        mx, my = metres_per_degree(meta.lat)
        # ~89 m: the files' real pixel size (0.000808 deg), i.e. 30 m Landsat resampled; not the nominal 0.001 deg
        assert meta.gsd_m == pytest.approx(deg * math.sqrt(mx * my), rel=1e-3)
        assert 80 < meta.gsd_m < 115
        assert meta.lat == pytest.approx(-8.43, abs=0.1) and meta.date == AcquisitionDate(int(path.stem))


@pytest.mark.realdata
def test_highres_mercator_scene(datasets) -> None:  # type: ignore[no-untyped-def]
    meta = Metadata.from_geotiff(datasets / "highres-aerial" / "5b90f92da0d7280005fab355_4310.tif")
    assert meta.gsd_m == pytest.approx(0.1 * math.cos(math.radians(meta.lat)), rel=0.01)


# --------------------------------------------------------------------------------------- model inputs


def test_encoding_shapes_and_present_mask() -> None:
    values, present = encode_metadata([Metadata(), Metadata(gsd_m=10.0, date="2019-07"), None])
    assert values.shape == (3, METADATA_DIM) and present.shape == (3, NUM_METADATA_FIELDS)
    assert not present[0].any() and not present[2].any() and (values[0] == 0).all()
    sl = field_slices()
    names = [name for name in sl]
    assert present[1].tolist() == [n in ("gsd", "year", "season") for n in names]
    assert values[1, sl["gsd"]].item() == pytest.approx(0.5)


def test_location_encoding_is_on_the_sphere() -> None:
    values, _ = encode_metadata(
        [Metadata(lat=47.0, lon=-99.0), Metadata(lat=0.0, lon=180.0), Metadata(lat=0, lon=-180)]
    )
    loc = values[:, field_slices()["location"]]
    assert loc.norm(dim=1).tolist() == pytest.approx([1, 1, 1])
    assert loc[1].tolist() == pytest.approx(loc[2].tolist(), abs=1e-6)  # the antimeridian is one place


def test_season_is_cyclic() -> None:
    values, _ = encode_metadata(
        [Metadata(date="2019-12-31"), Metadata(date="2020-01-01"), Metadata(date="2019-07-01")]
    )
    season = values[:, field_slices()["season"]]
    assert (season[0] - season[1]).norm() < 0.05 < (season[0] - season[2]).norm()
