"""Acquisition metadata of a remote-sensing image: the value type, its validation, its parsers and its
conversion to model inputs.

Every field is optional. A :class:`Metadata` can only exist in a valid state: construction validates every
field and raises one :class:`~rsgen.errors.MetadataError` listing each problem with the field, the value and
the allowed range. Conversion to model inputs (normalised values + a per-field "present" mask) lives here and
nowhere else, so that training, sampling and evaluation agree on it.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as _dt
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsgen.errors import MetadataError

# Allowed ranges, shared by validation and error messages.
GSD_RANGE_M = (
    0.005,
    10_000.0,
)  # 5 mm (close-range drone) .. 10 km (geostationary): anything else is a unit error
YEAR_RANGE = (1900, 2100)
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)
CLOUD_RANGE = (0.0, 1.0)
OFF_NADIR_RANGE_DEG = (0.0, 90.0)


@dataclass(frozen=True)
class AcquisitionDate:
    """A possibly partial acquisition date: a year, optionally a month, optionally a day."""

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        problems = _date_problems(self.year, self.month, self.day)
        if problems:
            raise MetadataError("; ".join(problems))

    @classmethod
    def parse(cls, text: str) -> AcquisitionDate:
        """Parse ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``YYYYMMDD`` or an ISO date-time (``2019-07-04T10:30:00Z``)."""
        s = str(text).strip()
        m = re.fullmatch(
            r"(\d{4})(?:[-/:](\d{1,2})(?:[-/:](\d{1,2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?)?)?", s
        )
        if m is None:
            m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
        if m is None:
            raise MetadataError(
                f"date: cannot parse {text!r}; expected YYYY, YYYY-MM or YYYY-MM-DD (e.g. 2019-07-04)"
            )
        year, month, day = (int(g) if g is not None else None for g in m.groups())
        return cls(year, month, day)

    @classmethod
    def from_value(cls, value: Any) -> AcquisitionDate:
        """Accept an AcquisitionDate, a datetime/date, a string, or a mapping with year/month/day."""
        if isinstance(value, AcquisitionDate):
            return value
        if isinstance(value, _dt.datetime | _dt.date):
            return cls(value.year, value.month, value.day)
        if isinstance(value, Mapping):
            unknown = set(value) - {"year", "month", "day"}
            if unknown or "year" not in value:
                raise MetadataError(f"date: expected keys year[, month, day], got {sorted(value)}")
            return cls(*(_as_int("date." + k, value.get(k)) for k in ("year", "month", "day")))
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            return cls.parse(value)
        raise MetadataError(f"date: expected a date string like 2019-07-04, got {value!r}")

    @property
    def day_of_year(self) -> float | None:
        """Day of the year (1-366) at the middle of what is known; None when only the year is known."""
        if self.month is None:
            return None
        day = self.day if self.day is not None else (calendar.monthrange(self.year, self.month)[1] + 1) / 2
        return _dt.date(self.year, self.month, 1).timetuple().tm_yday - 1 + float(day)

    @property
    def decimal_year(self) -> float:
        """The year with the known part of the date as a fraction (year only: the middle of the year)."""
        doy = self.day_of_year
        days = 366 if calendar.isleap(self.year) else 365
        return self.year + ((doy - 0.5) / days if doy is not None else 0.5)

    def isoformat(self) -> str:
        parts = [f"{self.year:04d}"]
        if self.month is not None:
            parts.append(f"{self.month:02d}")
            if self.day is not None:
                parts.append(f"{self.day:02d}")
        return "-".join(parts)

    def __str__(self) -> str:
        return self.isoformat()


def _date_problems(year: Any, month: Any, day: Any) -> list[str]:
    problems = []
    if not _is_int(year) or not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        problems.append(f"date.year={year!r} is outside the allowed range [{YEAR_RANGE[0]}, {YEAR_RANGE[1]}]")
    if month is not None and (not _is_int(month) or not 1 <= month <= 12):
        problems.append(f"date.month={month!r} is outside the allowed range [1, 12]")
    if day is not None:
        if month is None:
            problems.append(f"date.day={day!r} given without a month")
        elif not problems:
            last = calendar.monthrange(year, month)[1]
            if not _is_int(day) or not 1 <= day <= last:
                problems.append(
                    f"date.day={day!r} is outside the allowed range [1, {last}] for {year}-{month:02d}"
                )
    return problems


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(name: str, v: Any) -> int | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise MetadataError(f"{name}: expected an integer, got {v!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise MetadataError(f"{name}: expected an integer, got {v!r}")
    return int(f)


def _as_float(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise MetadataError(f"{name}: expected a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise MetadataError(f"{name}: expected a number, got {v!r}") from None


@dataclass(frozen=True)
class Metadata:
    """Acquisition metadata; every field may be missing (None).

    gsd_m: ground sample distance in metres per pixel. lat/lon: image centre in WGS84 degrees (both or
    neither). date: acquisition date, possibly partial. cloud_cover: fraction 0-1. off_nadir_deg: view angle
    from nadir. sensor: free text (e.g. "NAIP", "Sentinel-2"). extra: further fields a source provides,
    kept and written out but not used by the model.
    """

    gsd_m: float | None = None
    lat: float | None = None
    lon: float | None = None
    date: AcquisitionDate | None = None
    cloud_cover: float | None = None
    off_nadir_deg: float | None = None
    sensor: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Coerce numbers (int -> float) and dates, then validate everything at once.
        for name in ("gsd_m", "lat", "lon", "cloud_cover", "off_nadir_deg"):
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        if self.date is not None and not isinstance(self.date, AcquisitionDate):
            object.__setattr__(self, "date", AcquisitionDate.from_value(self.date))
        if self.sensor is not None:
            object.__setattr__(self, "sensor", str(self.sensor))
        problems = self.problems()
        if problems:
            raise MetadataError("invalid metadata: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every validation problem, each naming the field, its value and the allowed range."""
        checks = [
            ("gsd_m", self.gsd_m, GSD_RANGE_M, "m (must be > 0)"),
            ("lat", self.lat, LAT_RANGE, "degrees"),
            ("lon", self.lon, LON_RANGE, "degrees"),
            ("cloud_cover", self.cloud_cover, CLOUD_RANGE, "(a fraction, not a percentage)"),
            ("off_nadir_deg", self.off_nadir_deg, OFF_NADIR_RANGE_DEG, "degrees"),
        ]
        out = []
        for name, value, (lo, hi), unit in checks:
            if value is None:
                continue
            if not math.isfinite(value):
                out.append(f"{name}={value} is not a finite number")
            elif not lo <= value <= hi:
                out.append(f"{name}={value:g} is outside the allowed range [{lo:g}, {hi:g}] {unit}")
        if (self.lat is None) != (self.lon is None):
            given = "lat" if self.lat is not None else "lon"
            out.append(f"{given} given without {'lon' if given == 'lat' else 'lat'}: give both or neither")
        return out

    # ----------------------------------------------------------------------------------------------- views
    @property
    def has_location(self) -> bool:
        return self.lat is not None and self.lon is not None

    def present_fields(self) -> list[str]:
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        ]

    def replace(self, **changes: Any) -> Metadata:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def merged_with(self, other: Metadata) -> Metadata:
        """Fields of ``other`` where given, else this one's (e.g. command-line values over a --like tile)."""
        changes = {name: getattr(other, name) for name in other.present_fields()}
        return dataclasses.replace(self, **changes, extra={**self.extra, **other.extra})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with only the present fields (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {}
        for name in self.present_fields():
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, AcquisitionDate) else value
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``gsd 0.5 m, 47.0200N 99.1500W, 2019-07-04``."""
        parts = []
        if self.gsd_m is not None:
            parts.append(f"gsd {self.gsd_m:.4g} m")
        if self.has_location:
            assert self.lat is not None and self.lon is not None
            parts.append(
                f"{abs(self.lat):.4f}{'N' if self.lat >= 0 else 'S'} {abs(self.lon):.4f}{'E' if self.lon >= 0 else 'W'}"
            )
        if self.date is not None:
            parts.append(str(self.date))
        if self.cloud_cover is not None:
            parts.append(f"cloud {self.cloud_cover:.0%}")
        if self.off_nadir_deg is not None:
            parts.append(f"off-nadir {self.off_nadir_deg:g} deg")
        if self.sensor:
            parts.append(self.sensor)
        return ", ".join(parts) if parts else "no metadata"

    # --------------------------------------------------------------------------------------------- parsers
    _ALIASES = {
        "gsd": "gsd_m",
        "latitude": "lat",
        "longitude": "lon",
        "cloud": "cloud_cover",
        "off_nadir": "off_nadir_deg",
        "off_nadir_angle_dbl": "off_nadir_deg",
        "acquisition_date": "date",
        "timestamp": "date",
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metadata:
        """Build from a dict (as written by :meth:`to_dict`); accepts common aliases (gsd, latitude, cloud,
        timestamp, ...) and ``latlon: [lat, lon]``. Unknown keys are kept in ``extra``."""
        if not isinstance(data, Mapping):
            raise MetadataError(f"metadata: expected a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        raw_extra = data.get("extra") or {}
        if not isinstance(raw_extra, Mapping):
            raise MetadataError(f"metadata 'extra': expected an object, got {type(raw_extra).__name__}")
        extra: dict[str, Any] = dict(raw_extra)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        for key, value in data.items():
            if key == "extra" or value is None:
                continue
            if key == "latlon":
                kwargs["lat"], kwargs["lon"] = _parse_latlon(value)
                continue
            name = cls._ALIASES.get(key, key)
            if name in names:
                kwargs[name] = value
            else:
                extra[key] = value
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Metadata:
        """Parse a JSON object given as text or as a path to a ``.json`` file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise MetadataError(f"metadata: no such JSON file {path}")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise MetadataError(
                f"metadata: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            ) from None
        return cls.from_dict(data)

    @classmethod
    def from_cli(
        cls,
        *,
        gsd: str | float | None = None,
        latlon: str | None = None,
        lat: str | float | None = None,
        lon: str | float | None = None,
        date: str | None = None,
        cloud: str | float | None = None,
        off_nadir: str | float | None = None,
        sensor: str | None = None,
    ) -> Metadata:
        """Build from command-line strings: ``--gsd 0.5 --latlon 47.02,-99.15 --date 2019-07-04 --cloud 0.1``."""
        if latlon is not None:
            if lat is not None or lon is not None:
                raise MetadataError("--latlon: give either --latlon or --lat/--lon, not both")
            lat, lon = _parse_latlon(latlon)
        return cls(
            gsd_m=_parse_number("--gsd", gsd, strip_units=("m",)),
            lat=_parse_number("--lat", lat),
            lon=_parse_number("--lon", lon),
            date=AcquisitionDate.parse(date) if date else None,
            cloud_cover=_parse_cloud(cloud),
            off_nadir_deg=_parse_number("--off-nadir", off_nadir),
            sensor=sensor,
        )

    @classmethod
    def from_geotiff(cls, path: str | Path) -> Metadata:
        """Read GSD, centre lat/lon and date from a GeoTIFF (see :func:`read_geotiff_metadata`)."""
        return read_geotiff_metadata(path)[0]


def _parse_number(option: str, value: Any, strip_units: tuple[str, ...] = ()) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        s = value.strip().lower()
        for unit in strip_units:
            s = s.removesuffix(unit).strip()
        value = s
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{option}: expected a number, got {value!r}") from None


def _parse_cloud(value: Any) -> float | None:
    """Cloud cover as a fraction; ``"15%"`` is accepted and converted."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = _parse_number("--cloud", value.strip()[:-1])
        return None if number is None else number / 100.0
    return _parse_number("--cloud", value)


def _parse_latlon(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = []
    if len(parts) != 2:
        raise MetadataError(f"--latlon: expected 'LAT,LON' (e.g. 47.02,-99.15), got {value!r}")
    lat, lon = (_parse_number("--latlon", p) for p in parts)
    assert lat is not None and lon is not None
    return lat, lon


# ------------------------------------------------------------------------------------------- from GeoTIFF
# File-name conventions that carry the acquisition date, most specific first.
_FILENAME_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("NAIP file name", re.compile(r"^m_\d{7}_[a-z]{2}_\d{1,2}_\d{1,3}_(\d{8})", re.I)),
    ("Landsat product id", re.compile(r"^L[CTEOM]0\d_[A-Z0-9]{4}_\d{6}_(\d{8})_", re.I)),
    ("Sentinel-2 product id", re.compile(r"^S2[ABCD]_MSI[A-Z0-9]{3}_(\d{8})T\d{6}", re.I)),
    ("ISO date in file name", re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")),
    ("YYYYMMDD in file name", re.compile(r"(?:^|[_\-.])((?:19|20)\d{6})(?:$|[_\-.T])")),
    ("year as file name", re.compile(r"^((?:19|20)\d{2})$")),
]
_DATE_TAGS = (
    "RSGEN_DATE",
    "ACQUISITION_DATE",
    "ACQUISITIONDATE",
    "DATE_ACQUIRED",
    "ACQUISITION_TIME",
    "DATE",
)


def date_from_filename(name: str) -> tuple[AcquisitionDate, str] | None:
    """The acquisition date a file name encodes (NAIP, Landsat, Sentinel-2, ISO or YYYYMMDD, bare year)."""
    stem = Path(name).name.split(".")[0]
    for source, pattern in _FILENAME_DATE_PATTERNS:
        m = pattern.search(stem)
        if m:
            try:
                return AcquisitionDate.parse(m.group(1)), source
            except MetadataError:
                continue
    return None


def sidecar_path(path: str | Path) -> Path | None:
    """The JSON sidecar of a raster: ``scene.tif.json`` or ``scene.json`` beside it."""
    path = Path(path)
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def read_geotiff_metadata(path: str | Path) -> tuple[Metadata, dict[str, str]]:
    """Metadata of a GeoTIFF and, for each field found, where it came from.

    GSD: the nominal pixel size in metres for projected CRSs in any linear unit; where the projection's scale
    at the tile differs from 1 by more than 2% (Mercator away from the equator) or the CRS is geographic, the
    true ground distance of one pixel at the tile centre on the WGS84 ellipsoid. Centre lat/lon: the centre
    pixel transformed to WGS84. Date: a JSON sidecar, then rsgen/acquisition TIFF tags, then the file name.
    A raster without a CRS yields no GSD or location (it still may have a date).
    """
    import rasterio
    import rasterio.errors
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioIOError

    from rsgen.errors import GeoTiffError

    path = Path(path)
    if not path.exists():
        raise GeoTiffError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(path)
        with ds:
            crs, transform, width, height = ds.crs, ds.transform, ds.width, ds.height
            tags = {k.upper(): v for k, v in ds.tags().items()}
    except RasterioIOError as e:
        raise GeoTiffError(f"{path}: not a readable raster ({str(e).splitlines()[0]})") from None

    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    stored = tags.get("RSGEN_METADATA")
    if stored:
        try:
            for k, v in Metadata.from_json(stored).to_dict().items():
                fields[k] = v
                sources[k] = "rsgen tag"
        except MetadataError:
            pass
    if crs is not None and not transform.is_identity:
        try:
            lat, lon, gsd, how = georeference_facts(crs, transform, width, height)
        except (rasterio.errors.RasterioError, CPLE_BaseError, ValueError, ArithmeticError) as e:
            # e.g. an engineering CRS with no path to WGS84, or a degenerate transform
            raise GeoTiffError(
                f"{path}: its CRS cannot be placed on the Earth ({str(e).splitlines()[0][:120]})"
            ) from None
        fields.update(lat=lat, lon=lon, gsd_m=gsd)
        sources.update(lat="CRS + transform", lon="CRS + transform", gsd_m=how)

    if "date" not in fields:
        for tag in _DATE_TAGS:
            if tags.get(tag):
                try:
                    fields["date"] = AcquisitionDate.parse(tags[tag][:10].replace(":", "-"))
                    sources["date"] = f"TIFF tag {tag}"
                    break
                except MetadataError:
                    continue
    if "date" not in fields:
        found = date_from_filename(path.name)
        if found:
            fields["date"], sources["date"] = found

    side = sidecar_path(path)
    if side is not None:
        try:
            side_fields = Metadata.from_json(side).to_dict()
        except MetadataError as e:
            raise MetadataError(f"{side}: {e}") from None
        for k, v in side_fields.items():
            fields[k] = v
            sources[k] = f"sidecar {side.name}"
    try:
        return Metadata.from_dict(fields), sources
    except MetadataError as e:
        raise MetadataError(f"{path}: {e}") from None


# WGS84 ellipsoid
_WGS84_A = 6_378_137.0
_WGS84_E2 = 6.694379990141317e-3


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of longitude and of latitude at a latitude (WGS84 ellipsoid)."""
    phi = math.radians(lat)
    w = math.sqrt(1 - _WGS84_E2 * math.sin(phi) ** 2)
    n = _WGS84_A / w  # prime vertical radius of curvature
    m = _WGS84_A * (1 - _WGS84_E2) / w**3  # meridional radius of curvature
    return math.radians(1) * n * math.cos(phi), math.radians(1) * m


def georeference_facts(crs: Any, transform: Any, width: int, height: int) -> tuple[float, float, float, str]:
    """(centre lat, centre lon, GSD in metres, how the GSD was found) of a georeferenced grid."""
    from rasterio.warp import transform as warp_transform

    # Centre pixel and its right and lower neighbours, in WGS84.
    px = [transform @ (width / 2 + dx, height / 2 + dy) for dx, dy in ((0, 0), (1, 0), (0, 1))]
    lons, lats = warp_transform(crs, "EPSG:4326", [p[0] for p in px], [p[1] for p in px])
    lat, lon = float(lats[0]), float(lons[0])
    mx, my = metres_per_degree(lat)

    def ground(i: int) -> float:
        dlon = (lons[i] - lons[0] + 180) % 360 - 180
        return math.hypot(dlon * mx, (lats[i] - lats[0]) * my)

    true_gsd = math.sqrt(ground(1) * ground(2))  # geometric mean of the x and y pixel sizes
    if crs.is_geographic:
        return lat, lon, true_gsd, "pixel size in degrees converted to metres at the tile's latitude"
    unit_to_m = crs.linear_units_factor[1]
    nominal = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d)) * unit_to_m
    if abs(true_gsd / nominal - 1) > 0.02:
        return lat, lon, true_gsd, "ground distance of one pixel (projection scale differs from 1 here)"
    return lat, lon, nominal, f"pixel size in {crs.linear_units} of the projected CRS"


