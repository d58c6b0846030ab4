"""Condition images for ControlNet, made the same way for training and for sampling.

Every condition type is registered by name in :data:`CONDITION_TYPES` and made through one entry point,
:func:`make_condition`, which always returns an (H, W, 3) uint8 image. Three kinds of source:

* ``image`` types (canny, lineart, shuffle, and hed / pidi / mlsd / midas / normalbae, which need the
  ``lllyasviel/Annotators`` weight files in a local folder) run a controlnet-aux detector on an RGB image;
* ``raster`` types (height, segmentation) read a GeoTIFF band (or a plain image / array) and, when a
  ``georef`` grid is given, reproject it onto that grid with rasterio;
* ``vector`` types (footprints, roads) rasterize GeoJSON geometries onto the ``georef`` grid after
  reprojecting them from the GeoJSON's CRS (EPSG:4326 unless the file names another).

The CLI form of a condition is ``TYPE=PATH[:BAND][@WEIGHT][[START:END]]``, parsed by
:func:`parse_control_spec` into a :class:`ControlSpec`, e.g. ``height=hag.tif:1@0.8[0:0.6]``.
"""

from __future__ import annotations

from rsgen.conditions import detectors, geo, landcover  # noqa: F401  (registers the makers)
from rsgen.conditions.detectors import ANNOTATORS_ENV, auto_canny_thresholds, find_annotators
from rsgen.conditions.geo import SEGMENTATION_PALETTE
from rsgen.conditions.registry import (
    CONDITION_TYPES,
    ConditionType,
    condition_to_tensor,
    condition_type,
    known_conditions,
    make_condition,
    register_condition,
)
from rsgen.conditions.spec import ControlSpec, parse_control_spec

__all__ = [
    "ANNOTATORS_ENV",
    "CONDITION_TYPES",
    "SEGMENTATION_PALETTE",
    "ConditionType",
    "ControlSpec",
    "auto_canny_thresholds",
    "condition_to_tensor",
    "condition_type",
    "find_annotators",
    "known_conditions",
    "make_condition",
    "parse_control_spec",
    "register_condition",
]
