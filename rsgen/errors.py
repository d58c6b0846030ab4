"""Error types with one-line messages that name what was wrong and where.

The CLI catches :class:`RsgenError` and prints ``error: <message>`` with a non-zero exit, never a traceback.
"""

from __future__ import annotations


class RsgenError(Exception):
    """Base class for errors caused by user input (bad values, bad files, missing weights)."""


class MetadataError(RsgenError, ValueError):
    """A metadata field is missing where required, malformed, or out of its allowed range."""


class GeoTiffError(RsgenError):
    """A raster cannot be read or lacks the georeference an operation needs."""


class WeightsNotFoundError(RsgenError, FileNotFoundError):
    """A model or weight file was asked for by path and is not there (rsgen never downloads weights)."""


class DataError(RsgenError):
    """A data sample or data source is unusable (corrupt, empty, wrong shape)."""


class ConfigError(RsgenError, ValueError):
    """A configuration file or option is invalid."""
