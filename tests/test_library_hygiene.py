"""rsgen as a library: importing it changes nothing global, failures are not swallowed, Python and CLI agree."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rsgen.errors import DataError
from rsgen.metadata import Metadata

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_import_rsgen_leaves_the_environment_unchanged():
    # third-party libraries set their own variables on import (torch: TORCHINDUCTOR_CACHE_DIR): import them first
    code = (
        "import json, os, torch, torch._inductor.config, diffusers, transformers, accelerate, peft; "
        "before = dict(os.environ); "
        "import rsgen, rsgen.pipelines, rsgen.training, rsgen.eval, rsgen.cli; "
        "after = dict(os.environ); "
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after) "
        "if before.get(k) != after.get(k)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert changed == {}, f"importing rsgen changed environment variables: {changed}"


def test_loaders_ask_for_local_files_only():
    """Every ``from_pretrained`` call in rsgen/ passes local_files_only=True (RSGenPipeline sets it itself)."""
    missing = []
    for path in sorted((REPO / "rsgen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"
            ):
                keywords = {k.arg for k in node.keywords}
                is_pipeline = isinstance(node.func.value, ast.Name) and node.func.value.id == "RSGenPipeline"
                is_super = isinstance(node.func.value, ast.Call)  # super().from_pretrained(**kwargs)
                if "local_files_only" not in keywords and not is_pipeline and not is_super:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not missing, f"from_pretrained without local_files_only=True: {missing}"


def test_rsgen_pipeline_loads_with_local_files_only(monkeypatch):
    from diffusers import DiffusionPipeline

    from rsgen.pipelines import RSGenPipeline

    seen = {}
    monkeypatch.setattr(
        DiffusionPipeline, "from_pretrained", classmethod(lambda cls, p, **kw: seen.update(kw))
    )
    from rsgen.paths import DEFAULT_MODEL_DIR

    RSGenPipeline.from_pretrained(
        str(DEFAULT_MODEL_DIR)
    )  # a real folder: its model_index.json is checked first
    assert seen.get("local_files_only") is True


def test_no_import_error_guard_around_rsgen_modules():
    """rsgen's own subpackages are always installed: a failing import of one is a bug to see, not to skip."""
    guarded = []
    for path in sorted((REPO / "rsgen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not catches & {"ImportError", "ModuleNotFoundError", "Exception"}:
                continue
            for stmt in node.body:
                module = stmt.module if isinstance(stmt, ast.ImportFrom) else None
                if isinstance(stmt, ast.Import):
                    module = stmt.names[0].name
                if module and module.split(".")[0] == "rsgen":
                    guarded.append(f"{path.relative_to(REPO)}:{stmt.lineno} {module}")
    assert not guarded, f"import guards around rsgen modules: {guarded}"


def test_a_broken_caption_vocabulary_is_an_error_not_a_fallback(monkeypatch):
    import rsgen.data.captions as captions
    from rsgen.eval.evaluate import class_prompt
    from rsgen.eval.text_faithfulness import normalise_label

    assert class_prompt("Forest").startswith("a satellite image of ")
    assert normalise_label("woodland") == "Forest"  # an alias the vocabulary knows

    def broken():
        raise DataError("caption vocabulary: missing file classes.yaml")

    monkeypatch.setattr(captions, "default_vocabulary", broken)
    with pytest.raises(DataError, match="classes.yaml"):
        class_prompt("Forest")
    with pytest.raises(DataError, match="classes.yaml"):
        normalise_label("woodland")


class _RecordingPipe:
    """Stands in for RSGenPipeline: records the guidance each call asked for."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, prompt, meta, **kw):
        self.calls.append(kw)
        return SimpleNamespace(images=np.zeros((1, 8, 8, 3), np.float32))


def test_run_whatif_uses_the_models_metadata_guidance_by_default():
    from rsgen.pipelines.whatif import run_whatif

    pipe = _RecordingPipe()
    run_whatif(
        pipe, None, "a forest", "year", ["2000", "2010"], base_metadata=Metadata(gsd_m=10), progress=False
    )
    # None lets the pipeline use its model_index.json default_guidance_meta (RSGenPipeline.guidance_meta_for)
    assert [c["guidance_meta"] for c in pipe.calls] == [None, None]
    run_whatif(pipe, None, "a forest", "year", ["2000"], base_metadata=Metadata(gsd_m=10), guidance_meta=2.0)
    assert pipe.calls[-1]["guidance_meta"] == 2.0


def test_whatif_cli_uses_the_models_metadata_guidance_by_default():
    from rsgen.cli import build_parser

    args = build_parser().parse_args(["whatif", "x.tif", "--sweep", "month=1,7"])
    assert args.guidance_meta is None
    args = build_parser().parse_args(["whatif", "x.tif", "--sweep", "month=1,7", "--guidance-meta", "4"])
    assert args.guidance_meta == 4.0
