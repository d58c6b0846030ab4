"""Input and output safety: resource limits (with an explicit override), output names and folders, and safe
loading of weights (safetensors only unless the user trusts pickle; no custom code from a model folder).

The rules (docs/reliability.md has the table):

* **Limits.** Steps, output pixels, images per prompt, sweep length, guidance scales and input image pixels are
  bounded; ``--allow-large`` (or ``RSGEN_ALLOW_LARGE=1``) lifts the size limits (never finiteness).
* **Names.** An output name is a plain file-name stem; a path (``../x``, ``/tmp/x``), a hidden name or control
  characters is a one-line error. Every output path is checked to lie inside ``--out``.
* **Pickle.** rsgen loads ``.safetensors`` only. ``--trust-pickle`` (or ``RSGEN_TRUST_PICKLE=1``) allows pickled
  weights; even then third-party ``torch.load`` calls run with ``weights_only=True`` unless trusted, whatever
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says.
* **Custom code.** A model folder whose ``model_index.json`` or component configs name code outside diffusers,
  transformers and rsgen (``custom_pipeline``, ``auto_map``, ``trust_remote_code``, other libraries) is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsgen.errors import ConfigError, DataError, WeightsNotFoundError

ALLOW_LARGE_ENV = "RSGEN_ALLOW_LARGE"
TRUST_PICKLE_ENV = "RSGEN_TRUST_PICKLE"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Limits:
    """Resource limits; each message names the option, the limit and the override."""

    max_steps: int = 1000
    max_output_pixels: int = 4096 * 4096  # per image (a scene streams, but 16.8 MP is already ~1 h on CPU)
    max_n: int = 64  # images per prompt
    max_prompts: int = 10_000
    max_sweep: int = 64  # what-if sweep values
    max_guidance: float = 50.0
    max_input_pixels: int = 8192 * 8192  # decoded pixels of an input image / raster (per band)
    max_name_length: int = 100


LIMITS = Limits()
_overrides: dict[str, bool] = {"allow_large": False, "trust_pickle": False}


def allow_large() -> bool:
    """Whether the size limits are lifted (``--allow-large`` or ``RSGEN_ALLOW_LARGE=1``)."""
    return _overrides["allow_large"] or os.environ.get(ALLOW_LARGE_ENV, "").lower() in _TRUE


def trust_pickle() -> bool:
    """Whether pickled weights may be loaded (``--trust-pickle`` or ``RSGEN_TRUST_PICKLE=1``)."""
    return _overrides["trust_pickle"] or os.environ.get(TRUST_PICKLE_ENV, "").lower() in _TRUE


@contextlib.contextmanager
def overrides(*, allow_large: bool = False, trust_pickle: bool = False) -> Iterator[None]:
    """Set the overrides for one CLI command (restored afterwards)."""
    old = dict(_overrides)
    _overrides.update(allow_large=allow_large, trust_pickle=trust_pickle)
    try:
        yield
    finally:
        _overrides.update(old)


def use_safetensors() -> bool | None:
    """The ``use_safetensors`` argument of every ``from_pretrained`` in rsgen: True unless pickle is trusted."""
    return None if trust_pickle() else True


_LARGE_HINT = f"pass --allow-large (or set {ALLOW_LARGE_ENV}=1) to go beyond it"


def check_limit(option: str, value: float, limit: float, what: str) -> None:
    """ConfigError when ``value`` exceeds ``limit`` (unless --allow-large)."""
    if value > limit and not allow_large():
        raise ConfigError(f"{option} {value:g}: {what} above the limit {limit:g}; {_LARGE_HINT}")


def check_guidance(option: str, value: float | None) -> None:
    """A guidance scale must be finite, >= 0 and at most ``max_guidance`` (1 = no guidance)."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"{option} {value}: a guidance scale must be a finite number >= 0 (1 = no guidance)"
        )
    check_limit(option, value, LIMITS.max_guidance, "guidance scale (images saturate to black)")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def output_estimate(
    height: int, width: int, count: int, formats: tuple[str, ...] = ("tif",)
) -> dict[str, int]:
    """Rough peak memory and disk of ``count`` (H, W, 3) outputs: the float32 decode + uint8 copies; disk is
    the uncompressed uint8 image per format (an upper bound) plus a small sidecar."""
    pixels = height * width
    return {"memory": pixels * 3 * (4 * 4 + 1), "disk": count * (pixels * 3 * len(formats) + 4096)}


