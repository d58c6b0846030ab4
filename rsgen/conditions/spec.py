"""ControlNet conditions as written on the command line: ``TYPE=PATH[:BAND][@WEIGHT][[START:END]]``."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.conditions.registry import condition_type, make_condition
from rsgen.conditions.sources import split_band
from rsgen.errors import ConfigError, DataError

_RANGE_RE = re.compile(r"\[\s*([^\]:]*)\s*:\s*([^\]]*)\s*\]$")


@dataclass(frozen=True)
class ControlSpec:
    """One ControlNet condition as given on the command line: ``TYPE=PATH[:BAND][@WEIGHT][[START:END]]``.

    ``band`` is a 1-based band index, a tuple of them (``img.tif:3,2,1``), or None (bands 1-3 of an RGB
    raster for detector types; every band, which must then be one, for height / segmentation); ``weight`` is the ControlNet conditioning scale; ``start`` / ``end`` are the
    fractions of the denoising steps during which the condition is applied.
    """

    kind: str
    path: str
    band: int | tuple[int, ...] | None = None
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def make(self, *, size: tuple[int, int] | None = None, georef: Any = None, **options: Any) -> np.ndarray:
        """Draw this condition: :func:`make_condition` with this spec's type, path and band."""
        return make_condition(self.kind, self.path, size=size, georef=georef, band=self.band, **options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        band = "" if self.band is None else ":" + ",".join(map(str, np.atleast_1d(self.band)))
        return f"{self.kind}={self.path}{band}@{self.weight:g}[{self.start:g}:{self.end:g}]"


def _fraction(spec: str, name: str, text: str, default: float) -> float:
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"control {spec!r}: {name} {text!r} is not a number (expected 0..1)") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"control {spec!r}: {name} {value:g} is outside 0..1 (a fraction of the steps)")
    return value


def parse_control_spec(spec: str, *, check_exists: bool = True) -> ControlSpec:
    """Parse ``TYPE=PATH[:BAND][@WEIGHT][[START:END]]``, e.g. ``canny=tile.png``, ``height=hag.tif:1@0.8``,
    ``footprints=buildings.geojson[0:0.5]``. Errors name the spec and what was expected."""
    kind, sep, rest = spec.partition("=")
    kind = kind.strip()
    if not sep or not kind or not rest.strip():
        raise ConfigError(
            f"control {spec!r}: expected TYPE=PATH[:BAND][@WEIGHT][[START:END]], e.g. canny=tile.png"
        )
    condition_type(kind)  # unknown type -> error listing the known ones
    rest = rest.strip()
    start, end = 0.0, 1.0
    m = _RANGE_RE.search(rest)
    if m is not None:
        start = _fraction(spec, "start", m.group(1), 0.0)
        end = _fraction(spec, "end", m.group(2), 1.0)
        if start >= end:
            raise ConfigError(f"control {spec!r}: start {start:g} must be below end {end:g}")
        rest = rest[: m.start()].rstrip()
    weight = 1.0
    head, at, tail = rest.rpartition("@")
    if at and not Path(rest).exists():
        try:
            weight = float(tail)
        except ValueError:
            raise ConfigError(
                f"control {spec!r}: weight {tail!r} is not a number (expected e.g. @0.8)"
            ) from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"control {spec!r}: weight {weight:g} must be a finite number >= 0")
        rest = head
    path, band = split_band(rest)
    if not path:
        raise ConfigError(f"control {spec!r}: the path is empty")
    if check_exists and not Path(path).exists():
        raise DataError(f"control {spec!r}: file {path} does not exist")
    return ControlSpec(kind, path, band, weight, start, end)
