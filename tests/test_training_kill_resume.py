"""``rsgen train`` SIGKILLed at random moments (start-up, a step, a checkpoint write, the export) and started
again until it finishes: its final checkpoint (model, EMA, optimizer moments, every process's generators)
is bit-identical to an uninterrupted run's, on one process (two threads: a batch's composition must not
change the rounding) and on two. More kills: ``train/kill_resume_benchmark.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import one_thread  # noqa: E402, F401

from rsgen.training.kill_resume import (  # noqa: E402
    kill_resume_trial,
    synthetic_manifest,
    train_command,
    uninterrupted_run,
)

pytestmark = pytest.mark.slow

STEPS = 6


@pytest.mark.parametrize(("processes", "threads", "kills"), [(1, 2, 2), (2, 1, 2)])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, monkeypatch, processes, threads, kills):
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    manifest = synthetic_manifest(tmp_path / "data", n=16)
    overrides = [f"max_steps={STEPS}", "checkpoint_every=1", "keep_checkpoints=2", "log_every=1"]
    command = train_command("tiny", manifest, processes, [*overrides, f"optim.batch_size={8 // processes}"])
    seconds = uninterrupted_run(command, tmp_path / "reference")
    result = kill_resume_trial(
        command, tmp_path / "killed", tmp_path / "reference", kills, seconds, STEPS, seed=3
    )
    assert result.kills >= 1, "every run finished before its kill: nothing was tested"
    assert result.tensors > 300
    assert (result.differ, result.max_abs_diff) == (0, 0.0), result
