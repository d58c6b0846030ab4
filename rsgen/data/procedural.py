"""Procedural remote-sensing scenes whose appearance follows known rules of the metadata (synthetic benchmark).

The real data sets have few seasons and few places, so they cannot show whether a model obeys month, latitude,
GSD or cloud cover. These scenes can: every visual cue is a stated function of the metadata.

* **Layout in metres** (roads of a width in metres on a rotated grid, rectangular buildings of 10-18 m,
  lakes and rivers, fields / forest / gardens), anchored in a world fixed by the layout seed and rendered at
  the requested GSD, so object size in pixels is ``size_m / gsd_m`` exactly; textures are fractal noise in
  metres too. Exact masks come with every scene.
* **Season** from day of year and latitude (hemisphere-aware): a temperature model
  ``T = 27 - 0.42 |lat| + 0.3 |lat| cos(2 pi (doy - 196) / 365.25)`` (sign flipped south of the equator) sets
  the snow cover of open land ``clip(-T / 12, 0, 1)``, the leaf state ``greenness = clip((T - 2) / 10, 0, 1)``
  and, while the season cools, autumn colour ``4 g (1 - g)``; crops and trees share these colours.
* **Sun** at local noon: declination ``23.44 sin(2 pi (284 + doy) / 365)`` (Cooper), elevation
  ``90 - |lat - decl|``; building shadows of length ``height / tan(elevation)`` point away from the sun
  (north where the sun is south of the zenith, i.e. north in the northern hemisphere outside the tropics).
* **Clouds**: fractal noise in pixel units thresholded by rank so that exactly ``cloud_cover`` of the pixels
  are cloud, with thin haze at the edges and cloud shadows cast away from the sun.

Missing metadata fields are drawn from :class:`MetadataRanges` and recorded in the scene's metadata.
:func:`write_procedural_set` writes PNGs, mask PNGs and a manifest in the format of ``notes/contracts.md``.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rsgen.errors import DataError, MetadataError
from rsgen.metadata import AcquisitionDate, Metadata

log = logging.getLogger(__name__)

SOURCE_NAME = "procedural"
SceneType = Literal["residential", "rural", "forest"]
SCENE_TYPES: tuple[SceneType, ...] = ("residential", "rural", "forest")
MASK_NAMES = ("roads", "buildings", "water", "vegetation", "snow", "shadow", "cloud", "cloud_shadow")
# Class indexes of the segmentation condition (coloured with rsgen.conditions.SEGMENTATION_PALETTE).
SEGMENTATION_CLASSES = {"background": 0, "vegetation": 1, "roads": 2, "buildings": 3, "water": 4}

# Colours (RGB 0-255) of the rules; the measurement functions in rsgen.eval.procedural_checks rely on them.
LEAF_GREEN = (70.0, 105.0, 50.0)
LEAF_BARE = (120.0, 98.0, 75.0)
LEAF_AUTUMN = (175.0, 120.0, 45.0)
SNOW = (195.0, 203.0, 218.0)
CLOUD = (251.0, 251.0, 251.0)
ROAD = (80.0, 80.0, 85.0)
WATER = (30.0, 55.0, 75.0)
ROOFS = ((150.0, 75.0, 60.0), (85.0, 85.0, 90.0), (120.0, 90.0, 70.0), (100.0, 108.0, 122.0))
SHADOW_FACTOR = 0.45  # building shadows multiply the ground by this
CLOUD_SHADOW_FACTOR = 0.75
CLOUD_CORE_ALPHA = 0.95  # opacity inside the cloud mask (up to 1.0)
CLOUD_HAZE_ALPHA = 0.2  # most opacity of the haze just outside it


# ------------------------------------------------------------------------------------------- configuration
@dataclass
class MetadataRanges:
    """Ranges that missing metadata fields are drawn from: GSD log-uniform, lat/lon uniform, a uniform day
    within the years, cloud cover 0 with probability ``cloud_free_probability`` else uniform."""

    gsd_m: tuple[float, float] = (0.5, 4.0)
    lat: tuple[float, float] = (-65.0, 65.0)
    lon: tuple[float, float] = (-180.0, 180.0)
    years: tuple[int, int] = (2000, 2023)
    cloud_cover: tuple[float, float] = (0.0, 0.7)
    cloud_free_probability: float = 0.4

    def __post_init__(self) -> None:
        for name in ("gsd_m", "lat", "lon", "years", "cloud_cover"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise DataError(f"procedural ranges: {name}=({lo}, {hi}) must have low <= high")
        if not self.gsd_m[0] > 0:
            raise DataError(f"procedural ranges: gsd_m={self.gsd_m} must be > 0 metres")
        if not 0.0 <= self.cloud_free_probability <= 1.0:
            raise DataError(
                f"procedural ranges: cloud_free_probability={self.cloud_free_probability} not in [0, 1]"
            )


@dataclass
class SceneParams:
    """Constants of the rules. ``building_height_m`` is one value so that the shadow length follows from the
    metadata alone; ``building_size_m`` is the range of each side (uniform)."""

    building_height_m: float = 8.0
    building_size_m: tuple[float, float] = (10.0, 18.0)
    min_sun_elevation_deg: float = 3.0  # shadows are drawn for at least this elevation (polar night)
    scene_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # residential, rural, forest
    sensor_noise: float = 2.0  # std of per-pixel noise, DN
    blur_px: float = 0.5  # Gaussian PSF sigma in pixels

    def __post_init__(self) -> None:
        lo, hi = self.building_size_m
        if not 0 < lo <= hi:
            raise DataError(
                f"procedural scene: building_size_m={self.building_size_m} must be 0 < low <= high"
            )
        if not self.building_height_m > 0:
            raise DataError(f"procedural scene: building_height_m={self.building_height_m} must be > 0")
        if len(self.scene_weights) != 3 or min(self.scene_weights) < 0 or sum(self.scene_weights) <= 0:
            raise DataError(f"procedural scene: scene_weights={self.scene_weights} must be 3 weights >= 0")

    @property
    def mean_building_side_m(self) -> float:
        """E[sqrt(a b)] for independent sides a, b ~ U(lo, hi): the expected building scale in metres."""
        lo, hi = self.building_size_m
        if hi == lo:
            return lo
        mean_sqrt = (2.0 / 3.0) * (hi**1.5 - lo**1.5) / (hi - lo)
        return mean_sqrt**2


@dataclass
class ProceduralConfig:
    """A procedural set (``configs/data/procedural.yaml``)."""

    out_dir: str = "data/procedural"
    n: int = 2000
    size: int = 64
    seed: int = 0
    val: float = 0.1
    test: float = 0.0
    write_masks: bool = True
    ranges: MetadataRanges = field(default_factory=MetadataRanges)
    scene: SceneParams = field(default_factory=SceneParams)


# ------------------------------------------------------------------------------------------------ the rules
@dataclass(frozen=True)
class SeasonSun:
    """Rule values that follow from latitude and day of year alone."""

    day_of_year: float
    season_phase: float  # +1 local midsummer, -1 local midwinter
    temperature_c: float
    snow_cover: float  # fraction of open land (not water, not road) under snow
    greenness: float  # 1 full summer leaf, 0 bare
    autumn: float  # amount of autumn colour (0..1)
    leaf_colour: tuple[float, float, float]
    solar_declination_deg: float
    sun_elevation_deg: float
    shadow_direction: Literal["north", "south"]


def solar_declination_deg(day_of_year: float) -> float:
    """Cooper's formula for the sun's declination."""
    return 23.44 * math.sin(2 * math.pi * (284.0 + day_of_year) / 365.0)


def noon_sun_elevation_deg(lat: float, day_of_year: float) -> float:
    """Elevation of the sun at local solar noon (negative in polar night)."""
    return 90.0 - abs(lat - solar_declination_deg(day_of_year))


def leaf_colour(greenness: float, autumn: float) -> tuple[float, float, float]:
    """Vegetation colour: bare brown -> green by greenness, then toward orange-yellow by autumn."""
    base = np.asarray(LEAF_BARE) + greenness * (np.asarray(LEAF_GREEN) - np.asarray(LEAF_BARE))
    out = base + autumn * (np.asarray(LEAF_AUTUMN) - base)
    return (float(out[0]), float(out[1]), float(out[2]))


def season_and_sun(lat: float, day_of_year: float) -> SeasonSun:
    """The season / sun rules (see the module docstring) at a latitude and day of year."""
    phase = math.cos(2 * math.pi * (day_of_year - 196.0) / 365.25)
    if lat < 0:
        phase = -phase
    a = abs(lat)
    temperature = 27.0 - 0.42 * a + 0.3 * a * phase
    snow = min(max(-temperature / 12.0, 0.0), 1.0)
    green = min(max((temperature - 2.0) / 10.0, 0.0), 1.0)
    # Cooling half of the year: local midsummer -> midwinter (d phase / d day < 0).
    cooling = math.sin(2 * math.pi * (day_of_year - 196.0) / 365.25) * (1 if lat >= 0 else -1) > 0
    autumn = 4.0 * green * (1.0 - green) if cooling else 0.0
    decl = solar_declination_deg(day_of_year)
    elevation = 90.0 - abs(lat - decl)
    return SeasonSun(
        day_of_year=day_of_year,
        season_phase=phase,
        temperature_c=temperature,
        snow_cover=snow,
        greenness=green,
        autumn=autumn,
        leaf_colour=leaf_colour(green, autumn),
        solar_declination_deg=decl,
        sun_elevation_deg=elevation,
        shadow_direction="north" if lat >= decl else "south",
    )


def shadow_length_m(sun_elevation_deg: float, height_m: float, min_elevation_deg: float = 3.0) -> float:
    """Noon shadow length of an object of ``height_m`` (the elevation floored at ``min_elevation_deg``)."""
    return height_m / math.tan(math.radians(max(sun_elevation_deg, min_elevation_deg)))


def expected_rules(meta: Metadata, params: SceneParams | None = None) -> dict[str, Any]:
    """The rule values that follow from the metadata alone (no layout): what a model asked for ``meta`` should
    show. Rules whose fields are missing are NaN (or None for the shadow direction)."""
    params = params or SceneParams()
    nan = float("nan")
    out: dict[str, Any] = {
        "snow_cover": nan,
        "greenness": nan,
        "autumn": nan,
        "sun_elevation_deg": nan,
        "shadow_length_m": nan,
        "shadow_length_px": nan,
        "shadow_direction": None,
        "cloud_fraction": nan,
        "building_size_px": nan,
        "leaf_colour": None,
    }
    doy = meta.date.day_of_year if meta.date is not None else None
    if meta.lat is not None and doy is not None:
        ss = season_and_sun(meta.lat, doy)
        length = shadow_length_m(ss.sun_elevation_deg, params.building_height_m, params.min_sun_elevation_deg)
        out.update(
            snow_cover=ss.snow_cover,
            greenness=ss.greenness,
            autumn=ss.autumn,
            leaf_colour=ss.leaf_colour,
            sun_elevation_deg=ss.sun_elevation_deg,
            shadow_length_m=length,
            shadow_direction=ss.shadow_direction,
        )
        if meta.gsd_m is not None:
            out["shadow_length_px"] = length / meta.gsd_m
    if meta.cloud_cover is not None:
        out["cloud_fraction"] = meta.cloud_cover
    if meta.gsd_m is not None:
        out["building_size_px"] = params.mean_building_side_m / meta.gsd_m
    return out


# -------------------------------------------------------------------------------------- metadata completion
def complete_metadata(
    meta: Metadata | None, rng: np.random.Generator, ranges: MetadataRanges | None = None
) -> tuple[Metadata, list[str]]:
    """The metadata with every field the rules need (gsd, lat/lon, full date, cloud cover); missing ones drawn
    from ``ranges``. Returns it and the names of the drawn fields. Draws happen in a fixed order whatever is
    given, so a field given or not does not change the others' draws."""
    meta = meta or Metadata()
    ranges = ranges or MetadataRanges()
    draws = {
        "gsd_m": math.exp(rng.uniform(math.log(ranges.gsd_m[0]), math.log(ranges.gsd_m[1]))),
        "lat": rng.uniform(*ranges.lat),
        "lon": rng.uniform(*ranges.lon),
        "year": int(rng.integers(ranges.years[0], ranges.years[1] + 1)),
        "month": int(rng.integers(1, 13)),
        "day_u": rng.random(),
        "cloud": 0.0 if rng.random() < ranges.cloud_free_probability else rng.uniform(*ranges.cloud_cover),
    }
    drawn: list[str] = []
    changes: dict[str, Any] = {}
    if meta.gsd_m is None:
        changes["gsd_m"] = draws["gsd_m"]
        drawn.append("gsd_m")
    if not meta.has_location:
        changes.update(lat=draws["lat"], lon=draws["lon"])
        drawn += ["lat", "lon"]
    date = meta.date
    if date is None or date.month is None or date.day is None:
        year = date.year if date is not None else draws["year"]
        month = date.month if date is not None and date.month is not None else draws["month"]
        day = 1 + int(draws["day_u"] * calendar.monthrange(year, month)[1])
        changes["date"] = AcquisitionDate(year, month, day)
        drawn.append("date" if date is None else "date.day" if date.month is not None else "date.month")
    if meta.cloud_cover is None:
        changes["cloud_cover"] = draws["cloud"]
        drawn.append("cloud_cover")
    try:
        return (meta.replace(**changes) if changes else meta), drawn
    except MetadataError as e:
        raise DataError(f"procedural metadata: {e}") from None


