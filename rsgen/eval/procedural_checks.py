"""Read the rules of the procedural benchmark (:mod:`rsgen.data.procedural`) back from an image.

Each measurement works on any RGB image (the generator's own, or a model's output for procedural metadata);
masks, where given (e.g. the building footprints a ControlNet was conditioned on), make it exact where the
image alone is ambiguous. :func:`score_rules` compares what images show with what their metadata asks for;
:func:`score_rules_with_reference` adds the same scores for shuffled metadata (a model without any metadata
control scores like that). Every result is labelled synthetic: these rules are ours, not the world's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsgen.data.procedural import (
    LEAF_AUTUMN,
    LEAF_BARE,
    LEAF_GREEN,
    SceneParams,
    expected_rules,
)
from rsgen.errors import DataError
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)

# Pixel classes by colour (thresholds sit between the generator's colours; see rsgen.data.procedural).
CLOUD_MIN_CHANNEL = 226.0  # every channel this bright: cloud (snow's red channel stays below ~212)
SNOW_MIN_MEAN = 135.0  # snow, also in cloud shadow, is at least this bright ...
SNOW_MAX_SATURATION = 0.2  # ... and nearly grey; vegetation, soil and roofs are darker or more saturated
SHADOW_RATIO = 0.7  # a pixel darker than this times the lit ground around a building is shadow
# Autocorrelation scale (lag where the luminance autocorrelation falls to 1/2) of clear residential procedural
# scenes in metres: scale_px ~ AUTOCORR_SCALE_M / gsd_m (median over 60 such scenes of 300; log-log slope
# -0.85, correlation 0.85). On rural / forest / cloudy scenes it does not follow the GSD: use a building mask.
AUTOCORR_SCALE_M = 4.7


# -------------------------------------------------------------------------------------- pixel classes
def _rgb(image: Any) -> np.ndarray:
    """(H, W, 3) float64 0-255 from a uint8 image, a float (H, W, 3) image already in 0-255, or any layout
    :func:`rsgen.io.to_hwc_uint8` takes (tensors in [-1, 1] or [0, 1], (C, H, W))."""
    from rsgen.io import to_hwc_uint8

    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.float64 and arr.max(initial=0) > 1.0:
        return arr
    if not (arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8):
        arr = to_hwc_uint8(arr)
    if arr.shape[-1] != 3:
        raise DataError(f"procedural checks: expected an RGB image, got shape {arr.shape}")
    return arr.astype(np.float64)


def _saturation(rgb: np.ndarray) -> np.ndarray:
    mx = rgb.max(axis=-1)
    return (mx - rgb.min(axis=-1)) / np.maximum(mx, 1.0)


def cloud_mask(image: Any) -> np.ndarray:
    """(H, W) bool: opaque cloud (every channel bright)."""
    return _rgb(image).min(axis=-1) >= CLOUD_MIN_CHANNEL


def snow_mask(image: Any) -> np.ndarray:
    """(H, W) bool: snow (bright, nearly grey, not cloud)."""
    rgb = _rgb(image)
    return (
        (rgb.mean(axis=-1) >= SNOW_MIN_MEAN)
        & (_saturation(rgb) <= SNOW_MAX_SATURATION)
        & (rgb.min(axis=-1) < CLOUD_MIN_CHANNEL)
    )


def water_mask(image: Any) -> np.ndarray:
    """(H, W) bool: open water (dark, blue above red)."""
    rgb = _rgb(image)
    return (rgb.mean(axis=-1) < 90) & (rgb[..., 2] > rgb[..., 0] + 15)


def vegetation_mask(image: Any) -> np.ndarray:
    """(H, W) bool: vegetation / soil estimated from colour: coloured (not grey), not too dark, not water."""
    rgb = _rgb(image)
    return (
        (_saturation(rgb) >= 0.15)
        & (rgb.mean(axis=-1) >= 30)
        & ~water_mask(rgb)
        & ~snow_mask(rgb)
        & ~cloud_mask(rgb)
    )


# ------------------------------------------------------------------------------------------ measurements
def measure_cloud_fraction(image: Any) -> float:
    """Fraction of the image under opaque cloud."""
    return float(cloud_mask(image).mean())


def measure_snow_fraction(image: Any, valid: np.ndarray | None = None) -> float:
    """Fraction of the ``valid`` pixels (default: not cloud, not water, not dark shadow) that are snow; NaN if
    none is valid. With the generator's masks, pass open land (not water, roads, shadow or cloud)."""
    rgb = _rgb(image)
    if valid is None:
        valid = ~cloud_mask(rgb) & ~water_mask(rgb) & (rgb.mean(axis=-1) >= 40)
    n = int(valid.sum())
    return float((snow_mask(rgb) & valid).sum() / n) if n else float("nan")


