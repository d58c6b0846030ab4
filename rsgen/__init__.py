"""rsgen: text- and metadata-conditioned latent diffusion for remote-sensing imagery."""

from __future__ import annotations

# rsgen never downloads anything: every model is loaded from a local path with local_files_only=True.
# Importing rsgen changes no environment variable (the `rsgen` command keeps Hugging Face offline itself).
from rsgen.errors import (
    ConfigError,
    DataError,
    GeoTiffError,
    MetadataError,
    RsgenError,
    WeightsNotFoundError,
)
from rsgen.metadata import AcquisitionDate, Metadata

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AcquisitionDate",
    "ConfigError",
    "DataError",
    "GeoTiffError",
    "Metadata",
    "MetadataError",
    "RsgenError",
    "WeightsNotFoundError",
]
