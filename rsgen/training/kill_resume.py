"""Kill-and-resume trials: run a training command, SIGKILL it (its whole process group: a launcher and all
its workers) at random moments, start it again until it finishes, and compare its final checkpoint with
that of an uninterrupted run of the same command. Used by ``train/kill_resume_benchmark.py`` and the tests;
a resume is exact when no tensor differs (model, EMA, optimizer moments, every process's generators)."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsgen.errors import RsgenError
from rsgen.training.checkpoint import checkpoint_dirs, compare_checkpoints

log = logging.getLogger(__name__)

#: ``command(run_dir)``: the argv of one training run writing to ``run_dir`` (resuming what is there).
Command = Callable[[Path], Sequence[str]]


@dataclass
class TrialResult:
    """What one trial did and found: kills that hit a running job, runs that started from a checkpoint,
    kills that left a half-written checkpoint behind, and the comparison with the uninterrupted run."""

    label: str
    kills: int = 0
    resumes: int = 0
    torn_checkpoints: int = 0
    tensors: int = 0
    differ: int = 0
    max_abs_diff: float = 0.0
    seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.tensors > 0 and self.differ == 0


def train_command(config: str, manifest: Path, processes: int = 1, overrides: Sequence[str] = ()) -> Command:
    """``rsgen train`` (``python -m rsgen train``; with ``processes`` > 1 under ``torch.distributed.run``,
    as ``accelerate launch`` starts it) with ``--set`` overrides, for any run folder."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]

    def command(run_dir: Path) -> list[str]:
        args = ["train", "--config", config, "--manifest", str(manifest), "--output-dir", str(run_dir)]
        return [*launcher, "-m", "rsgen", *args, "--no-progress", "--set", *overrides]

    return command


