"""rsgen: text- and metadata-conditioned latent diffusion for remote-sensing imagery."""

from __future__ import annotations

import os

# rsgen never downloads anything at run time: keep the Hugging Face libraries offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

__version__ = "0.1.0"

from rsgen.errors import (  # noqa: E402
    ConfigError,
    DataError,
    GeoTiffError,
    MetadataError,
    RsgenError,
    WeightsNotFoundError,
)
from rsgen.metadata import AcquisitionDate, Metadata  # noqa: E402

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
