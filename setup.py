"""Build hook: a wheel carries the configs and the runtime assets inside the package (``rsgen/_data/``).

They stay at the top of the checkout (``configs/``, ``assets/``), where docs, scripts and ``pip install -e``
use them; ``rsgen.paths`` finds either copy. Everything else is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _shipped_data() -> tuple[str, ...]:
    """rsgen.paths.SHIPPED_DATA, read from the source (setup.py cannot import the package it builds)."""
    tree = ast.parse((HERE / "rsgen" / "paths.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SHIPPED_DATA" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("setup.py: SHIPPED_DATA not found in rsgen/paths.py")


SHIPPED_DATA = _shipped_data()


def shipped_files(root: Path = HERE) -> list[Path]:
    """Every file under the shipped folders, relative to ``root``."""
    files = []
    for rel in SHIPPED_DATA:
        folder = root / rel
        if not folder.is_dir():
            raise FileNotFoundError(f"setup.py: {folder} is missing; a wheel needs the checkout's {rel}/")
        files += sorted(
            p.relative_to(root) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    return files


class BuildPyWithData(build_py):
    """build_py that also copies :data:`SHIPPED_DATA` to ``<build_lib>/rsgen/_data/`` (not in editable
    installs, which read the checkout's folders directly)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "rsgen" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # no stale files from an earlier build
        for rel in shipped_files():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / rel, dest)


if __name__ == "__main__":  # as setuptools runs it (tests read SHIPPED_DATA without building)
    setup(cmdclass={"build_py": BuildPyWithData})