def synthetic_manifest(root: Path, n: int = 16, size: int = 32, seed: int = 0) -> Path:
    """``root/manifest.jsonl`` of ``n`` smooth random PNGs (``size`` px, 10 m, three captions each): data for
    trials that must not depend on a real data set."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR).save(root / "img" / f"{i}.png")
        records.append(
            {
                "id": f"synthetic/{i}",
                "path": f"img/{i}.png",
                "captions": [f"a field {i}", "farmland", "a satellite image"],
                "split": "train",
                "source": "synthetic",
                "metadata": {"gsd_m": 10.0, "date": f"2019-{1 + i % 12:02d}-01"},
                "size": [size, size],
            }
        )
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _newest_step(run_dir: Path) -> int:
    done = checkpoint_dirs(run_dir)
    return int(done[-1].name.split("-")[1]) if done else 0


def _after_seconds(seconds: float) -> Callable[[float], bool]:
    """``kill_when`` for :func:`_run`: true ``seconds`` after the start."""
    return lambda elapsed: elapsed >= seconds


def _after_checkpoint(run_dir: Path, step: int, delay_s: float) -> Callable[[float], bool]:
    """``kill_when`` for :func:`_run`: true ``delay_s`` after the checkpoint of ``step`` appeared."""
    seen: list[float] = []

    def kill_when(elapsed: float) -> bool:
        if not seen and _newest_step(run_dir) >= step:
            seen.append(elapsed)
        return bool(seen) and elapsed >= seen[0] + delay_s

    return kill_when


def _run(
    argv: Sequence[str], log_path: Path, timeout_s: float, kill_when: Callable[[float], bool] | None = None
) -> bool:
    """Run ``argv`` in its own process group; SIGKILL the group once ``kill_when(seconds since start)`` is
    true (polled every 20 ms). Returns whether it was killed (False: it finished first). A run that fails
    or times out raises RsgenError with the end of its log."""
    t0 = time.monotonic()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if elapsed > timeout_s or (kill_when is not None and kill_when(elapsed)):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if elapsed > timeout_s:
                    raise RsgenError(f"training run timed out after {timeout_s:.0f} s; see {log_path}")
                return True
            time.sleep(0.02)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RsgenError(f"training run failed (exit {proc.returncode}); end of {log_path}:\n{tail}")
    return False


def uninterrupted_run(command: Command, run_dir: Path, timeout_s: float = 600) -> float:
    """Run ``command`` once to the end in ``run_dir``; returns the seconds it took."""
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _run(command(run_dir), run_dir / "runs.log", timeout_s)
    return time.monotonic() - t0


def kill_resume_trial(
    command: Command,
    run_dir: Path,
    reference_dir: Path,
    kills: int,
    reference_seconds: float,
    total_steps: int,
    seed: int = 0,
    label: str = "",
    timeout_s: float = 600,
) -> TrialResult:
    """Start ``command`` in ``run_dir`` and SIGKILL it ``kills`` times at random moments, then let it finish
    and compare its newest checkpoint with ``reference_dir``'s (an uninterrupted run that took
    ``reference_seconds`` for ``total_steps``). A quarter of the kills (and all once the last step is
    checkpointed) come at a random moment 5-30 % of the uninterrupted run's time after the start (start-up, or the
    export); the others once the run has checkpointed one or two steps more, plus a random 0-1 s
    (during the next step, a checkpoint write, or the export after the last step)."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    result = TrialResult(label or run_dir.name)
    t0 = time.monotonic()
    finished = False
    while not finished:
        start = _newest_step(run_dir)
        result.resumes += start > 0
        kill_when: Callable[[float], bool] | None = None
        if result.kills < kills and (start >= total_steps or rng.random() < 0.25):
            kill_when = _after_seconds(rng.uniform(0.05, 0.3) * reference_seconds)  # start-up (or export)
        elif result.kills < kills:
            target = min(start + rng.randint(1, 2), total_steps)
            kill_when = _after_checkpoint(run_dir, target, rng.uniform(0.0, 1.0))

        killed = _run(command(run_dir), run_dir / "runs.log", timeout_s, kill_when)
        if killed:
            result.kills += 1
            torn = list((run_dir / "checkpoints").glob(".step-*.tmp"))
            result.torn_checkpoints += bool(torn)
            log.info(
                "kill %d at step %d%s",
                result.kills,
                _newest_step(run_dir),
                " (checkpoint half-written)" if torn else "",
            )
        finished = not killed
    result.seconds = time.monotonic() - t0
    ours, theirs = checkpoint_dirs(run_dir), checkpoint_dirs(reference_dir)
    if not ours or not theirs or ours[-1].name != theirs[-1].name:
        raise RsgenError(
            f"kill/resume trial: final checkpoints differ in step ({ours[-1:] or 'none'} vs {theirs[-1:] or 'none'})"
        )
    result.tensors, result.differ, result.max_abs_diff = compare_checkpoints(ours[-1], theirs[-1])
    return result


def format_table(results: Sequence[TrialResult]) -> str:
    """The trials as a plain-text table (one row each, and a total)."""
    head = ("trial", "kills", "resumes", "torn ckpts", "tensors", "differ", "max abs diff", "seconds")
    rows = [
        (
            r.label,
            r.kills,
            r.resumes,
            r.torn_checkpoints,
            r.tensors,
            r.differ,
            f"{r.max_abs_diff:.3g}",
            f"{r.seconds:.0f}",
        )
        for r in results
    ]
    total = (
        "total",
        sum(r.kills for r in results),
        sum(r.resumes for r in results),
        sum(r.torn_checkpoints for r in results),
        sum(r.tensors for r in results),
        sum(r.differ for r in results),
        f"{max((r.max_abs_diff for r in results), default=0.0):.3g}",
        f"{sum(r.seconds for r in results):.0f}",
    )
    table = [head, *rows, total]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = [
    "Command",
    "TrialResult",
    "format_table",
    "kill_resume_trial",
    "synthetic_manifest",
    "train_command",
    "uninterrupted_run",
]