# ------------------------------------------------------------------------------------------------- noise
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _hash01(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """A uniform number in [0, 1) per integer lattice point (splitmix64 finaliser), same shape as ix."""
    h = ix.astype(np.int64).view(np.uint64) * _M1
    h ^= iy.astype(np.int64).view(np.uint64) * _M2
    h ^= np.uint64((key * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _key(seed: int, name: str) -> int:
    """A 64-bit stream key for one named random component of a layout."""
    return int.from_bytes(hashlib.blake2b(f"{seed}|{name}".encode(), digest_size=8).digest(), "little")


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, key: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] on a lattice of ``cell`` units, evaluated at points (x, y)."""
    gx, gy = np.asarray(x, float) / cell, np.asarray(y, float) / cell
    fx, fy = np.floor(gx), np.floor(gy)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    fx, fy = gx - fx, gy - fy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = int(ix.min(initial=0)), int(iy.min(initial=0))
    nx, ny = int(ix.max(initial=0)) - x0 + 2, int(iy.max(initial=0)) - y0 + 2
    if nx * ny <= 4 * ix.size + 16:  # hash the lattice once and gather (a few lattice points per pixel)
        lx, ly = np.meshgrid(np.arange(x0, x0 + nx), np.arange(y0, y0 + ny), indexing="ij")
        table = _hash01(lx, ly, key)  # (nx, ny)
        jx, jy = ix - x0, iy - y0
        v00, v10, v01, v11 = table[jx, jy], table[jx + 1, jy], table[jx, jy + 1], table[jx + 1, jy + 1]
    else:
        v00, v10 = _hash01(ix, iy, key), _hash01(ix + 1, iy, key)
        v01, v11 = _hash01(ix, iy + 1, key), _hash01(ix + 1, iy + 1, key)
    top = v00 + fx * (v10 - v00)
    bottom = v01 + fx * (v11 - v01)
    return 2.0 * (top + fy * (bottom - top)) - 1.0


def grid_value_noise(cols: np.ndarray, rows: np.ndarray, cell: float, key: int) -> np.ndarray:
    """:func:`value_noise` on the regular grid of points (cols[j], rows[i]) -> (len(rows), len(cols)), by
    separable interpolation of a hashed lattice table (much faster than point by point)."""
    gx, gy = np.asarray(cols, float) / cell, np.asarray(rows, float) / cell
    fx, fy = np.floor(gx), np.floor(gy)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    fx, fy = gx - fx, gy - fy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = int(ix.min()), int(iy.min())
    lx, ly = np.meshgrid(np.arange(x0, int(ix.max()) + 2), np.arange(y0, int(iy.max()) + 2), indexing="ij")
    table = _hash01(lx, ly, key)  # (nx, ny)
    jx, jy = ix - x0, iy - y0
    along_x = table[jx] + fx[:, None] * (table[jx + 1] - table[jx])  # (W, ny)
    both = along_x[:, jy] + fy[None, :] * (along_x[:, jy + 1] - along_x[:, jy])  # (W, H)
    return 2.0 * both.T - 1.0  # (H, W)


def fractal_noise(
    x: np.ndarray,
    y: np.ndarray,
    cell: float,
    octaves: int,
    key: int,
    min_cell: float = 0.0,
    grid: bool = False,
) -> np.ndarray:
    """Fractal (fBm) value noise, roughly in [-1, 1], at points (x, y), or on the grid of 1-D ``x`` columns and
    ``y`` rows when ``grid`` (-> (len(y), len(x))). Octaves finer than ``min_cell`` (2 pixels, so that a metric
    texture does not alias at a coarse GSD) are left out; the normalisation keeps all of them, so a coarse
    GSD only loses fine detail."""
    shape = (np.size(y), np.size(x)) if grid else np.broadcast(x, y).shape
    out = np.zeros(shape)
    total = 0.0
    amp = 1.0
    for k in range(octaves):
        c = cell / 2**k
        total += amp
        if c >= min_cell:
            out += amp * (grid_value_noise(x, y, c, key + k) if grid else value_noise(x, y, c, key + k))
        amp *= 0.5
    return out / total


def _rank_threshold(field_values: np.ndarray, fraction: float, where: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the ``round(fraction * n)`` largest values (of the pixels in ``where``)."""
    flat = field_values.ravel()
    idx = np.flatnonzero(where.ravel()) if where is not None else np.arange(flat.size)
    k = int(round(min(max(fraction, 0.0), 1.0) * idx.size))
    mask = np.zeros(flat.size, bool)
    if k > 0:
        order = np.argsort(-flat[idx], kind="stable")
        mask[idx[order[:k]]] = True
    return mask.reshape(field_values.shape)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float image (reflect edges)."""
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    rows = sum(k[i] * pad[:, i : i + w] for i in range(k.size))  # (H + 2r, W, C)
    return sum(k[i] * rows[i : i + h] for i in range(k.size))  # (H, W, C)


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class Layout:
    """World parameters of one layout seed (all lengths in metres)."""

    scene_type: SceneType
    angle: float  # road grid orientation, radians
    road_spacing: tuple[float, float]
    road_presence: float
    road_offset: tuple[float, float]
    road_width: float
    building_spacing: float
    building_presence: float
    lake_cell: float
    lake_presence: float
    river: bool
    river_angle: float
    river_width: float
    river_offset: float
    forest_fraction: float  # share of vegetation that is forest
    parcel_size: float
    seed: int


def draw_layout(seed: int, params: SceneParams) -> Layout:
    """The world of a layout seed: scene type, road grid, building lattice, lakes, river."""
    rng = np.random.default_rng([seed, 0x5CE4E])
    w = np.asarray(params.scene_weights, float)
    scene = SCENE_TYPES[int(rng.choice(3, p=w / w.sum()))]
    spacing = {"residential": (80, 140), "rural": (250, 450), "forest": (350, 600)}[scene]
    return Layout(
        scene_type=scene,
        angle=float(rng.uniform(0, math.pi / 2)),
        road_spacing=(float(rng.uniform(*spacing)), float(rng.uniform(*spacing))),
        road_presence={"residential": 0.9, "rural": 0.6, "forest": 0.4}[scene],
        road_offset=(float(rng.uniform(0, 1000)), float(rng.uniform(0, 1000))),
        road_width=float(rng.uniform(6.0, 10.0)),
        building_spacing=float(rng.uniform(26.0, 34.0)),
        building_presence={"residential": 0.85, "rural": 0.06, "forest": 0.015}[scene],
        lake_cell=float(rng.uniform(200.0, 320.0)),
        lake_presence=float(rng.uniform(0.15, 0.45)),
        river=bool(rng.random() < 0.15),
        river_angle=float(rng.uniform(0, math.pi)),
        river_width=float(rng.uniform(12.0, 40.0)),
        river_offset=float(rng.uniform(-150.0, 150.0)),
        forest_fraction={"residential": 0.15, "rural": 0.3, "forest": 0.9}[scene],
        parcel_size=float(rng.uniform(40.0, 110.0)),
        seed=seed,
    )


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def roads_at(lay: Layout, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(road mask, distance in metres to the nearest road centre line) at world points."""
    u, v = _rotate(x, y, lay.angle)
    dist = np.full(np.shape(u), np.inf)
    for coord, spacing, offset, fam in (
        (v, lay.road_spacing[0], lay.road_offset[0], 1),
        (u, lay.road_spacing[1], lay.road_offset[1], 2),
    ):
        k = np.round((coord - offset) / spacing)
        d = np.abs(coord - offset - k * spacing)
        present = (
            _hash01(k.astype(np.int64), np.full(k.shape, fam, np.int64), _key(lay.seed, "roads"))
            < lay.road_presence
        )
        dist = np.where(present, np.minimum(dist, d), dist)
    return dist <= lay.road_width / 2, dist


def water_at(lay: Layout, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Water mask at world points: noise-edged lakes on a coarse lattice (one lake of radius 20-90 m at most
    per cell), and a meandering river."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    wet = np.zeros(x.shape, bool)
    if x.size == 0:
        return wet
    key = _key(lay.seed, "lakes")
    c = lay.lake_cell
    reach = 90.0 * 1.3  # largest radius, with the edge noise
    ix = np.arange(math.floor((x.min() - reach) / c), math.floor((x.max() + reach) / c) + 1)
    iy = np.arange(math.floor((y.min() - reach) / c), math.floor((y.max() + reach) / c) + 1)
    lx, ly = (a.ravel() for a in np.meshgrid(ix, iy, indexing="ij"))
    present = _hash01(lx, ly, key) < lay.lake_presence
    lx, ly = lx[present], ly[present]
    if lx.size:
        edge = 0.25 * fractal_noise(x, y, 40.0, 3, _key(lay.seed, "lake-edge"))
        cx = (lx + 0.2 + 0.6 * _hash01(lx, ly, key + 1)) * c
        cy = (ly + 0.2 + 0.6 * _hash01(lx, ly, key + 2)) * c
        radius = 20.0 + 70.0 * _hash01(lx, ly, key + 3)
        for i in range(lx.size):
            wet |= np.hypot(x - cx[i], y - cy[i]) / radius[i] + edge < 1.0
    if lay.river:
        u, v = _rotate(x, y, lay.river_angle)
        centre = lay.river_offset + 40.0 * np.sin(u / 90.0 + lay.seed % 7)
        wet |= np.abs(v - centre) <= lay.river_width / 2
    return wet


@dataclass(frozen=True)
class Building:
    cx: float
    cy: float
    half_a: float  # half side along the grid direction, metres
    half_b: float
    roof: int  # index into ROOFS


def buildings_near(lay: Layout, params: SceneParams, half_extent: float, margin: float) -> list[Building]:
    """Buildings whose footprint (plus ``margin`` for shadows) may reach the window of ``half_extent``
    metres around the origin: a jittered lattice in the road grid's frame, kept off roads and water."""
    sp = lay.building_spacing
    reach = (half_extent + margin + sp) * math.sqrt(2)
    n = int(math.ceil(reach / sp))
    iu, iv = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    iu, iv = iu.ravel(), iv.ravel()
    key = _key(lay.seed, "buildings")
    keep = _hash01(iu, iv, key) < lay.building_presence
    iu, iv = iu[keep], iv[keep]
    lo, hi = params.building_size_m
    a = (lo + (hi - lo) * _hash01(iu, iv, key + 1)) / 2
    b = (lo + (hi - lo) * _hash01(iu, iv, key + 2)) / 2
    u = (iu + 0.5) * sp + (2 * _hash01(iu, iv, key + 3) - 1) * 2.0
    v = (iv + 0.5) * sp + (2 * _hash01(iu, iv, key + 4) - 1) * 2.0
    c, s = math.cos(lay.angle), math.sin(lay.angle)
    x, y = u * c - v * s, u * s + v * c  # back to world axes
    inside = (np.abs(x) <= half_extent + margin + sp) & (np.abs(y) <= half_extent + margin + sp)
    x, y, a, b, iu, iv = x[inside], y[inside], a[inside], b[inside], iu[inside], iv[inside]
    # Off roads (with a 2 m setback) and out of water (centre and corners).
    _, road_d = roads_at(lay, x, y)
    ok = road_d > lay.road_width / 2 + 2.0 + np.hypot(a, b)
    corners = np.asarray([(0, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)], float)  # (5, 2)
    du, dv = corners[:, :1] * a, corners[:, 1:] * b  # (5, N)
    ok &= ~water_at(lay, x + du * c - dv * s, y + du * s + dv * c).any(axis=0)
    roof = (_hash01(iu, iv, key + 5) * len(ROOFS)).astype(int)
    return [
        Building(float(x[i]), float(y[i]), float(a[i]), float(b[i]), int(roof[i])) for i in np.flatnonzero(ok)
    ]


# ------------------------------------------------------------------------------------------------ scenes
@dataclass
class ProceduralScene:
    """One scene: ``image`` (H, W, 3) uint8, ``masks`` {name: (H, W) bool}, the full metadata (drawn fields
    included), the rule values used, and which fields were drawn at random."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: dict[str, np.ndarray]  # each (H, W) bool
    metadata: Metadata
    rules: dict[str, Any]
    drawn: list[str]
    seed: int


def generate_scene(
    metadata: Metadata | None = None,
    seed: int = 0,
    size: int = 64,
    *,
    params: SceneParams | None = None,
    ranges: MetadataRanges | None = None,
) -> ProceduralScene:
    """Render one scene of ``size`` x ``size`` pixels for ``metadata`` (missing fields drawn from ``ranges``
    with the seed) and the world of layout ``seed``. Deterministic in (metadata, seed, size, params)."""
    if not isinstance(size, int | np.integer) or size < 8:
        raise DataError(f"procedural scene: size={size!r}: expected an integer number of pixels >= 8")
    params = params or SceneParams()
    rng = np.random.default_rng([seed, 0xD47A])
    meta, drawn = complete_metadata(metadata, rng, ranges)
    assert meta.gsd_m is not None and meta.lat is not None and meta.date is not None
    assert meta.cloud_cover is not None
    gsd = meta.gsd_m
    doy = meta.date.day_of_year
    assert doy is not None
    ss = season_and_sun(meta.lat, doy)
    lay = draw_layout(seed, params)
    h = w = int(size)

    # Pixel centres in world metres; row 0 is north (y grows northwards).
    cols = (np.arange(w) + 0.5 - w / 2) * gsd
    rows = (h / 2 - np.arange(h) - 0.5) * gsd
    x, y = np.meshgrid(cols, rows)  # (H, W) each
    min_cell = 2 * gsd

    roads, _ = roads_at(lay, x, y)
    water = water_at(lay, x, y) & ~roads  # roads cross water on bridges
    shadow_m = shadow_length_m(ss.sun_elevation_deg, params.building_height_m, params.min_sun_elevation_deg)
    north = ss.shadow_direction == "north"
    buildings = buildings_near(lay, params, half_extent=w * gsd / 2, margin=shadow_m)
    bmask, bshadow, roof_rgb, visible = _rasterize_buildings(buildings, lay.angle, x, y, gsd, shadow_m, north)

    # Ground: vegetation colour of the season, textured in metres.
    forest_noise = fractal_noise(cols, rows, 120.0, 3, _key(seed, "forest"), min_cell, grid=True)
    forest = forest_noise > 0.8 * (0.5 - lay.forest_fraction)  # about forest_fraction of the land
    u, v = _rotate(x, y, lay.angle + 0.3)
    pu, pv = np.floor(u / lay.parcel_size), np.floor(v / lay.parcel_size)
    parcel = _hash01(pu.astype(np.int64), pv.astype(np.int64), _key(seed, "parcels"))
    stripe_period = 4.0 + 4.0 * parcel
    stripe_amp = 0.06 * np.clip((stripe_period / gsd - 2.0) / 2.0, 0.0, 1.0)
    field_bright = 0.9 + 0.25 * parcel + stripe_amp * np.sin(2 * np.pi * u / stripe_period)
    if lay.scene_type == "residential":
        field_bright = 0.95 + 0.1 * fractal_noise(
            cols, rows, 30.0, 3, _key(seed, "lawn"), min_cell, grid=True
        )
    bright = field_bright  # (H, W)
    if forest.any():
        crowns = fractal_noise(cols, rows, 12.0, 3, _key(seed, "crowns"), min_cell, grid=True)
        bright = np.where(forest, 0.72 + 0.18 * crowns, field_bright)
    img = bright[:, :, None] * np.asarray(ss.leaf_colour)  # (H, W, 3)

    # Snow on open land (not water, not roads: they are cleared), exactly the rule's share of it.
    snowable = ~water & ~roads
    snow = np.zeros((h, w), bool)
    snow_rgb = None
    if ss.snow_cover > 0:
        snow_field = fractal_noise(cols, rows, 60.0, 4, _key(seed, "snow"), min_cell, grid=True)
        snow = _rank_threshold(snow_field, ss.snow_cover, snowable)
        snow_tex = 1.0 + 0.03 * fractal_noise(
            cols, rows, 15.0, 2, _key(seed, "snow-tex"), min_cell, grid=True
        )
        snow_rgb = snow_tex[:, :, None] * np.asarray(SNOW)  # (H, W, 3)
        img = np.where(snow[:, :, None], snow_rgb, img)
    if roads.any():
        road_tex = 1.0 + 0.05 * fractal_noise(cols, rows, 5.0, 2, _key(seed, "asphalt"), min_cell, grid=True)
        img = np.where(roads[:, :, None], road_tex[:, :, None] * np.asarray(ROAD), img)
    if water.any():
        water_tex = 1.0 + 0.06 * fractal_noise(cols, rows, 20.0, 3, _key(seed, "waves"), min_cell, grid=True)
        img = np.where(water[:, :, None], water_tex[:, :, None] * np.asarray(WATER), img)
    if snow_rgb is not None:
        roof_rgb = np.where(snow[:, :, None], snow_rgb, roof_rgb)
    img = np.where(bmask[:, :, None], roof_rgb, img)
    shadow = bshadow & ~bmask
    img = np.where(shadow[:, :, None], img * SHADOW_FACTOR, img)

    cloud, cloud_shadow, alpha, cloud_rgb = _clouds(h, w, meta.cloud_cover, north, seed)
    img = np.where(cloud_shadow[:, :, None], img * CLOUD_SHADOW_FACTOR, img)
    img = img * (1 - alpha[:, :, None]) + alpha[:, :, None] * cloud_rgb

    img = _gaussian_blur(img, params.blur_px)
    img = img + rng.normal(0.0, params.sensor_noise, img.shape)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    vegetation = snowable & ~bmask
    masks = {
        "roads": roads,
        "buildings": bmask,
        "water": water,
        "vegetation": vegetation,
        "snow": snow,
        "shadow": shadow,
        "cloud": cloud,
        "cloud_shadow": cloud_shadow,
    }
    n_pix = float(h * w)
    in_view = [b for b, n_px in zip(buildings, visible, strict=True) if n_px > 0]
    sizes_m = [2 * math.sqrt(b.half_a * b.half_b) for b in in_view]
    rules = {
        **{k: v for k, v in asdict(ss).items() if k != "leaf_colour"},
        "leaf_colour": list(ss.leaf_colour),
        "snow_fraction": float(snow.sum() / max(snowable.sum(), 1)),
        "shadow_length_m": shadow_m,
        "shadow_length_px": shadow_m / gsd,
        "cloud_fraction": float(cloud.mean()),
        "building_height_m": params.building_height_m,
        "building_size_m": float(np.mean(sizes_m)) if sizes_m else float("nan"),
        "building_size_px": float(np.mean(sizes_m)) / gsd if sizes_m else float("nan"),
        "expected_building_size_px": params.mean_building_side_m / gsd,
        "n_buildings": len(in_view),
        "scene_type": lay.scene_type,
        "road_fraction": float(roads.sum() / n_pix),
        "water_fraction": float(water.sum() / n_pix),
        "building_fraction": float(bmask.sum() / n_pix),
        "has_river": bool(lay.river and water.any()),
    }
    return ProceduralScene(image=image, masks=masks, metadata=meta, rules=rules, drawn=drawn, seed=seed)


def _rasterize_buildings(
    buildings: list[Building],
    angle: float,
    x: np.ndarray,
    y: np.ndarray,
    gsd: float,
    shadow_m: float,
    north: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(footprint mask (H, W), shadow mask (H, W), roof colours (H, W, 3), pixels of each footprint in view)
    of rotated-rectangle buildings.

    A pixel is in shadow when the segment of length ``shadow_m`` from it toward the sun (south when the
    shadows point north) meets a footprint (slab test in the building's frame)."""
    h, w = x.shape
    bmask = np.zeros((h, w), bool)
    smask = np.zeros((h, w), bool)
    roof = np.zeros((h, w, 3))
    c, s = math.cos(angle), math.sin(angle)
    sun = (0.0, -1.0) if north else (0.0, 1.0)  # world direction from a shadow pixel toward the sun
    du, dv = sun[0] * c + sun[1] * s, -sun[0] * s + sun[1] * c
    x0, y0 = x[0, 0], y[0, 0]
    visible = []
    for b in buildings:
        visible.append(0)
        r = math.hypot(b.half_a, b.half_b)
        # Pixel window holding the footprint and its shadow.
        ys = (b.cy - r - (0 if north else shadow_m), b.cy + r + (shadow_m if north else 0))
        c_lo = max(0, int((b.cx - r - x0) / gsd) - 1)
        c_hi = min(w, int((b.cx + r - x0) / gsd) + 2)
        r_lo = max(0, int((y0 - ys[1]) / gsd) - 1)
        r_hi = min(h, int((y0 - ys[0]) / gsd) + 2)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        px, py = x[r_lo:r_hi, c_lo:c_hi] - b.cx, y[r_lo:r_hi, c_lo:c_hi] - b.cy
        pu, pv = px * c + py * s, -px * s + py * c
        inside = (np.abs(pu) <= b.half_a) & (np.abs(pv) <= b.half_b)
        t_lo, t_hi = np.zeros_like(pu), np.full_like(pu, shadow_m)
        for p, d, half in ((pu, du, b.half_a), (pv, dv, b.half_b)):
            if abs(d) < 1e-12:
                ok = np.abs(p) <= half
                t_hi = np.where(ok, t_hi, -1.0)
            else:
                t1, t2 = (-half - p) / d, (half - p) / d
                t_lo = np.maximum(t_lo, np.minimum(t1, t2))
                t_hi = np.minimum(t_hi, np.maximum(t1, t2))
        shaded = t_lo <= t_hi
        # Roof: the half facing the sun is lit more (a ridge along the long side).
        ridge = pv if b.half_a >= b.half_b else pu
        facing = ridge * (dv if b.half_a >= b.half_b else du) > 0
        colour = np.asarray(ROOFS[b.roof]) * np.where(facing, 1.08, 0.88)[:, :, None]
        sub = roof[r_lo:r_hi, c_lo:c_hi]
        sub[inside] = colour[inside]
        bmask[r_lo:r_hi, c_lo:c_hi] |= inside
        smask[r_lo:r_hi, c_lo:c_hi] |= shaded
        visible[-1] = int(inside.sum())
    return bmask, smask, roof, visible


def _clouds(
    h: int, w: int, cover: float, north: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cloud mask, cloud-shadow mask, opacity (H, W), cloud colour (H, W, 3)); exactly round(cover * H * W)
    cloud pixels. Clouds are fractal noise in pixel units (a cloud field is km-scale, so at these GSDs its
    shape in the image does not follow the GSD); the shadow is the same field shifted away from the sun."""
    none = np.zeros((h, w), bool)
    if cover <= 0:
        return none, none, np.zeros((h, w)), np.zeros((h, w, 3))
    shift = max(2, int(round(0.15 * h)))
    key = _key(seed, "clouds")
    big = fractal_noise(
        np.arange(w, dtype=float), np.arange(h + shift, dtype=float), max(h, w) / 2.0, 5, key, grid=True
    )  # (H + shift, W)
    # North shadows: the cloud casting a shadow at row r is south of it (row r + shift).
    field_c = big[:h] if north else big[shift:]
    field_s = big[shift:] if north else big[:h]
    cloud = _rank_threshold(field_c, cover)
    thr = -np.inf if cloud.all() else float(field_c[~cloud].max())  # cover > 0, so some pixels are cloud
    inner = float(np.clip((field_c[cloud] - thr).max(initial=0.0), 1e-6, None))
    alpha = np.where(
        cloud,
        CLOUD_CORE_ALPHA + (1 - CLOUD_CORE_ALPHA) * np.clip((field_c - thr) / inner, 0, 1),
        CLOUD_HAZE_ALPHA * np.clip(1 - (thr - field_c) / 0.08, 0, 1),
    )
    shadow = (field_s > thr) & ~cloud if np.isfinite(thr) else none
    shade = 1.0 - 0.04 * np.clip(
        fractal_noise(np.arange(w, dtype=float), np.arange(h, dtype=float), 6.0, 2, key + 99, grid=True),
        -1,
        1,
    )
    cloud_rgb = shade[:, :, None] * np.asarray(CLOUD)
    return cloud, shadow, alpha, cloud_rgb


# ----------------------------------------------------------------------------------------------- captions
def scene_captions(scene: ProceduralScene, n: int = 3, key: str = "") -> list[str]:
    """Captions describing what the scene shows (only features that are visible), e.g. "A snowy residential
    area with a road and a lake, seen from 2 m."."""
    from rsgen.data.captions import clean_caption, format_gsd

    r, m = scene.rules, scene.metadata
    masks = scene.masks
    px = masks["roads"].size
    rng = np.random.default_rng(
        int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    )
    visible_snow = r["snow_fraction"] * (1 - r["water_fraction"] - r["road_fraction"])
    if visible_snow > 0.5:
        season = "snowy"
    elif visible_snow > 0.1:
        season = "partly snow-covered"
    elif r["autumn"] > 0.5:
        season = "autumn"
    elif r["greenness"] > 0.8:
        season = rng.choice(["green", "summer"])
    elif r["greenness"] < 0.2:
        season = "bare winter"
    else:
        season = "early spring" if r["autumn"] == 0 else "late autumn"
    noun = {
        "residential": ["residential area", "housing estate", "suburb"],
        "rural": ["farmland", "rural area", "patchwork of fields"],
        "forest": ["forest", "woodland", "wooded area"],
    }[r["scene_type"]]
    features = []
    n_roads = masks["roads"].sum() / px
    if n_roads > 0.01:
        features.append("a road" if n_roads < 0.12 else "roads")
    if r["scene_type"] != "residential" and r["n_buildings"] > 0 and masks["buildings"].any():
        features.append("a few buildings" if r["n_buildings"] > 1 else "a building")
    if masks["water"].sum() / px > 0.02:
        features.append("a river" if r["has_river"] else "a lake")
    cloud = r["cloud_fraction"]
    cloud_text = "" if cloud < 0.05 else "partly cloudy" if cloud < 0.4 else "mostly cloudy"
    gsd = format_gsd(float(m.gsd_m or 1.0))
    month = calendar.month_name[m.date.month] if m.date is not None and m.date.month else ""
    lat = f"{abs(m.lat or 0):.0f}{'N' if (m.lat or 0) >= 0 else 'S'}"
    out: list[str] = []
    for i in range(n):
        article = "an" if season[0] in "aeiou" else "a"
        text = f"{article} {season} {noun[(i + int(rng.integers(3))) % len(noun)]}"
        if features:
            text += " with " + (
                features[0] if len(features) == 1 else ", ".join(features[:-1]) + " and " + features[-1]
            )
        if cloud_text:
            text += f", {cloud_text}"
        if i % 3 == 0:
            text += f", seen from {gsd} m"
        elif i % 3 == 1:
            text += f", {month} at {lat}, {gsd} m per pixel"
        else:
            text = f"aerial view of {text}" + (" with long shadows" if r["shadow_length_px"] > 8 else "")
        out.append(clean_caption(text))
    return out


# ------------------------------------------------------------------------------------------------- writer
def write_procedural_set(
    out_dir: str | Path,
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    val: float = 0.1,
    test: float = 0.0,
    write_masks: bool = True,
    params: SceneParams | None = None,
    ranges: MetadataRanges | None = None,
    metadata: list[Metadata | None] | None = None,
    progress: bool = True,
) -> Path:
    """Write ``n`` scenes as ``images/*.png`` (+ ``masks/<name>/*.png``, and ``conditions/`` footprints /
    roads / segmentation images) and ``manifest.jsonl`` in the contract format; returns the manifest path.

    Scene ``i`` uses layout seed ``hash(seed, i)`` and ``metadata[i]`` if given (missing fields drawn);
    everything is deterministic in ``seed``. The split is the stable hash split of the record id."""
    from tqdm import tqdm

    from rsgen.data.manifest import write_manifest
    from rsgen.data.splits import assign_split
    from rsgen.io import write_png

    if n < 1:
        raise DataError(f"procedural set: n={n}: expected at least one scene")
    if metadata is not None and len(metadata) != n:
        raise DataError(f"procedural set: {len(metadata)} metadata entries for n={n} scenes")
    out = Path(out_dir)
    records = []
    for i in tqdm(range(n), desc="procedural scenes", disable=not progress):
        scene_seed = _key(seed, f"scene{i}") & 0x7FFFFFFF
        scene = generate_scene(
            metadata[i] if metadata is not None else None, scene_seed, size, params=params, ranges=ranges
        )
        sid = f"{i:06d}"
        rid = f"{SOURCE_NAME}/{seed}/{sid}"
        write_png(out / "images" / f"{sid}.png", scene.image)
        masks: dict[str, str] | None = None
        conditions: dict[str, str] | None = None
        if write_masks:
            masks = {}
            for name in MASK_NAMES:
                rel = f"masks/{name}/{sid}.png"
                write_png(out / rel, scene.masks[name].astype(np.uint8)[:, :, None] * 255)
                masks[name] = rel
            conditions = {
                "footprints": masks["buildings"],
                "roads": masks["roads"],
                "segmentation": f"conditions/segmentation/{sid}.png",
            }
            write_png(out / conditions["segmentation"], segmentation_image(scene.masks))
        records.append(
            {
                "id": rid,
                "path": f"images/{sid}.png",
                "window": None,
                "bands": None,
                "captions": scene_captions(scene, 3, key=rid),
                "metadata": scene.metadata.to_dict(),
                "split": assign_split(rid, val, test, salt=SOURCE_NAME),
                "source": SOURCE_NAME,
                "label": scene.rules["scene_type"],
                "false_color": False,
                "gsd_factor": 1.0,
                "conditions": conditions,
                "masks": masks,
                "rules": _json_ready(scene.rules),
                "drawn": scene.drawn,
                "layout_seed": scene_seed,
                "synthetic": True,
            }
        )
    manifest = out / "manifest.jsonl"
    write_manifest(records, manifest)
    log.info("wrote %d procedural scenes to %s", n, manifest)
    return manifest


def segmentation_image(masks: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 class map (:data:`SEGMENTATION_CLASSES`) coloured with the segmentation palette."""
    from rsgen.conditions.geo import SEGMENTATION_PALETTE

    cls = np.zeros(masks["roads"].shape, np.int64)
    for name in ("vegetation", "water", "roads", "buildings"):
        cls[masks[name]] = SEGMENTATION_CLASSES[name]
    return SEGMENTATION_PALETTE[cls]


def write_config_set(config: ProceduralConfig, progress: bool = True) -> Path:
    """:func:`write_procedural_set` from a :class:`ProceduralConfig` (relative ``out_dir`` -> repository)."""
    from rsgen.paths import REPO_ROOT

    out = Path(config.out_dir)
    out = out if out.is_absolute() else REPO_ROOT / out
    return write_procedural_set(
        out,
        config.n,
        config.size,
        config.seed,
        val=config.val,
        test=config.test,
        write_masks=config.write_masks,
        params=config.scene,
        ranges=config.ranges,
        progress=progress,
    )


def _json_ready(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out
