"""Two CPU processes (gloo, DDP through ``accelerator.prepare``): k steps of two processes with batch B equal
one process with batch B and two gradient-accumulation steps (the same global batches and random draws),
and a two-process run stopped and resumed ends bit-identical on every process (its generators included)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.training import train  # noqa: E402
from rsgen.training.checkpoint import checkpoint_dirs, checkpoint_tensors, compare_checkpoints  # noqa: E402

pytestmark = pytest.mark.slow

COMMON = {"optim.batch_size": 4, "checkpoint_every": 2, "keep_checkpoints": 5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, runs: list[tuple[str, dict]]) -> None:
    """One process of a ``world``-process job: the runs in order (each resumes what is in its folder)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    from accelerate.state import AcceleratorState

    for out, overrides in runs:
        train(tiny_config(Path(out), **overrides), FakeImageCaptionDataset(16, 32), progress=False)
        AcceleratorState._reset_state(reset_partial_state=True)  # end_training closed the process group


def _two_processes(runs: list[tuple[Path, dict]]) -> None:
    mp.spawn(_worker, args=(2, _free_port(), [(str(p), o) for p, o in runs]), nprocs=2, join=True)


def test_two_processes_equal_one_with_gradient_accumulation(tmp_path):
    steps = {**COMMON, "max_steps": 4, "optim.lr_scheduler": "linear", "optim.warmup_steps": 2}
    _two_processes([(tmp_path / "two", steps)])
    train(
        tiny_config(tmp_path / "one", **{**steps, "optim.gradient_accumulation_steps": 2}),
        FakeImageCaptionDataset(16, 32),
        progress=False,
    )
    a, b = checkpoint_tensors(checkpoint_dirs(tmp_path / "two")[-1]), checkpoint_dirs(tmp_path / "one")[-1]
    b = checkpoint_tensors(b)
    weights = [k for k in a if k.startswith(("model/", "ema/", "optimizer/"))]
    assert len(weights) > 300 and set(weights) <= set(b)
    moved = 0
    for k in weights:  # summation order differs (all-reduce vs accumulation): close, not equal
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
        moved += k.startswith("model/")
    start = checkpoint_tensors(checkpoint_dirs(tmp_path / "two")[0])  # after step 2: training moved them
    assert any(not torch.equal(start[k], a[k]) for k in weights if k.startswith("model/")) and moved
    assert {k.split("/")[0] for k in a if k.startswith("random_states")} == {
        "random_states_0",
        "random_states_1",
    }
    assert not torch.equal(a["random_states_0/torch"], a["random_states_1/torch"])  # own generator each


def test_two_process_stop_and_resume_is_bit_exact_on_every_process(tmp_path):
    steps = {**COMMON, "max_steps": 6}
    _two_processes(
        [
            (tmp_path / "full", steps),
            (tmp_path / "part", {**steps, "max_steps": 3}),  # stops mid-epoch (2 batches per process)
            (tmp_path / "part", steps),
        ]
    )
    full, part = checkpoint_dirs(tmp_path / "full")[-1], checkpoint_dirs(tmp_path / "part")[-1]
    n, differ, worst = compare_checkpoints(full, part)  # model, EMA, optimizer, both processes' generators
    assert n > 300 and (differ, worst) == (0, 0.0)
    assert {"random_states_0/torch", "random_states_1/torch"} <= set(checkpoint_tensors(part))
