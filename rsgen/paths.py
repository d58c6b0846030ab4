"""Where rsgen finds its configs, shipped assets and the shared real data sets.

``configs/`` (the YAML presets) and ``assets/`` (the default models, evaluation networks, caption vocabulary)
are looked up, each on its own, in three places, first match wins:

1. ``$RSGEN_HOME`` -- a folder of your own with ``configs/`` and/or ``assets/`` (fill it with
   ``rsgen models install DEST`` and edit or replace what you like);
2. the source checkout this package was imported from (``pip install -e .`` or ``PYTHONPATH``);
3. the copies a wheel carries inside the package (``rsgen/_data/``, made by ``setup.py``'s ``build_py``).

The environment is read once, when this module is first imported: set ``RSGEN_HOME`` before starting Python.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rsgen.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_DATA_DIR = PACKAGE_DIR / "_data"
# The folders a wheel carries under rsgen/_data (setup.py copies exactly these; reports and samples stay out).
SHIPPED_DATA = (
    "configs",
    "assets/default-model",
    "assets/default-sr-model",
    "assets/eval",
    "assets/captions",
)


def checkout_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source checkout above the package (one with ``pyproject.toml`` and ``configs/``), else None."""
    top = package_dir.parent
    return top if (top / "pyproject.toml").is_file() and (top / "configs").is_dir() else None


def data_roots(
    home: str | os.PathLike | None = None,
    checkout: Path | None = None,
    packaged: Path = PACKAGED_DATA_DIR,
) -> list[Path]:
    """The folders searched for ``configs/`` and ``assets/``, in order: ``home``, ``checkout``, ``packaged``."""
    return [Path(p) for p in (home, checkout, packaged) if p]


def find_data_dir(name: str, roots: list[Path]) -> Path:
    """``root/name`` in the first root that has it; the last root's (which may not exist) when none does."""
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return roots[-1] / name


CHECKOUT_ROOT = checkout_root()
DATA_ROOTS = data_roots(os.environ.get("RSGEN_HOME") or None, CHECKOUT_ROOT)
CONFIG_DIR = find_data_dir("configs", DATA_ROOTS)
ASSETS_DIR = find_data_dir("assets", DATA_ROOTS)
DEFAULT_MODEL_DIR = ASSETS_DIR / "default-model"
# Relative output and input paths of the project's jobs (runs/, data/) start here: the checkout when running
# from one, else the current directory.
REPO_ROOT = CHECKOUT_ROOT if CHECKOUT_ROOT is not None else Path.cwd()


def resolve_data_path(path: str | os.PathLike) -> Path:
    """A path as a config gives it: absolute as is; ``assets/...`` / ``configs/...`` in the folders found
    above; any other relative path against :data:`REPO_ROOT`."""
    p = Path(path)
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "assets":
        return ASSETS_DIR.joinpath(*p.parts[1:])
    if p.parts and p.parts[0] == "configs":
        return CONFIG_DIR.joinpath(*p.parts[1:])
    return REPO_ROOT / p


def datasets_dir() -> Path:
    """The real data sets: ``$RSGEN_DATASETS`` or ``../shared/datasets`` beside the checkout."""
    return Path(os.environ.get("RSGEN_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def install_home(dest: str | os.PathLike, force: bool = False) -> list[Path]:
    """Copy the configs and runtime assets in use (see :data:`SHIPPED_DATA`) into ``dest`` so that
    ``RSGEN_HOME=dest`` finds them; no network. Returns the folders written. An existing non-empty target
    folder is an error unless ``force`` (then it is replaced)."""
    dest = Path(dest)
    sources = {"configs": CONFIG_DIR, "assets": ASSETS_DIR}
    written = []
    for rel in SHIPPED_DATA:
        top, _, rest = rel.partition("/")
        src = sources[top] / rest if rest else sources[top]
        if not src.is_dir():
            raise ConfigError(f"models install: {src} is missing from this installation; reinstall rsgen")
        target = dest / rel
        if target.exists() and any(target.iterdir()):
            if not force:
                raise ConfigError(
                    f"models install: {target} exists and is not empty; pass --force to replace it"
                )
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, target)
        written.append(target)
    return written
