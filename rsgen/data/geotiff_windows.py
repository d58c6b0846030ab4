"""GeoTIFF folders cut into square windows, each with its own real metadata (centre lat/lon and GSD from
the CRS and transform of the window, date from the file: sidecar, tags or file name).

Band selection gives RGB from RGBN (``bands: [1, 2, 3]``); false-colour data are flagged as such (e.g. a
SWIR1/NIR/Red Landsat composite). GSD augmentation reads a window ``factor`` times larger and averages it
down to the window size, so the same ground appears at a coarser, exactly known GSD. Nodata is masked;
windows that are mostly nodata are dropped at load time (``mostly_nodata``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rsgen.data.images import SampleError
from rsgen.data.readers import Reader, dropped
from rsgen.errors import DataError, GeoTiffError, MetadataError
from rsgen.metadata import Metadata, georeference_facts, read_geotiff_metadata


class GeoTiffWindowReader(Reader):
    """Windows of ``size`` pixels every ``stride`` pixels (at native GSD) from every GeoTIFF under ``root``."""

    kind = "geotiff_windows"

    def __init__(
        self,
        name: str,
        root: str | Path,
        *,
        size: int = 64,
        stride: int | None = None,
        bands: Sequence[int] | None = None,
        false_color: bool = False,
        pattern: str = "*.tif",
        require_crs: bool = True,
        min_valid_fraction: float = 0.9,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(f"source {name}: {self.root} does not exist")
        if size < 1 or (stride is not None and stride < 1):
            raise DataError(f"source {name}: window size {size} and stride {stride} must be positive")
        self.size = int(size)
        self.stride = int(stride or size)
        self.bands = list(bands) if bands else None
        self.false_color = false_color
        self.pattern = pattern
        self.require_crs = require_crs
        self.min_valid_fraction = min_valid_fraction

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        """A decoded window; one that is mostly nodata is a SampleError("mostly_nodata")."""
        sample = super().load(record)
        valid = float(sample["valid"].mean())
        if valid < self.min_valid_fraction:
            raise SampleError("mostly_nodata", f"{record['id']}: only {valid:.0%} valid pixels")
        return sample

    def files(self) -> list[Path]:
        return [self.root] if self.root.is_file() else sorted(self.root.rglob(self.pattern))

    def entries(self) -> Iterator[dict[str, Any]]:
        # Windows are produced per GSD factor by records(); entries() lists the native-GSD windows only.
        for rec in self.records():
            if rec.get("gsd_factor", 1.0) == 1.0:
                yield rec

    def records(self) -> Iterator[dict[str, Any]]:
        n = 0
        for path in self.files():
            for rec in self.file_records(path):
                if self.limit is not None and n >= self.limit:
                    return
                n += 1
                yield rec

    def file_records(self, path: Path) -> Iterator[dict[str, Any]]:
        """Every window of one file at every GSD factor (or one dropped record for an unusable file)."""
        import rasterio
        from rasterio.errors import RasterioError
        from rasterio.windows import Window
        from rasterio.windows import transform as window_transform

        stem = path.relative_to(self.root).with_suffix("").as_posix() if path != self.root else path.stem
        file_rec = self.base_record(stem, path, bands=self.bands, false_color=self.false_color)
        try:
            file_meta, _ = read_geotiff_metadata(path)
            with rasterio.open(path) as ds:
                crs, transform, width, height, count = ds.crs, ds.transform, ds.width, ds.height, ds.count
        except (GeoTiffError, RasterioError, OSError) as e:
            yield dropped(file_rec, "corrupt", f"{path}: {e}")
            return
        except MetadataError as e:
            yield dropped(file_rec, "bad_metadata", f"{path}: {e}")
            return
        if self.bands and max(self.bands) > count:
            yield dropped(file_rec, "bad_bands", f"{path}: bands {self.bands} but the file has {count}")
            return
        georeferenced = crs is not None and not transform.is_identity
        if not georeferenced and self.require_crs:
            yield dropped(
                file_rec, "no_crs", f"{path}: no CRS/transform, so no GSD or location for its windows"
            )
            return
        meta0 = self.base_metadata.merged_with(file_meta)
        block = self.size * max(self.gsd_factors)  # spatial block (native px) that keeps a place in one split
        for factor in self.gsd_factors:
            win = round(self.size * factor)
            step = round(self.stride * factor)
            if win > width or win > height:
                continue
            for row in range(0, height - win + 1, step):
                for col in range(0, width - win + 1, step):
                    meta = meta0
                    if georeferenced:
                        lat, lon, gsd, _ = georeference_facts(
                            crs, window_transform(Window(col, row, win, win), transform), win, win
                        )
                        meta = meta.merged_with(Metadata(gsd_m=gsd * win / self.size, lat=lat, lon=lon))
                        cx, cy = transform * (col + win / 2, row + win / 2)
                        px = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
                        group = f"{self.name}:{math.floor(cx / (block * px))},{math.floor(cy / (block * px))}"
                    else:
                        group = f"{self.name}:{stem}:{(col + win // 2) // block},{(row + win // 2) // block}"
                    suffix = f"@x{factor:g}" if factor != 1.0 else ""
                    yield {
                        **file_rec,
                        "id": f"{file_rec['id']}/{col}_{row}_{win}{suffix}",
                        "window": [col, row, win, win],
                        "gsd_factor": win / self.size,
                        "metadata": meta.to_dict(),
                        "group": group,
                        "_caption": self.caption_spec(self.label),
                    }
