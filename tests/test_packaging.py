"""The installable package: what the wheel carries, where rsgen finds configs and models, declared dependencies.

The full check (build the wheel, install it in a fresh venv, generate an image) is in ``.ci/run``."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import rsgen.paths as paths
from rsgen.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


# ------------------------------------------------------------------------------------------ path resolution
def test_data_roots_order_home_then_checkout_then_package(tmp_path):
    home = _tree(tmp_path / "home", ["assets/default-model/model_index.json"])
    checkout = _tree(tmp_path / "checkout", ["configs/tiny.yaml", "assets/default-model/model_index.json"])
    packaged = _tree(tmp_path / "pkg", ["configs/tiny.yaml", "assets/captions/classes.yaml"])
    roots = paths.data_roots(home, checkout, packaged)
    assert roots == [home, checkout, packaged]
    assert paths.find_data_dir("assets", roots) == home / "assets"
    assert paths.find_data_dir("configs", roots) == checkout / "configs"  # the home has no configs/
    assert paths.find_data_dir("configs", paths.data_roots(None, None, packaged)) == packaged / "configs"
    # nothing anywhere: the packaged location, which then names a missing folder in errors
    assert paths.find_data_dir("other", roots) == packaged / "other"


def test_checkout_root_needs_pyproject_and_configs(tmp_path):
    pkg = tmp_path / "site-packages" / "rsgen"
    pkg.mkdir(parents=True)
    assert paths.checkout_root(pkg) is None
    (tmp_path / "site-packages" / "configs").mkdir()
    assert paths.checkout_root(pkg) is None  # a stray configs/ folder is not a checkout
    (tmp_path / "site-packages" / "pyproject.toml").write_text("")
    assert paths.checkout_root(pkg) == tmp_path / "site-packages"
    assert paths.checkout_root() == REPO  # the tests run from a checkout


def test_resolve_data_path_maps_assets_and_configs(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ASSETS_DIR", tmp_path / "a")
    monkeypatch.setattr(paths, "CONFIG_DIR", tmp_path / "c")
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "r")
    assert paths.resolve_data_path("assets/default-sr-model") == tmp_path / "a" / "default-sr-model"
    assert (
        paths.resolve_data_path("configs/cascade/default.yaml") == tmp_path / "c" / "cascade" / "default.yaml"
    )
    assert paths.resolve_data_path("runs/x") == tmp_path / "r" / "runs" / "x"
    assert paths.resolve_data_path(tmp_path / "abs") == tmp_path / "abs"


def test_rsgen_home_is_read_at_import(tmp_path):
    home = _tree(tmp_path / "home", ["configs/mine.yaml"])
    code = "import rsgen.paths as p; print(p.CONFIG_DIR); print(p.ASSETS_DIR)"
    env = {**os.environ, "RSGEN_HOME": str(home), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    config_dir, assets_dir = out.stdout.split()
    assert Path(config_dir) == home / "configs"
    assert Path(assets_dir) == REPO / "assets"  # the home has no assets/: the checkout's


def test_install_home_copies_shipped_folders_only(monkeypatch, tmp_path):
    src = _tree(
        tmp_path / "src",
        [
            "configs/tiny.yaml",
            "configs/cascade/tiny.yaml",
            "assets/default-model/model_index.json",
            "assets/default-sr-model/model_index.json",
            "assets/eval/gsd-predictor/config.json",
            "assets/captions/classes.yaml",
            "assets/reports/big-report.md",
        ],
    )
    monkeypatch.setattr(paths, "CONFIG_DIR", src / "configs")
    monkeypatch.setattr(paths, "ASSETS_DIR", src / "assets")
    dest = tmp_path / "home"
    written = paths.install_home(dest)
    assert [p.relative_to(dest).as_posix() for p in written] == list(paths.SHIPPED_DATA)
    assert (dest / "configs" / "cascade" / "tiny.yaml").read_text() == "configs/cascade/tiny.yaml"
    assert (dest / "assets" / "eval" / "gsd-predictor" / "config.json").is_file()
    assert not (dest / "assets" / "reports").exists()
    with pytest.raises(ConfigError, match="--force"):
        paths.install_home(dest)
    (src / "configs" / "tiny.yaml").write_text("changed")
    paths.install_home(dest, force=True)
    assert (dest / "configs" / "tiny.yaml").read_text() == "changed"


def test_install_home_names_a_missing_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "CONFIG_DIR", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="nowhere"):
        paths.install_home(tmp_path / "home")


def test_models_command_lists_and_installs(monkeypatch, tmp_path, capsys):
    from rsgen.cli import build_parser, main

    build_parser()  # import every command module (they read rsgen.paths at import) before patching paths
    src = _tree(tmp_path / "src", [f"{rel}/x.txt" for rel in paths.SHIPPED_DATA])
    monkeypatch.setattr(paths, "CONFIG_DIR", src / "configs")
    monkeypatch.setattr(paths, "ASSETS_DIR", src / "assets")
    assert main(["models"]) == 0
    assert str(src / "configs") in capsys.readouterr().out
    assert main(["models", "install", str(tmp_path / "home")]) == 0
    assert f"RSGEN_HOME={tmp_path / 'home'}" in capsys.readouterr().out
    assert (tmp_path / "home" / "assets" / "default-model" / "x.txt").is_file()
    assert main(["models", "install", str(tmp_path / "home")]) == 2  # one-line error, not a traceback


def test_setup_and_paths_ship_the_same_folders():
    import runpy

    setup_globals = runpy.run_path(str(REPO / "setup.py"), run_name="not_main")  # reads paths.py's list
    assert tuple(setup_globals["SHIPPED_DATA"]) == paths.SHIPPED_DATA
    manifest = re.findall(r"^graft (\S+)", (REPO / "MANIFEST.in").read_text(), flags=re.M)
    assert tuple(manifest) == paths.SHIPPED_DATA


# ------------------------------------------------------------------------------------------ the wheel
@pytest.mark.slow
def test_wheel_carries_configs_and_default_models(tmp_path):
    """Build the wheel (no isolation, ~20 s) from a copy of the sources whose configs/ and assets/ link to the
    checkout's, so the build writes nothing into the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "rsgen", src / "rsgen", ignore=shutil.ignore_patterns("__pycache__", "_data"))
    for name in ("configs", "assets"):
        (src / name).symlink_to(REPO / name, target_is_directory=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", "."]
    subprocess.run(cmd, cwd=src, check=True, capture_output=True, timeout=240)
    (wheel,) = (src / "dist").glob("rsgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "rsgen/cli/__init__.py",
        "rsgen/_data/configs/tiny.yaml",
        "rsgen/_data/configs/default.yaml",
        "rsgen/_data/configs/cascade/default.yaml",
        "rsgen/_data/assets/default-model/model_index.json",
        "rsgen/_data/assets/default-model/unet/diffusion_pytorch_model.safetensors",
        "rsgen/_data/assets/default-sr-model/model_index.json",
        "rsgen/_data/assets/captions/classes.yaml",
        "rsgen/_data/assets/eval/gsd-predictor/config.json",
    ):
        assert required in names, required
    assert not [n for n in names if "/reports/" in n or "/samples/" in n or n.startswith("tools/")]
    # release and remote-GPU tooling stays out of the library
    assert not {"rsgen/training/remote_bundle.py", "rsgen/pipelines/ship.py"} & names
    # every shipped file of the checkout is in the wheel
    for rel in paths.SHIPPED_DATA:
        top, _, rest = rel.partition("/")
        folder = (paths.CONFIG_DIR if top == "configs" else paths.ASSETS_DIR) / rest
        for f in folder.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                assert f"rsgen/_data/{rel}/{f.relative_to(folder).as_posix()}" in names


# ------------------------------------------------------------------------------------------ dependencies
def _third_party_imports(root: Path) -> set[str]:
    names = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("rsgen", "__future__")}


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def test_every_imported_package_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for v in project["optional-dependencies"].values() for s in v]
    declared = {_norm(re.split(r"[\s\[<>=!~;]", s, maxsplit=1)[0]) for s in specs}
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports(REPO / "rsgen")):
        candidates = {_norm(d) for d in dists.get(module, [module])}
        if not candidates & declared:
            missing[module] = sorted(candidates)
    assert not missing, f"imported by rsgen/ but not declared in pyproject.toml: {missing}"
