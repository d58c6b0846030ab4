"""Checkpoints: a manifest with checksums; a damaged newest checkpoint falls back to the previous intact one
(and the resumed run still ends bit-identical); a full disk leaves the previous checkpoint intact; pickles
with code in them are refused; NaN / inf losses are skipped and counted, and too many in a row stop the run."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.errors import RsgenError  # noqa: E402
from rsgen.training import train  # noqa: E402
from rsgen.training.checkpoint import (  # noqa: E402
    CheckpointError,
    checkpoint_dirs,
    checkpoint_problem,
    checkpoint_tensors,
    compare_checkpoints,
    find_resume_checkpoint,
    write_manifest,
)
from rsgen.training.loop import NonFiniteLossError  # noqa: E402
from rsgen.training.tasks import DiffusionTask  # noqa: E402

RUN = {"max_steps": 3, "checkpoint_every": 1, "keep_checkpoints": 3}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A 3-step run with a checkpoint after every step (read-only: tests copy it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("run")
    train(tiny_config(root, **RUN), FakeImageCaptionDataset(16, 32), progress=False)
    torch.set_num_threads(threads)
    return root


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated model": lambda c: _truncate(c / "model.safetensors"),
    "truncated optimizer": lambda c: _truncate(c / "optimizer.bin"),
    "zero-byte EMA": lambda c: (c / "ema.safetensors").write_bytes(b""),
    "garbage state": lambda c: (c / "train_state.json").write_text("{not json"),
    "no manifest": lambda c: (c / "manifest.json").unlink(),
    "garbage manifest": lambda c: (c / "manifest.json").write_text("]"),
}


def test_manifest_lists_every_file_with_its_checksum(finished_run):
    ckpt = checkpoint_dirs(finished_run)[-1]
    manifest = json.loads((ckpt / "manifest.json").read_text())
    names = {p.name for p in ckpt.iterdir()} - {"manifest.json"}
    assert (
        set(manifest["files"])
        == names
        >= {
            "model.safetensors",
            "optimizer.bin",
            "scheduler.bin",
            "random_states_0.pkl",
            "ema.safetensors",
            "train_state.json",
        }
    )
    assert manifest["step"] == 3 and checkpoint_problem(ckpt) is None
    assert not list((finished_run / "checkpoints").glob(".*"))  # no half-written folders left


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_the_previous(finished_run, tmp_path, damage, caplog):
    run = _copy(finished_run, tmp_path / "run")
    newest = checkpoint_dirs(run)[-1]
    DAMAGE[damage](newest)
    assert checkpoint_problem(newest) is not None
    with caplog.at_level(logging.WARNING, logger="rsgen.training.checkpoint"):
        assert find_resume_checkpoint(run) == checkpoint_dirs(run)[-2]
    assert "step-0000003 is damaged" in caplog.text


def test_resume_past_a_damaged_checkpoint_is_still_exact(finished_run, tmp_path, caplog):
    run = _copy(finished_run, tmp_path / "run")
    _truncate(checkpoint_dirs(run)[-1] / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(run, **RUN), FakeImageCaptionDataset(16, 32), progress=False)
    assert "is damaged" in caplog.text and result.step == 3 and len(result.losses) == 1  # redid step 3
    assert compare_checkpoints(checkpoint_dirs(run)[-1], checkpoint_dirs(finished_run)[-1])[1:] == (0, 0.0)
    with pytest.raises(CheckpointError, match="step-0000001 is not usable: train_state.json"):
        bad = checkpoint_dirs(run)[0]
        (bad / "train_state.json").write_text('{"step": 99}')
        train(tiny_config(run, **RUN), FakeImageCaptionDataset(16, 32), resume=str(bad), progress=False)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "step-0000002" in str(f):
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        CheckpointError,
        match=r"step-0000002: no space left on the device; the previous checkpoint .*step-0000001 is intact",
    ):
        train(tiny_config(tmp_path, **RUN), FakeImageCaptionDataset(16, 32), progress=False)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000001"]
    assert checkpoint_problem(checkpoint_dirs(tmp_path)[0]) is None
    assert not list((tmp_path / "checkpoints").glob(".*"))


class _Payload:
    """Unpickling this creates ``marker``: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_pickles_with_code_are_refused(finished_run, tmp_path, name):
    """Even with a manifest that matches (an attacker rewrote it), no code runs and the resume stops."""
    run = _copy(finished_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    ckpt = checkpoint_dirs(run)[-1]
    torch.save({"state": _Payload(marker)}, ckpt / name)
    write_manifest(ckpt, 3)
    with pytest.raises(CheckpointError, match="step-0000003"):
        train(tiny_config(run, **{**RUN, "max_steps": 4}), FakeImageCaptionDataset(16, 32), progress=False)
    assert not marker.exists()


def _nan_on(calls: set[int], monkeypatch) -> None:
    """DiffusionTask.loss returns NaN on the given (0-based) calls."""
    real = DiffusionTask.loss
    count = {"n": 0}

    def loss(self, batch, generator):
        value, parts = real(self, batch, generator)
        n, count["n"] = count["n"], count["n"] + 1
        return (value * math.nan if n in calls else value), parts

    monkeypatch.setattr(DiffusionTask, "loss", loss)


def test_nonfinite_losses_are_skipped_and_counted(tmp_path, monkeypatch, caplog):
    _nan_on({0, 2}, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="rsgen.training.loop"):
        result = train(tiny_config(tmp_path, max_steps=2), FakeImageCaptionDataset(16, 32), progress=False)
    assert (result.step, result.skipped_steps) == (2, 2)
    assert all(math.isfinite(v) for v in result.losses) and len(result.losses) == 2
    assert "step skipped (1 in a row, 2 in all)" in caplog.text
    tensors = checkpoint_tensors(checkpoint_dirs(tmp_path)[-1])
    assert float(tensors["optimizer/0/step"]) == 2  # two optimizer steps for four batches
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith(("model/", "ema/")))
    state = json.loads((checkpoint_dirs(tmp_path)[-1] / "train_state.json").read_text())
    assert (state["skipped_steps"], state["nonfinite_in_row"]) == (2, 0)
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)  # four batches: the second epoch consumed