def green_chromatic(rgb: Any) -> np.ndarray:
    """Green chromatic coordinate G / (R + G + B) of colours (..., 3)."""
    rgb = np.asarray(rgb, np.float64)
    return rgb[..., 1] / np.maximum(rgb.sum(axis=-1), 1.0)


def red_blue_index(rgb: Any) -> np.ndarray:
    """(R - B) / (R + G + B) of colours (..., 3): high for autumn orange, low for green."""
    rgb = np.asarray(rgb, np.float64)
    return (rgb[..., 0] - rgb[..., 2]) / np.maximum(rgb.sum(axis=-1), 1.0)


def greenness_index(gcc: Any) -> Any:
    """Green chromatic coordinate rescaled so bare brown reads 0 and full summer green reads 1."""
    lo, hi = float(green_chromatic(LEAF_BARE)), float(green_chromatic(LEAF_GREEN))
    return (np.asarray(gcc) - lo) / (hi - lo)


def autumn_index(rb: Any) -> Any:
    """Red-blue index rescaled so summer green reads 0 and autumn orange reads 1."""
    lo, hi = float(red_blue_index(LEAF_GREEN)), float(red_blue_index(LEAF_AUTUMN))
    return (np.asarray(rb) - lo) / (hi - lo)


def measure_leaf_colour(image: Any, vegetation: np.ndarray | None = None) -> dict[str, float]:
    """Greenness and autumn indices (:func:`greenness_index`, :func:`autumn_index`) averaged over vegetation
    pixels (given, else estimated from colour); NaN where there are none. Shadows keep the chromaticity."""
    rgb = _rgb(image)
    veg = vegetation if vegetation is not None else vegetation_mask(rgb)
    veg = veg & (rgb.mean(axis=-1) >= 20)
    if not veg.any():
        return {"greenness": float("nan"), "autumn": float("nan"), "n_pixels": 0}
    pix = rgb[veg]  # (N, 3)
    return {
        "greenness": float(greenness_index(green_chromatic(pix).mean())),
        "autumn": float(autumn_index(red_blue_index(pix).mean())),
        "n_pixels": int(veg.sum()),
    }


def colour_indices(colour: Sequence[float]) -> dict[str, float]:
    """The indices :func:`measure_leaf_colour` reads from an image whose vegetation has this colour."""
    return {
        "greenness": float(greenness_index(green_chromatic(colour))),
        "autumn": float(autumn_index(red_blue_index(colour))),
    }


@dataclass(frozen=True)
class ShadowEstimate:
    """Median run of shadow pixels beyond the building edge on each side, and the side it falls on."""

    length_px: float  # on the shadow side; NaN when no uncensored run was found
    direction: str | None  # "north" (up), "south" (down) or None when neither side shows a shadow
    north_px: float
    south_px: float
    n_columns: int