def check_output_size(
    option: str, height: int, width: int, count: int = 1, formats: tuple[str, ...] = ("tif",)
) -> None:
    """ConfigError for an output above ``max_output_pixels`` saying the memory and disk it implies."""
    if height * width <= LIMITS.max_output_pixels or allow_large():
        return
    est = output_estimate(height, width, count, formats)
    raise ConfigError(
        f"{option}: {width}x{height} = {height * width / 1e6:.1f} MP per image is above the limit "
        f"{LIMITS.max_output_pixels / 1e6:.1f} MP (needs about {format_bytes(est['memory'])} memory and "
        f"{format_bytes(est['disk'])} disk); {_LARGE_HINT}"
    )


def check_input_pixels(path: str | Path, width: int, height: int) -> None:
    """DataError for an input image whose header size is above ``max_input_pixels`` (checked before decoding)."""
    if width * height > LIMITS.max_input_pixels and not allow_large():
        raise DataError(
            f"{path}: {width}x{height} pixels is above the input limit {LIMITS.max_input_pixels / 1e6:.0f} MP "
            f"(decoding needs about {format_bytes(width * height * 4)}); crop it first or {_LARGE_HINT}"
        )


def open_image(path: str | Path) -> Any:
    """``PIL.Image.open`` with the size read from the header and checked before any pixel is decoded; one-line
    DataError for unreadable files and decompression bombs."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image header declares too many pixels ({e}); {_LARGE_HINT}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    try:
        check_input_pixels(path, *im.size)
    except DataError:
        im.close()
        raise
    return im


def read_image_rgb(path: str | Path) -> Any:
    """(H, W, 3) uint8 numpy array of an image file, size-checked before decoding."""
    import numpy as np

    with open_image(path) as im:
        try:
            return np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: image data cannot be decoded ({str(e).splitlines()[0]})") from None


# ---------------------------------------------------------------------------------------- names & folders

_BAD_NAME_CHARS = re.compile(r"[^\w.\-+=,@]", re.UNICODE)


def safe_name(name: str, option: str = "--name") -> str:
    """A plain file-name stem: refuses paths, hidden names and over-long names; other odd characters (spaces,
    control characters, quotes) become ``_``."""
    text = str(name)
    if not text.strip():
        raise ConfigError(f"{option} {name!r}: an output name must not be empty")
    if "/" in text or "\\" in text or os.path.isabs(text) or text in (".", ".."):
        raise ConfigError(
            f"{option} {name!r}: an output name must be a plain file name, not a path; choose the folder with --out"
        )
    if text.startswith("."):
        raise ConfigError(
            f"{option} {name!r}: an output name must not start with '.' (hidden / temporary files)"
        )
    if len(text) > LIMITS.max_name_length:
        raise ConfigError(
            f"{option}: name of {len(text)} characters; expected at most {LIMITS.max_name_length}"
        )
    return _BAD_NAME_CHARS.sub("_", text)


def inside(path: str | Path, folder: str | Path) -> Path:
    """``path`` if it resolves inside ``folder``; ConfigError otherwise (defence in depth behind safe_name)."""
    p, root = Path(path).resolve(), Path(folder).resolve()
    if p != root and root not in p.parents:
        raise ConfigError(
            f"output {path}: resolves outside the output folder {folder}; refusing to write there"
        )
    return Path(path)


_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """Create the output folder and prove it writable, before any model is loaded: one-line ConfigError for a
    file, a folder under a file, a system folder or a folder without write permission."""
    folder = Path(path)
    resolved = folder.resolve()
    if any(resolved == Path(r) or Path(r) in resolved.parents for r in _SYSTEM_ROOTS):
        raise ConfigError(f"{option} {path}: a system folder; choose an ordinary folder for the outputs")
    for parent in (resolved, *resolved.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == resolved else f"is under the file {parent}"
            raise ConfigError(f"{option} {path}: {where}; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".rsgen-probe-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"{option} {path}: cannot write there ({e.strerror or e}); choose a writable folder"
        ) from None
    return folder


# rsgen's temporary files: ".NAME.PID.RANDOM.tmp" (rsgen.io.atomic_path / atomic_dir) and the older
# ".NAME.RANDOM.tmp" (no pid, before this rule)
_TMP_RE = re.compile(r"^\..+?\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove rsgen temporary files / folders left in ``folder`` by a killed run (their pid is not alive, or
    they predate pids in temp names); returns what was removed."""
    import shutil

    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP_RE.match(p.name)
        if m is None or (m.group("pid") and _alive(int(m.group("pid")))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------- model folders

#: libraries a model_index.json may name for its components (no custom code from the folder itself)
TRUSTED_LIBRARIES = ("diffusers", "transformers", "rsgen")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_CUSTOM_CODE_KEYS = ("custom_pipeline", "trust_remote_code", "auto_map", "custom_code")


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: {what} is not readable JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object, found {type(data).__name__}")
    return data


def _refuse_custom_code(path: Path, data: dict[str, Any]) -> None:
    for key in _CUSTOM_CODE_KEYS:
        if data.get(key):
            raise ConfigError(
                f"{path}: {key!r} asks to run code from the model folder; rsgen never imports custom code "
                "(remove the entry, or use a model saved by rsgen)"
            )


def check_weights_folder(folder: Path) -> None:
    """A component folder must hold ``.safetensors`` weights; pickle-only folders need --trust-pickle."""
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    if any(p.suffix == ".safetensors" for p in files) or trust_pickle():
        return
    pickled = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise WeightsNotFoundError(
            f"{folder}: only pickled weights ({', '.join(pickled)}), which can run code when loaded; convert "
            "them to .safetensors, or pass --trust-pickle if you trust their source"
        )


def check_model_folder(path: str | Path) -> dict[str, Any]:
    """Validate a diffusers pipeline folder before loading it: ``model_index.json`` is a JSON object with a
    ``_class_name``; components come from trusted libraries; no custom-code entries in it or in the component
    configs; weights are safetensors (unless --trust-pickle). Returns the parsed model_index.json."""
    root = Path(path)
    index_path = root / "model_index.json"
    index = _read_json_object(index_path, "model_index.json")
    if not isinstance(index.get("_class_name"), str):
        raise ConfigError(f"{index_path}: no '_class_name'; not a diffusers pipeline folder saved by rsgen")
    _refuse_custom_code(index_path, index)
    components = 0
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2 or not all(v is None or isinstance(v, str) for v in value):
            raise ConfigError(f"{index_path}: component {name!r} is {value!r}; expected [library, class]")
        library, _cls = value
        if library is None:
            continue
        if library.split(".")[0] not in TRUSTED_LIBRARIES:
            raise ConfigError(
                f"{index_path}: component {name!r} comes from {library!r}; rsgen only loads components of "
                f"{', '.join(TRUSTED_LIBRARIES)} and never imports code from a model folder"
            )
        components += 1
        config = root / name / "config.json"
        if config.is_file():
            _refuse_custom_code(config, _read_json_object(config, "component config"))
        if library != "transformers" or name != "tokenizer":
            check_weights_folder(root / name)
    if components == 0:
        raise ConfigError(f"{index_path}: names no components; not a pipeline folder saved by rsgen")
    return index


# ------------------------------------------------------------------------------------ third-party torch.load


@contextlib.contextmanager
def restricted_torch_load(container_key: str | None = None) -> Iterator[None]:
    """While active, ``torch.load`` (as third-party code such as controlnet-aux calls it) reads ``.safetensors``
    files with safetensors and refuses anything else unless --trust-pickle is given; a trusted pickle is still
    read with ``weights_only=True`` forced, so it cannot run code whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    says. ``container_key``: the
    key under which the caller expects the state dict (e.g. ``"model"``), for safetensors files."""
    import torch

    original = torch.load

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(f, (str, os.PathLike)) and str(f).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(f), device="cpu")
            return {container_key: state} if container_key else state
        if not trust_pickle():
            raise WeightsNotFoundError(
                f"{f}: pickled weights are refused (a pickle can run code); convert the folder once with "
                "`rsgen models convert-annotators DIR` (reads tensors only), or pass --trust-pickle if you "
                "trust its source"
            )
        kwargs["weights_only"] = True  # even when trusted, tensors only
        kwargs.setdefault("map_location", "cpu")
        try:
            return original(f, *args, **kwargs)
        except Exception as e:  # weights-only unpickling refused something
            if "weights_only" not in str(e).lower() and "unpickl" not in str(e).lower():
                raise
            raise WeightsNotFoundError(
                f"{f}: refused to unpickle (it holds more than tensors and could run code); rsgen reads "
                "annotator pickles as tensors only, even with --trust-pickle: use a safetensors copy of its weights"
            ) from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
