"""Figures: a class grid has one row per prompt and one column per seed; a what-if strip keeps the seed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipelines_tiny import tiny_pipeline  # noqa: E402

from rsgen.errors import ConfigError  # noqa: E402
from rsgen.io import write_png  # noqa: E402
from rsgen.metadata import Metadata  # noqa: E402
from rsgen.pipelines.figures import class_grid, whatif_strip  # noqa: E402
from rsgen.pipelines.whatif import run_whatif  # noqa: E402


def test_class_grid_and_whatif_strip(tmp_path):
    pipe = tiny_pipeline()
    grid = class_grid(
        pipe, ["a forest", "a lake"], ["Forest", "Lake"], [0, 1, 2], Metadata(gsd_m=10), steps=2, cell=32
    )
    assert grid.dtype == np.uint8 and grid.shape[1] == 3 * 32 and grid.shape[0] == 2 * (32 + 18)
    strip = whatif_strip(
        pipe, "a forest", Metadata(gsd_m=10, date="2015-07-01"), "year", ["2000", "2020"], steps=2, cell=32
    )
    assert strip.shape == (32 + 18, 2 * 32, 3)
    assert write_png(tmp_path / "f.png", strip).is_file()


def test_text_sweep_uses_the_same_noise_and_changes_only_the_field():
    pipe = tiny_pipeline()
    meta = Metadata(gsd_m=10, date="2015-07-01")
    result = run_whatif(
        pipe,
        None,
        "a forest",
        "year",
        ["1990", "1990", "2020"],
        steps=2,
        seed=4,
        base_metadata=meta,
        progress=False,
    )
    assert [m.date.year for m in result.metadata] == [1990, 1990, 2020]
    np.testing.assert_allclose(result.images[0], result.images[1])  # same seed, same field value: same image
    assert not np.allclose(result.images[0], result.images[2])  # the year reaches the model
    with pytest.raises(ConfigError, match="base metadata"):
        run_whatif(pipe, None, "a forest", "year", ["1990"], steps=2)