def measure_shadow(image: Any, buildings: np.ndarray, cloud: np.ndarray | None = None) -> ShadowEstimate:
    """Shadow length (pixels) and direction from an image and its building mask (north = up).

    For each building, the lit ground is the 80th percentile of luminance in a 2-pixel ring around it; from
    each column's north-most (south-most) building pixel, the run of pixels darker than
    :data:`SHADOW_RATIO` of that is counted. Runs that reach the image edge, a cloud or another building are
    censored: they decide the direction (the side with the longer mean run) but not the length (the median of
    the uncensored runs on that side; NaN with fewer than 3 or 10% of them)."""
    from scipy import ndimage

    rgb = _rgb(image)
    lum = rgb.mean(axis=-1)  # (H, W)
    buildings = np.asarray(buildings, bool)
    if buildings.shape != lum.shape:
        raise DataError(f"measure_shadow: building mask {buildings.shape} does not match image {lum.shape}")
    cloud = cloud_mask(rgb) if cloud is None else cloud
    labels, n = ndimage.label(buildings)
    h = lum.shape[0]
    chroma = rgb[..., :2] / np.maximum(rgb.sum(axis=-1, keepdims=True), 1.0)  # (H, W, 2) r, g chromaticity
    chroma_bin = np.floor(chroma / _CHROMA_BIN).astype(np.int64)  # (H, W, 2)
    runs: dict[str, list[tuple[int, bool]]] = {"north": [], "south": []}  # (dark run, censored)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels == i
        ring = ndimage.binary_dilation(comp, iterations=4) & ~buildings & ~cloud
        if ring.sum() < 4:
            continue
        dark = lum < SHADOW_RATIO * _lit_reference(lum, chroma_bin, ring)
        for col in range(sl[1].start, sl[1].stop):
            rows = np.flatnonzero(comp[:, col])
            if rows.size == 0:
                continue
            for side, start, step in (("north", rows.min() - 1, -1), ("south", rows.max() + 1, 1)):
                k, r = 0, start
                censored = True  # the run reached the image edge, another building or a cloud
                while 0 <= r < h and not (buildings[r, col] or cloud[r, col]):
                    if not dark[r, col]:
                        censored = False
                        break
                    k += 1
                    r += step
                runs[side].append((k, censored))

    def side_stats(side: str) -> tuple[float, float]:
        """(median uncensored run, or NaN with too few of them; mean run including censored). A run that ends
        on lit ground measures the whole shadow whatever the others do, so a few of them suffice."""
        vals = runs[side]
        if not vals:
            return float("nan"), 0.0
        free = [k for k, c in vals if not c]
        mean_all = float(np.mean([k for k, _ in vals]))
        if len(free) < max(3, 0.1 * len(vals)):
            return float("nan"), mean_all
        return float(np.median(free)), mean_all

    north, mean_n = side_stats("north")
    south, mean_s = side_stats("south")
    n_cols = len(runs["north"]) + len(runs["south"])
    if max(mean_n, mean_s) < 0.5:  # no shadow beyond half a pixel on either side
        length = 0.0 if n_cols and math.isfinite(north) and math.isfinite(south) else float("nan")
        return ShadowEstimate(length, None, north, south, n_cols)
    direction = "north" if mean_n >= mean_s else "south"
    return ShadowEstimate(north if direction == "north" else south, direction, north, south, n_cols)


_CHROMA_BIN = 0.025


