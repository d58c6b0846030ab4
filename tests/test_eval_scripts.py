"""The shared command line of the evaluation-network training scripts."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rsgen.eval.scripts import run_training_script


@dataclass
class _Config:
    steps: int = 1
    out_dir: str = "x"


def test_config_file_and_overrides_reach_train(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("steps: 5\n")
    seen = []

    def train(cfg: _Config) -> dict:
        seen.append(cfg)
        return {"steps": cfg.steps, "config": {"echo": 1}}

    summary = run_training_script(
        "doc", _Config, "unused", train, "steps=2", ["--config", str(tmp_path / "c.yaml"), "out_dir=y"]
    )
    assert seen[0].steps == 5 and seen[0].out_dir == "y" and summary["steps"] == 5
    assert json.loads(capsys.readouterr().out) == {"steps": 5}  # the config echo is left out