# ------------------------------------------------------------------------------------ model-side encoding
@dataclass(frozen=True)
class ModelField:
    """One metadata field as the model sees it: a name and a number of value columns."""

    name: str
    width: int


# The model's metadata fields, in column order. The "present" mask has one column per field.
MODEL_FIELDS: tuple[ModelField, ...] = (
    ModelField("gsd", 1),  # log10(gsd_m), centred on 1 m and scaled: 0.01 m -> -1, 100 m -> +1
    ModelField("location", 3),  # unit vector on the sphere (x, y, z) from lat/lon
    ModelField("year", 1),  # (decimal year - 2000) / 25
    ModelField("season", 2),  # (sin, cos) of the day of the year
    ModelField("cloud", 1),  # 2 * cloud_cover - 1
    ModelField("off_nadir", 1),  # off_nadir_deg / 45 - 1
)
METADATA_DIM = sum(f.width for f in MODEL_FIELDS)
NUM_METADATA_FIELDS = len(MODEL_FIELDS)


def field_slices() -> dict[str, slice]:
    """Column slice of each model field within the value vector."""
    out, start = {}, 0
    for f in MODEL_FIELDS:
        out[f.name] = slice(start, start + f.width)
        start += f.width
    return out


def encode_one(meta: Metadata | None) -> tuple[list[float], list[bool]]:
    """Normalised values (``METADATA_DIM``) and present flags (``NUM_METADATA_FIELDS``) for one image."""
    values: list[float] = []
    present: list[bool] = []
    meta = meta or Metadata()

    def put(ok: bool, vals: Sequence[float], width: int) -> None:
        present.append(ok)
        values.extend(vals if ok else [0.0] * width)

    put(meta.gsd_m is not None, [math.log10(meta.gsd_m or 1.0) / 2.0], 1)
    if meta.has_location:
        phi, lam = math.radians(meta.lat or 0.0), math.radians(meta.lon or 0.0)
        put(True, [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)], 3)
    else:
        put(False, [], 3)
    put(meta.date is not None, [((meta.date.decimal_year if meta.date else 2000.0) - 2000.0) / 25.0], 1)
    doy = meta.date.day_of_year if meta.date else None
    angle = 2 * math.pi * ((doy or 1.0) - 1.0) / 365.25
    put(doy is not None, [math.sin(angle), math.cos(angle)], 2)
    put(meta.cloud_cover is not None, [2.0 * (meta.cloud_cover or 0.0) - 1.0], 1)
    put(meta.off_nadir_deg is not None, [(meta.off_nadir_deg or 0.0) / 45.0 - 1.0], 1)
    return values, present


def encode_metadata(metas: Sequence[Metadata | None]):  # -> tuple[torch.Tensor, torch.Tensor]
    """Model inputs for a batch: values ``(B, METADATA_DIM)`` float32 and present ``(B, NUM_METADATA_FIELDS)`` bool.

    Columns of absent fields are zero; the model replaces them with a learned "missing" embedding.
    """
    import torch

    rows = [encode_one(m) for m in metas]
    values = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(len(rows), METADATA_DIM)
    present = torch.tensor([r[1] for r in rows], dtype=torch.bool).reshape(len(rows), NUM_METADATA_FIELDS)
    return values, present
