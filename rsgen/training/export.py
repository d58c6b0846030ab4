"""Export of a trained model as an rsgen pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
``metadata_embedding/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` [, ``controlnet/``]), written
atomically; all weights safetensors. Uses ``RSGenPipeline.save_pretrained`` when the pipeline is importable,
else writes the same component folders and a ``model_index.json`` itself."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rsgen.io import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)

PIPELINE_COMPONENTS = (
    "vae",
    "text_encoder",
    "tokenizer",
    "unet",
    "metadata_embedding",
    "scheduler",
    "controlnet",
)


def _library_of(obj: Any) -> list[str | None]:
    if obj is None:
        return [None, None]
    module = type(obj).__module__
    root = module.split(".")[0]
    library = module if root == "rsgen" else root
    return [library, type(obj).__name__]


def _save_component(obj: Any, folder: Path) -> None:
    if hasattr(obj, "save_pretrained"):
        try:
            obj.save_pretrained(folder, safe_serialization=True)
        except TypeError:  # schedulers and tokenizers take no safe_serialization
            obj.save_pretrained(folder)
    elif hasattr(obj, "save_config"):
        obj.save_config(folder)
    else:
        raise TypeError(f"cannot save pipeline component {type(obj).__name__}")


def export_pipeline(
    out_dir: str | Path, components: dict[str, Any], info: dict[str, Any] | None = None
) -> Path:
    """Write ``components`` (names as in :data:`PIPELINE_COMPONENTS`; missing ones are left out) as a pipeline
    folder at ``out_dir``; ``info`` (training facts: mode, steps, config) goes to ``rsgen_training.json``."""
    out_dir = Path(out_dir)
    unknown = set(components) - set(PIPELINE_COMPONENTS)
    if unknown:
        raise ValueError(f"unknown pipeline components {sorted(unknown)}")
    with atomic_dir(out_dir) as tmp:
        full = all(components.get(k) is not None for k in PIPELINE_COMPONENTS if k != "controlnet")
        saved = False
        if full:
            from rsgen.pipelines import RSGenPipeline

            RSGenPipeline(**components).save_pretrained(tmp, safe_serialization=True)
            saved = True
        if not saved:
            index: dict[str, Any] = {
                "_class_name": "RSGenPipeline",
                "_diffusers_version": _diffusers_version(),
            }
            for name in PIPELINE_COMPONENTS:
                obj = components.get(name)
                if obj is None:
                    continue
                _save_component(obj, tmp / name)
                index[name] = _library_of(obj)
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        if info is not None:
            atomic_write_json(tmp / "rsgen_training.json", info)
    log.info("model exported to %s", out_dir)
    return out_dir


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


__all__ = ["PIPELINE_COMPONENTS", "export_pipeline"]
