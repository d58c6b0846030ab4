"""Shared test fixtures: no network, fake GeoTIFFs, the real data sets when present."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rsgen.paths import datasets_dir  # noqa: E402

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
        raise RuntimeError(f"tests must not touch the network (tried to connect to {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The real data sets; tests using this fixture skip when they are absent."""
    root = datasets_dir()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set RSGEN_DATASETS)")
    return root


def write_fake_geotiff(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    count: int = 3,
    crs: str | None = "EPSG:32614",
    transform=None,
    dtype: str = "uint8",
    nodata: float | None = None,
    data: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """A small GeoTIFF with random pixels (default: UTM 14N, 2 m pixels near 47 N, 99 W)."""
    import rasterio
    from affine import Affine

    if transform is None:
        transform = (
            Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 5_207_000.0)
            if crs != "EPSG:4326"
            else Affine(0.001, 0.0, -99.2, 0.0, -0.001, 47.05)
        )
    if data is None:
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 255, size=(count, height, width)).astype(dtype)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.fixture
def fake_geotiff(tmp_path: Path):
    """Factory fixture: ``fake_geotiff(name, **kwargs)`` writes a small GeoTIFF in tmp_path."""

    def make(name: str = "tile.tif", **kwargs) -> Path:  # type: ignore[no-untyped-def]
        return write_fake_geotiff(tmp_path / name, **kwargs)

    return make
