"""Scene benchmark: for each size, a coarse-to-fine scene through a cascade (``rsgen generate --size N --gsd G
--cascade NAME`` as a library call) in its own process, measuring peak RSS (``getrusage``: the whole process,
models included, and above the RSS once the models are loaded), wall time, km^2 per minute at the GSD, and the
seam ratio at the last stage's window and tile borders (gradient energy across them over inside; ~1 is
seamless). One JSON line per size, then a Markdown table.

Usage: OMP_NUM_THREADS=1 python sample/scene_benchmark.py --sizes 512 1024 [--cascade default] [--gsd 10]
       [--steps N] [--out runs/scene-benchmark] [--keep]"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(size: int, args: argparse.Namespace) -> dict:
    """One scene in this process; returns the measurements."""
    import torch

    from rsgen.io import GeoReference, read_geotiff
    from rsgen.metadata import Metadata
    from rsgen.pipelines.cascade import Cascade, load_cascade
    from rsgen.pipelines.scene import default_tiling, generate_scene, scene_boundaries, seam_ratio

    torch.set_num_threads(args.threads)
    config = load_cascade(args.cascade)
    for stage in config.stages:
        stage.steps = args.steps or stage.steps  # fewer steps: the same memory, sooner
    cascade = Cascade(config)
    stages = cascade.config.active()
    pipes = [cascade.pipeline(s) for s in stages]  # load every stage before measuring
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    loaded = _rss_mib()
    meta = Metadata(gsd_m=args.gsd, lat=args.lat, lon=args.lon, date=args.date)
    georef = GeoReference.from_latlon_gsd(args.lat, args.lon, args.gsd, size, size)
    out = Path(args.out) / f"scene_{size}.tif"
    t0, cpu0 = time.perf_counter(), _cpu_s()
    generate_scene(
        pipes[0],
        out,
        args.prompt,
        meta,
        height=size,
        width=size,
        georef=georef,
        seed=args.seed,
        num_inference_steps=args.steps or 25,
        scheduler=args.scheduler,
        cascade=cascade,
        canvas_on_disk=True if args.on_disk else None,
        progress=False,
    )
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    image = read_geotiff(out).array  # (3, H, W) uint8; only for the seam measurement
    rows, cols = scene_boundaries(pipes[-1], default_tiling(pipes[-1]), size, size)
    km2 = (size * args.gsd / 1000) ** 2
    if not args.keep:
        out.unlink()
    return {
        "size": size,
        "cascade": args.cascade,
        "gsd_m": args.gsd,
        "scheduler": args.scheduler,
        "canvases_on_disk": bool(args.on_disk),
        "steps": [s.steps or args.steps or 25 for s in stages],
        "peak_rss_mib": round(peak, 1),
        "rss_after_load_mib": round(loaded, 1),
        "peak_above_load_mib": round(peak - loaded, 1),
        "wall_s": round(wall, 1),
        "km2": round(km2, 2),
        "km2_per_min": round(km2 / (wall / 60), 3),
        "cpu_s": round(cpu, 1),  # on a shared machine wall time includes waiting for a core
        "km2_per_cpu_min": round(km2 / (cpu / 60), 3),
        "seam_ratio": round(seam_ratio(image.astype("float32") / 255, rows, cols), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--cascade", default="default")
    ap.add_argument("--gsd", type=float, default=10.0, help="final GSD, metres")
    ap.add_argument("--prompt", default="farmland with fields and a river")
    ap.add_argument("--lat", type=float, default=48.1)
    ap.add_argument("--lon", type=float, default=11.6)
    ap.add_argument("--date", default="2020-07")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scheduler", default="dpm++")
    ap.add_argument(
        "--steps",
        type=int,
        default=0,
        help="steps of every stage (0: the cascade's); memory does not depend on it",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--on-disk", action="store_true", help="every scene canvas on disk (as for huge scenes)")
    ap.add_argument("--out", default="runs/scene-benchmark", help="folder for the scenes and results.jsonl")
    ap.add_argument("--keep", action="store_true", help="keep the generated GeoTIFFs")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(json.dumps(measure(args.one, args)))
        return
    rows = []
    options = [
        "cascade",
        "gsd",
        "prompt",
        "lat",
        "lon",
        "date",
        "seed",
        "scheduler",
        "steps",
        "threads",
        "out",
    ]
    passthrough = (
        [x for k in options for x in (f"--{k}", str(getattr(args, k)))]
        + ["--keep"] * args.keep
        + ["--on-disk"] * args.on_disk
    )
    for size in args.sizes:  # a fresh process per size: its peak RSS is that size's alone
        res = subprocess.run(
            [sys.executable, __file__, *passthrough, "--one", str(size)], capture_output=True, text=True
        )
        if res.returncode != 0:
            sys.exit(f"size {size} failed:\n{res.stderr[-3000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        with open(Path(args.out) / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    print(
        "\n| size px | km^2 | wall s | CPU s | km^2/min (wall) | km^2/CPU-min | peak RSS MiB | above load MiB | seam |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['km2']} | {r['wall_s']} | {r['cpu_s']} | {r['km2_per_min']} | "
            f"{r['km2_per_cpu_min']} | {r['peak_rss_mib']} | "
            f"{r['peak_above_load_mib']} | {r['seam_ratio']} |"
        )


if __name__ == "__main__":
    main()
