"""Typed config loading: nested dataclasses from YAML, overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rsgen.config import load_config, save_config
from rsgen.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Example:
    name: str = "x"
    steps: int = 10
    channels: list[int] = field(default_factory=lambda: [32, 64])
    mode: str = "base"
    out: Path | None = None
    optim: Optim = field(default_factory=Optim)
    ema: bool = True


def test_yaml_overrides_and_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "c.yaml"
    src.write_text("name: tiny\nsteps: 5\nchannels: [8, 16]\noptim:\n  lr: 3e-4\n")
    cfg = load_config(Example, src, overrides=["optim.betas=[0.8, 0.9]", "ema=false", "out=runs/a"])
    assert cfg == Example("tiny", 5, [8, 16], "base", Path("runs/a"), Optim(3e-4, (0.8, 0.9)), False)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Example, tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("stpes: 5\n", "unknown key(s) stpes"),
        ("optim:\n  lrr: 1\n", "unknown key(s) optim.lrr"),
        ("steps: 2.5\n", "steps: expected an integer"),
        ("steps: many\n", "steps: expected a number"),
        ("ema: 3\n", "ema: expected true/false"),
        ("optim: 5\n", "optim: expected a section"),
        ("optim:\n  betas: [1]\n", "optim.betas: expected 2 items"),
        ("[1, 2]\n", "expected a mapping at the top level"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, yaml_text: str, needle: str) -> None:
    src = tmp_path / "bad.yaml"
    src.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(Example, src)
    assert needle in str(e.value)


def test_unknown_config_name_lists_known() -> None:
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config(Example, "nope")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(Example, {}, overrides=["steps"])


def test_every_shipped_training_config_loads() -> None:
    """Each configs/*.yaml is a training config that loads as it stands (names and types checked)."""
    from rsgen.paths import REPO_ROOT
    from rsgen.training.config import TrainConfig

    paths = sorted((REPO_ROOT / "configs").glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        cfg = load_config(TrainConfig, path.stem)
        assert cfg.mode in ("vae", "base", "controlnet", "sr"), path.name