def _lit_reference(lum: np.ndarray, chroma_bin: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """(H, W) luminance of lit ground of each pixel's material: the 90th percentile luminance of the ring
    pixels of similar chromaticity (a shadow darkens a surface but keeps its colour, so shadowed snow is
    compared with lit snow, not with lit soil); the whole ring's where no ring pixel is similar."""
    ref = np.full(lum.shape, np.percentile(lum[ring], 90))
    keys = chroma_bin[..., 0] * 1000 + chroma_bin[..., 1]  # (H, W)
    ring_keys, ring_lum = keys[ring], lum[ring]
    for key in np.unique(ring_keys):
        # Ring pixels in this bin or a neighbouring one.
        kr, kg = divmod(int(key), 1000)
        near = (np.abs(ring_keys // 1000 - kr) <= 1) & (np.abs(ring_keys % 1000 - kg) <= 1)
        if near.sum() >= 3:
            ref[keys == key] = np.percentile(ring_lum[near], 90)
    return ref


def measure_object_scale(image: Any, buildings: np.ndarray | None = None) -> float:
    """Characteristic object size in pixels: the median sqrt(area) of the buildings that do not touch the
    border when a building mask is given (NaN when every building is cut by the border), else the
    autocorrelation scale converted to building sizes with :data:`AUTOCORR_SCALE_M` (meaningful on clear
    built-up scenes only)."""
    if buildings is not None:
        from scipy import ndimage

        buildings = np.asarray(buildings, bool)
        labels, n = ndimage.label(buildings)
        if n == 0:
            return float("nan")
        areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        inner = np.setdiff1d(np.arange(1, n + 1), edge)
        if inner.size == 0:  # only buildings cut by the border: their size is unknown
            return float("nan")
        return float(np.median(np.sqrt(areas[inner - 1])))
    scale = autocorrelation_scale(image)
    return scale * SceneParams().mean_building_side_m / AUTOCORR_SCALE_M


def autocorrelation_scale(image: Any) -> float:
    """Lag (pixels, interpolated) at which the radially averaged autocorrelation of luminance falls to 1/2."""
    lum = _rgb(image).mean(axis=-1)
    lum = lum - lum.mean()
    h, w = lum.shape
    f = np.fft.rfft2(lum, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(np.abs(f) ** 2, s=(2 * h, 2 * w))  # (2H, 2W), circular over the zero-padded image
    if ac[0, 0] <= 0:
        return float("nan")
    ac = np.fft.fftshift(ac / ac[0, 0])
    yy, xx = np.indices(ac.shape)
    r = np.hypot(yy - h, xx - w).round().astype(int)
    # Normalise by the overlap so long lags are not biased towards 0.
    overlap = np.fft.fftshift(
        np.fft.irfft2(np.abs(np.fft.rfft2(np.ones_like(lum), s=(2 * h, 2 * w))) ** 2, s=(2 * h, 2 * w))
    )
    ac = ac * (h * w) / np.maximum(overlap, 1.0)
    max_r = min(h, w) // 2
    sums = np.bincount(r.ravel(), weights=ac.ravel(), minlength=max_r + 1)[: max_r + 1]
    counts = np.bincount(r.ravel(), minlength=max_r + 1)[: max_r + 1]
    profile = sums / np.maximum(counts, 1)
    below = np.flatnonzero(profile < 0.5)
    if below.size == 0:
        return float(max_r)
    k = int(below[0])
    a, b = profile[k - 1], profile[k]
    return float(k - 1 + (a - 0.5) / max(a - b, 1e-9))


# ---------------------------------------------------------------------------------------------- scoring
def _mask(masks: Mapping[str, np.ndarray] | None, name: str) -> np.ndarray | None:
    if masks is None or name not in masks or masks[name] is None:
        return None
    return np.asarray(masks[name], bool)


def measure_rules(image: Any, masks: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Every rule read back from one image (masks used where given, else estimated from colour)."""
    rgb = _rgb(image)
    cloud = _mask(masks, "cloud")
    water, roads = _mask(masks, "water"), _mask(masks, "roads")
    shadow, buildings = _mask(masks, "shadow"), _mask(masks, "buildings")
    cloud_est = cloud_mask(rgb) if cloud is None else cloud
    if water is not None and roads is not None:
        open_land = ~water & ~roads & ~cloud_est
        open_land &= ~shadow if shadow is not None else rgb.mean(axis=-1) >= 40
        snow = measure_snow_fraction(rgb, open_land)
    else:
        snow = measure_snow_fraction(rgb, ~cloud_est & ~water_mask(rgb) & (rgb.mean(axis=-1) >= 40))
    veg = _mask(masks, "vegetation")
    if veg is not None:  # away from edges (the sensor blur mixes neighbours) and from cloud haze
        from scipy import ndimage

        veg = (
            ndimage.binary_erosion(veg, border_value=1)
            & ~snow_mask(rgb)
            & ~ndimage.binary_dilation(cloud_est, iterations=3)
        )
    leaf = measure_leaf_colour(rgb, veg)
    out: dict[str, Any] = {
        "cloud_fraction": measure_cloud_fraction(rgb),
        "snow_cover": snow,
        "greenness": leaf["greenness"],
        "autumn": leaf["autumn"],
        "object_scale_px": measure_object_scale(rgb, buildings),
        "shadow_length_px": float("nan"),
        "shadow_direction": None,
    }
    if buildings is not None and buildings.any():
        est = measure_shadow(rgb, buildings, cloud_est)
        out["shadow_length_px"], out["shadow_direction"] = est.length_px, est.direction
    return out


def score_rules(
    images: Sequence[Any],
    metadatas: Sequence[Metadata],
    masks: Sequence[Mapping[str, np.ndarray] | None] | None = None,
    params: SceneParams | None = None,
    *,
    per_image: bool = False,
) -> dict[str, Any]:
    """Per-rule errors of images against the rules their metadata asks for (synthetic benchmark).

    Returns mean absolute errors of cloud fraction, snow cover (of open land), greenness and autumn indices,
    shadow length (pixels, and relative), the shadow direction accuracy (where the asked shadow is at least
    2 px) and the object scale error in log2 units (= error of the GSD it implies, in octaves), each with the
    number of images it was measured on. Metadata must be complete (``ProceduralScene.metadata`` is)."""
    if len(images) != len(metadatas):
        raise DataError(f"score_rules: {len(images)} images but {len(metadatas)} metadata entries")
    if masks is not None and len(masks) != len(images):
        raise DataError(f"score_rules: {len(masks)} mask sets for {len(images)} images")
    params = params or SceneParams()
    errors: dict[str, list[float]] = {
        k: []
        for k in (
            "cloud_fraction",
            "snow_cover",
            "greenness",
            "autumn",
            "shadow_length_px",
            "shadow_length_rel",
            "shadow_direction",
            "object_scale_log2",
        )
    }
    rows = []
    for i, (image, meta) in enumerate(zip(images, metadatas, strict=True)):
        want = expected_rules(meta, params)
        got = measure_rules(image, masks[i] if masks is not None else None)
        if want["leaf_colour"] is not None:
            want.update(colour_indices(want["leaf_colour"]))
        pairs = {
            "cloud_fraction": (got["cloud_fraction"], want["cloud_fraction"]),
            "snow_cover": (got["snow_cover"], want["snow_cover"]),
            "greenness": (got["greenness"], want["greenness"] if want["leaf_colour"] else np.nan),
            "autumn": (got["autumn"], want["autumn"] if want["leaf_colour"] else np.nan),
            "shadow_length_px": (got["shadow_length_px"], want["shadow_length_px"]),
        }
        for name, (g, w) in pairs.items():
            if math.isfinite(g) and math.isfinite(w):
                errors[name].append(abs(g - w))
        g, w = got["shadow_length_px"], want["shadow_length_px"]
        if math.isfinite(g) and math.isfinite(w) and w >= 1.0:
            errors["shadow_length_rel"].append(abs(g - w) / w)
        if want["shadow_direction"] is not None and w >= 2.0 and math.isfinite(g):
            errors["shadow_direction"].append(float(got["shadow_direction"] == want["shadow_direction"]))
        g, w = got["object_scale_px"], want["building_size_px"]
        if math.isfinite(g) and math.isfinite(w) and g > 0:
            errors["object_scale_log2"].append(abs(math.log2(g / w)))
        if per_image:
            rows.append({"expected": {k: v for k, v in want.items() if k != "leaf_colour"}, "measured": got})
    result: dict[str, Any] = {
        "synthetic": True,
        "benchmark": "procedural rules (synthetic)",
        "n_images": len(images),
        "masks": masks is not None,
    }
    for name, vals in errors.items():
        key = "shadow_direction_accuracy" if name == "shadow_direction" else f"{name}_mae"
        result[key] = float(np.mean(vals)) if vals else float("nan")
        result[f"n_{name}"] = len(vals)
    if per_image:
        result["per_image"] = rows
    return result


def shuffled_metadata(metadatas: Sequence[Metadata], seed: int = 0) -> list[Metadata]:
    """The metadata permuted so that no image keeps its own (a derangement; identity for one image)."""
    n = len(metadatas)
    if n < 2:
        return list(metadatas)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    fixed = np.flatnonzero(perm == np.arange(n))
    for i in fixed:  # swap each fixed point with a neighbour
        j = (i + 1) % n
        perm[i], perm[j] = perm[j], perm[i]
    return [metadatas[int(p)] for p in perm]


def score_rules_with_reference(
    images: Sequence[Any],
    metadatas: Sequence[Metadata],
    masks: Sequence[Mapping[str, np.ndarray] | None] | None = None,
    params: SceneParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"asked": score_rules(images, metadata), "shuffled": score_rules(images, shuffled metadata)}``: the
    second is what no metadata control at all would score."""
    return {
        "asked": score_rules(images, metadatas, masks, params),
        "shuffled": score_rules(images, shuffled_metadata(metadatas, seed), masks, params),
    }
