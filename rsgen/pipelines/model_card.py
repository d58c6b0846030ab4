"""Reading the model card a shipped model folder carries (``model_card.json``; written by the release tool
``tools/release/ship.py``), e.g. for ``rsgen info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsgen.errors import ConfigError

MODEL_CARD_FILE = "model_card.json"


def read_model_card(model_dir: str | Path) -> dict[str, Any] | None:
    """The shipped card (``model_card.json``) of a model folder, or None."""
    return read_json_object(Path(model_dir) / MODEL_CARD_FILE)


def model_card_headline(model_dir: str | Path) -> str | None:
    """One line for ``rsgen info``: steps, preliminary or final, hours and hardware; None without a card."""
    card = read_model_card(model_dir)
    if card is None:
        return None
    status = "PRELIMINARY" if card.get("preliminary") else "final"
    steps = card.get("steps")
    steps_text = f"{steps:,} steps" if isinstance(steps, int) else "steps unknown"
    return (
        f"{card.get('name', Path(model_dir).name)}: {steps_text}, {status}, "
        f"{card.get('hours', '?')} h on {card.get('hardware', '?')}"
    )


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file's top-level object; None when the file is missing or holds no object."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    return data if isinstance(data, dict) else None
