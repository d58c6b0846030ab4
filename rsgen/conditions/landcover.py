"""Land-cover maps as a ControlNet condition: class ids -> the colour-coded map a segmentation-type ControlNet
takes (:data:`~rsgen.conditions.geo.SEGMENTATION_PALETTE`, class k in colour k), so a large scene follows a
layout ("fields here, a river there") instead of repeating one texture.

Sources: a GeoTIFF band of class ids (reprojected onto the output grid by nearest neighbour), a PNG with a
palette (its indexes are the class ids) or already colour-coded in this palette, and GeoJSON polygons with a
class attribute rasterised onto the output grid (``landcover-polygons``). Class ids are those of
:data:`LANDCOVER_CLASSES`; rasters in another code (e.g. ESA WorldCover) are mapped with ``value_map``.
Dataset labels of EuroSAT, UC Merced and AID map onto these classes with :func:`label_class`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from rsgen.conditions.geo import SEGMENTATION_PALETTE
from rsgen.conditions.registry import register_condition
from rsgen.errors import ConfigError, DataError

#: Land-cover classes; the index is the class id (0: no data / unlabelled).
LANDCOVER_CLASSES: tuple[str, ...] = (
    "unlabelled",
    "forest",
    "cropland",
    "permanent crop",
    "grassland",
    "shrubland",
    "wetland",
    "water",
    "beach",
    "bare land",
    "snow and ice",
    "residential",
    "commercial and industrial",
    "transport",
    "sports and leisure",
)
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(LANDCOVER_CLASSES)}


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(label).lower())


# Dataset labels (EuroSAT, UC Merced, AID; compared without case, spaces or punctuation) -> class name.
_LABELS: dict[str, str] = {
    # EuroSAT
    "annualcrop": "cropland",
    "forest": "forest",
    "herbaceousvegetation": "grassland",
    "highway": "transport",
    "industrial": "commercial and industrial",
    "pasture": "grassland",
    "permanentcrop": "permanent crop",
    "residential": "residential",
    "river": "water",
    "sealake": "water",
    # UC Merced
    "agricultural": "cropland",
    "airplane": "transport",
    "baseballdiamond": "sports and leisure",
    "beach": "beach",
    "buildings": "commercial and industrial",
    "chaparral": "shrubland",
    "denseresidential": "residential",
    "freeway": "transport",
    "golfcourse": "sports and leisure",
    "harbor": "water",
    "intersection": "transport",
    "mediumresidential": "residential",
    "mobilehomepark": "residential",
    "overpass": "transport",
    "parkinglot": "transport",
    "runway": "transport",
    "sparseresidential": "residential",
    "storagetanks": "commercial and industrial",
    "tenniscourt": "sports and leisure",
    # AID
    "airport": "transport",
    "bareland": "bare land",
    "baseballfield": "sports and leisure",
    "bridge": "transport",
    "center": "commercial and industrial",
    "church": "commercial and industrial",
    "commercial": "commercial and industrial",
    "desert": "bare land",
    "farmland": "cropland",
    "meadow": "grassland",
    "mountain": "bare land",
    "park": "sports and leisure",
    "parking": "transport",
    "playground": "sports and leisure",
    "pond": "water",
    "port": "water",
    "railwaystation": "transport",
    "resort": "sports and leisure",
    "school": "commercial and industrial",
    "square": "commercial and industrial",
    "stadium": "sports and leisure",
    "viaduct": "transport",
}
_LABELS.update({_key(name): name for name in LANDCOVER_CLASSES[1:]})

#: ESA WorldCover 10 m class codes -> class names (``value_map="worldcover"``).
WORLDCOVER: dict[int, str] = {
    10: "forest",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "residential",
    60: "bare land",
    70: "snow and ice",
    80: "water",
    90: "wetland",
    95: "wetland",
    100: "grassland",
}
VALUE_MAPS: dict[str, Mapping[int, str]] = {"worldcover": WORLDCOVER}


def label_class(label: str | None) -> int | None:
    """The class id of a dataset label ("Forest", "SeaLake", "denseresidential") or class name; None if
    the label has no land-cover class."""
    if label is None:
        return None
    name = _LABELS.get(_key(label))
    return None if name is None else CLASS_IDS[name]


def class_id(value: Any, where: str = "landcover") -> int:
    """A class id from an id or a name/label; DataError naming the known classes otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(LANDCOVER_CLASSES):
            return int(value)
    elif isinstance(value, str):
        cid = label_class(value)
        if cid is not None:
            return cid
    raise DataError(
        f"{where}: {value!r} is not a land-cover class; use an id 0..{len(LANDCOVER_CLASSES) - 1} or one of "
        f"{', '.join(LANDCOVER_CLASSES)}"
    )


