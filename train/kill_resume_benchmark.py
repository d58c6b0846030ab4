"""Kill/resume benchmark (not a test): ``rsgen train`` is SIGKILLed at random moments and restarted until it
finishes, on one and on two processes; its final checkpoint (model, EMA, optimizer moments, every process's
generators) is compared with an uninterrupted run's. Prints a table: kills, resumes, tensors compared, max
abs diff (0 = the resume is bit-exact).

    .venv/bin/python train/kill_resume_benchmark.py --kills 12 --kills-2p 8 --threads 2 --work /tmp/kr
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from rsgen.training.kill_resume import (
    format_table,
    kill_resume_trial,
    synthetic_manifest,
    train_command,
    uninterrupted_run,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="training config (default: tiny)")
    p.add_argument("--manifest", type=Path, help="training manifest (default: 16 synthetic images)")
    p.add_argument("--steps", type=int, default=20, help="max_steps of every run (default: 20)")
    p.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint_every (default: 1)")
    p.add_argument("--kills", type=int, default=12, help="kills of the one-process run (default: 12)")
    p.add_argument("--kills-2p", type=int, default=8, help="kills of the two-process run (default: 8)")
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads of a run, shared by its processes (default: 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default: 0)")
    p.add_argument("--work", type=Path, help="folder for the runs (default: a temporary folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="rsgen-kill-resume-"))
    manifest = args.manifest or synthetic_manifest(work / "data")
    overrides = [f"max_steps={args.steps}", f"checkpoint_every={args.checkpoint_every}", "keep_checkpoints=2"]
    results = []
    for processes, kills in ((1, args.kills), (2, args.kills_2p)):
        if kills <= 0:
            continue
        os.environ["OMP_NUM_THREADS"] = str(max(1, args.threads // processes))
        batch = [f"optim.batch_size={8 // processes}"]
        command = train_command(args.config, manifest, processes, [*overrides, *batch])
        ref = work / f"{processes}p-uninterrupted"
        seconds = uninterrupted_run(command, ref)
        logging.info("%d process(es): uninterrupted run %.1f s", processes, seconds)
        results.append(
            kill_resume_trial(
                command,
                work / f"{processes}p-killed",
                ref,
                kills,
                seconds,
                args.steps,
                seed=args.seed + processes,
                label=f"{processes} process{'es' if processes > 1 else ''} x {os.environ['OMP_NUM_THREADS']} threads",
            )
        )
    print(format_table(results))
    print(f"runs in {work}")
    return 0 if all(r.exact for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