def test_too_many_nonfinite_losses_in_a_row_stop_the_run(tmp_path, monkeypatch):
    _nan_on(set(range(100)), monkeypatch)
    with pytest.raises(NonFiniteLossError, match="3 steps in a row had a NaN or inf loss") as err:
        train(tiny_config(tmp_path, max_nonfinite_steps=3), FakeImageCaptionDataset(16, 32), progress=False)
    assert isinstance(err.value, RsgenError) and "\n" not in str(err.value)


def test_a_caption_embedding_does_not_depend_on_its_batch(tmp_path):
    """On several threads a batch's composition changes the rounding of the text encoder: the training
    embeddings must not depend on which captions were new together (a resumed run starts uncached)."""
    from rsgen.models.text import PromptEncoder
    from rsgen.training.tasks import encode_captions

    torch.set_num_threads(2)
    captions = [f"a field {i}" for i in range(8)] + ["farmland", "a satellite image", ""]
    together = encode_captions(PromptEncoder.load(None), captions)  # (11, T, D)
    fresh = PromptEncoder.load(None)
    apart = torch.cat([encode_captions(fresh, captions[i : i + 3]) for i in range(0, len(captions), 3)])
    assert torch.equal(together, apart)


def test_a_checkpoint_of_the_previous_format_still_resumes(finished_run, tmp_path, caplog):
    """Format 1 (rsgen's own files, no manifest): weights, EMA (same safetensors names), optimizer, schedule
    and position are read; with the position-seeded draws the run even continues exactly."""
    from accelerate.utils import load
    from safetensors.torch import load_file, save_file

    run = _copy(finished_run, tmp_path / "run")
    shutil.rmtree(checkpoint_dirs(run)[-1])
    ckpt = checkpoint_dirs(run)[-1]  # step 2
    torch.save(load(ckpt / "optimizer.bin"), ckpt / "optimizer.pt")
    torch.save(load(ckpt / "scheduler.bin"), ckpt / "lr_scheduler.pt")
    save_file(load_file(ckpt / "ema.safetensors"), ckpt / "ema.safetensors")  # no EMAModel metadata
    state = json.loads((ckpt / "train_state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps({**state, "ema_updates": 2}))
    for name in (
        "manifest.json",
        "train_state.json",
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
    ):
        (ckpt / name).unlink()
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(run, **RUN), FakeImageCaptionDataset(16, 32), progress=False)
    assert "older rsgen" in caplog.text and result.step == 3 and len(result.losses) == 1
    a, b = checkpoint_tensors(checkpoint_dirs(run)[-1]), checkpoint_tensors(checkpoint_dirs(finished_run)[-1])
    for k in a:
        if k.startswith(("model/", "ema/", "optimizer/")):
            assert torch.equal(a[k], b[k]), k
