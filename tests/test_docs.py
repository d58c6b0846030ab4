"""The user docs hold: the README's Python example runs, its quick-start test command is what CI runs, every
command has a worked example that parses, links resolve, and no project history leaks into them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rsgen.cli import build_parser
from rsgen.paths import DEFAULT_MODEL_DIR

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OWN_DOCS = sorted((REPO / "docs").glob("*.md"))  # every user doc page


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        pytest.skip("the shipped default model is not in this checkout")
    (code,) = _blocks(README, "python")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(2, 64, 64, 3) [0, 1]" in out.stdout  # what the example's comment promises
    assert (tmp_path / "farmland.png").stat().st_size > 1000


def test_readme_quick_start_test_command_is_what_ci_runs():
    bash = _blocks(README, "bash")
    assert len(bash) == 2, "the README gives two quick-start commands"
    generate, tests = (b.strip() for b in bash)
    ci = (REPO / ".ci" / "run").read_text().replace("pip install -q ", "pip install ")  # CI installs quietly
    steps = [s.strip() for s in tests.split("&&")]
    assert steps[-1] == ".venv/bin/python -m pytest -q"
    for step in steps:
        assert step in ci, f"README test step not in .ci/run: {step}"
    assert "rsgen generate" in generate and ".venv/bin/pip install ." in generate  # a normal (wheel) install
    # both install the same torch
    assert steps[1] in generate


def _cli_examples() -> list[list[str]]:
    commands = []
    for block in _blocks(REPO / "docs" / "cli.md", "bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("rsgen "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_every_command_has_a_worked_example_that_parses():
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    examples = _cli_examples()
    assert commands - {e[0] for e in examples} == set(), "commands without an example in docs/cli.md"
    for argv in examples:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/cli.md example does not parse: rsgen {shlex.join(argv)}")
        assert args.command == argv[0]


@pytest.mark.parametrize("page", [README, *OWN_DOCS], ids=lambda p: p.name)
def test_links_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(REPO)}: broken link {target}"


@pytest.mark.parametrize("page", [README, *OWN_DOCS], ids=lambda p: p.name)
def test_no_project_history_in_user_docs(page):
    text = page.read_text()
    for pattern in (
        r"\bissues? #?\d",
        r"previous (model|autoencoder|predictor|one)",
        r"\bsession\b",
        r"\blent\b|\bborrowed\b|\blending\b",
        r"64 MiB",
        r"move `assets/` out",
    ):
        found = re.search(pattern, text, flags=re.I)
        assert not found, f"{page.relative_to(REPO)}: project history ({found.group(0)!r})"