def landcover_image(ids: np.ndarray) -> np.ndarray:
    """Class ids (H, W) -> the colour-coded control image (H, W, 3) uint8 (class k in palette colour k)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(LANDCOVER_CLASSES)):
        bad = ids[(ids < 0) | (ids >= len(LANDCOVER_CLASSES))].flat[0]
        raise DataError(f"landcover: class id {bad} is outside 0..{len(LANDCOVER_CLASSES) - 1}")
    return SEGMENTATION_PALETTE[ids.astype(np.int64)]


def landcover_ids(image: np.ndarray) -> np.ndarray:
    """The inverse of :func:`landcover_image`: (H, W, 3) uint8 colours -> class ids (H, W) int64; DataError
    for a colour that is no class's."""
    rgb = np.asarray(image, dtype=np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)
    pal = SEGMENTATION_PALETTE[: len(LANDCOVER_CLASSES)].astype(np.int64)
    pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]  # (K,)
    order = np.argsort(pal_code)
    pos = np.clip(np.searchsorted(pal_code[order], code), 0, len(pal_code) - 1)
    ids = order[pos]
    bad = pal_code[ids] != code
    if bad.any():
        r, g, b = rgb[bad][0]
        raise DataError(f"landcover: colour ({r}, {g}, {b}) is not a land-cover class colour")
    return ids


def landcover_onehot(ids: np.ndarray) -> np.ndarray:
    """Class ids (H, W) -> one-hot (K, H, W) float32, K = len(LANDCOVER_CLASSES)."""
    ids = np.asarray(ids, dtype=np.int64)
    return (np.arange(len(LANDCOVER_CLASSES))[:, None, None] == ids[None]).astype(np.float32)


def _value_map(value_map: str | Mapping[Any, Any] | None) -> dict[int, int] | None:
    if value_map is None:
        return None
    if isinstance(value_map, str):
        if value_map not in VALUE_MAPS:
            raise ConfigError(f"landcover: value_map {value_map!r} unknown; known: {', '.join(VALUE_MAPS)}")
        value_map = VALUE_MAPS[value_map]
    return {int(k): class_id(v, "landcover value_map") for k, v in value_map.items()}


@register_condition(
    "landcover",
    "raster",
    "land-cover class ids (GeoTIFF band, palette PNG) as the colour-coded segmentation map",
    resampling="nearest",
)
def landcover(
    values: np.ndarray,
    *,
    value_map: str | Mapping[Any, Any] | None = None,
    nodata_class: Any = 0,
) -> np.ndarray:
    """One band of class ids (:data:`LANDCOVER_CLASSES`, or codes mapped by ``value_map``: ``"worldcover"`` or
    ``{code: class}``; unmapped codes become ``nodata_class``) or a map already in the class colours (3 bands)
    -> (H, W, 3) uint8. Nodata pixels get ``nodata_class``."""
    fill = class_id(nodata_class)
    if values.shape[0] == 3:
        rgb = np.nan_to_num(values, nan=0).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        return landcover_image(landcover_ids(rgb))
    if values.shape[0] != 1:
        raise ConfigError(f"landcover: the source has {values.shape[0]} bands; choose the class band")
    band = values[0]
    finite = np.isfinite(band)
    if (band[finite] != np.round(band[finite])).any():
        raise DataError("landcover: the band holds non-integer values; expected class ids")
    codes = np.where(finite, band, -1).astype(np.int64)  # (H, W), -1 = nodata
    mapping = _value_map(value_map)
    if mapping is not None:
        lut_keys = np.array(sorted(mapping), dtype=np.int64)
        lut_vals = np.array([mapping[k] for k in lut_keys], dtype=np.int64)
        pos = np.clip(np.searchsorted(lut_keys, codes), 0, max(len(lut_keys) - 1, 0))
        hit = lut_keys[pos] == codes if len(lut_keys) else np.zeros(codes.shape, bool)
        ids = np.where(hit, lut_vals[pos] if len(lut_keys) else 0, fill)
    else:
        ids = np.where(codes < 0, fill, codes)
    return landcover_image(ids)


@register_condition(
    "landcover-polygons", "vector", "land-cover polygons (GeoJSON with a class attribute) rasterised"
)
def landcover_polygons(
    geoms: list[tuple[dict, dict]],
    grid: Any,
    *,
    class_property: str = "class",
    background: Any = 0,
    all_touched: bool = False,
) -> np.ndarray:
    """Polygons rasterised onto the grid with the class of their ``class_property`` (an id or a class name /
    dataset label); later features cover earlier ones; pixels under no polygon get ``background``."""
    from rasterio.features import rasterize

    fill = class_id(background)
    shapes = []
    for i, (geom, props) in enumerate(geoms):
        if class_property not in props:
            raise DataError(
                f"landcover-polygons: feature {i} has no {class_property!r} property "
                f"(set class_property= to the attribute holding the class)"
            )
        shapes.append((geom, class_id(props[class_property], f"landcover-polygons feature {i}")))
    ids = np.full((grid.height, grid.width), fill, np.uint8)
    if shapes:
        ids = rasterize(
            shapes,
            out_shape=ids.shape,
            transform=grid.transform,
            fill=fill,
            all_touched=all_touched,
            dtype="uint8",
        )
    return landcover_image(ids)
