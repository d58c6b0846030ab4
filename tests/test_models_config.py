"""Model-shape configs live in rsgen.models: sampling code reads them without the training package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rsgen.errors import ConfigError
from rsgen.models.config import MODEL_SECTIONS, ModelConfig, load_model_config
from rsgen.training.config import TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[1]


def test_model_config_is_the_shape_part_of_a_training_config():
    train = load_train_config("tiny", ["sr.factor=2", "optim.batch_size=3"])
    shape = load_model_config("tiny", ["sr.factor=2", "optim.batch_size=3"])  # training overrides are ignored
    assert isinstance(shape, ModelConfig)
    for name in MODEL_SECTIONS:
        assert getattr(shape, name) == getattr(train, name), name
    assert shape.sr.factor == 2
    # TrainConfig holds the very same section types, so either builds a pipeline
    assert {n: type(getattr(train, n)) for n in MODEL_SECTIONS} == {
        n: type(getattr(shape, n)) for n in MODEL_SECTIONS
    }
    assert set(MODEL_SECTIONS) < {f for f in TrainConfig.__dataclass_fields__}


def test_model_config_checks_its_sections(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("unet:\n  no_such_key: 1\noptim:\n  lr: 1e-4\n")
    with pytest.raises(ConfigError, match="no_such_key"):
        load_model_config(bad)
    with pytest.raises(ConfigError, match="unknown config"):
        load_model_config("no-such-config")


def test_sampling_code_does_not_import_training():
    """rsgen.models and rsgen.pipelines build and sample models without rsgen.training."""
    offenders = []
    for package in ("models", "pipelines"):
        for path in sorted((REPO / "rsgen" / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                if isinstance(node, ast.Import):
                    module = node.names[0].name
                if module and module.startswith("rsgen.training"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {module}")
    assert not offenders, offenders
