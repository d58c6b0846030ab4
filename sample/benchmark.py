"""Sampling speed on this machine: seconds per image for the RSGen pipeline (base stage, and the resolution
cascade) next to diffusers' stock StableDiffusionPipeline driving the same UNet, VAE and scheduler in the same
run (the metadata embedding is fed to the stock pipeline's UNet through a forward hook). Random weights are
fine for timing. Usage: python sample/benchmark.py [--config default] [--steps 25] [--repeats 3]"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from diffusers import StableDiffusionPipeline

from rsgen.metadata import Metadata
from rsgen.pipelines.cascade import Cascade, load_cascade
from rsgen.pipelines.default import build_random_pipeline
from rsgen.pipelines.schedulers import make_scheduler


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="default", help="model config whose shapes are timed")
    ap.add_argument("--cascade", default="default", help="cascade config to time")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = build_random_pipeline(args.config)
    pipe.set_progress_bar_config(disable=True)
    meta = Metadata(gsd_m=1.0, lat=47.0, lon=-99.0, date="2020-07")
    prompt = "a satellite image of farmland"
    size = pipe.default_size
    out: dict[str, float | int | str] = {"config": args.config, "size": size, "steps": args.steps}

    def ours(gm: float) -> None:
        pipe(
            prompt,
            meta,
            num_inference_steps=args.steps,
            guidance_text=5.0,
            guidance_meta=gm,
            scheduler="dpm++",
        )

    out["rsgen_s_per_image"] = timed(lambda: ours(1.0), args.repeats)
    out["rsgen_meta_guided_s_per_image"] = timed(lambda: ours(3.0), args.repeats)

    # Stock diffusers on the same modules: text states precomputed, metadata embedding injected by a hook.
    stock = StableDiffusionPipeline(
        pipe.vae,
        pipe.text_encoder,
        pipe.tokenizer,
        pipe.unet,
        make_scheduler("dpm++", pipe.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    stock.set_progress_bar_config(disable=True)

    def add_labels(module, a, kw):
        kw["class_labels"] = labels.expand(a[0].shape[0], -1)
        return a, kw

    with torch.no_grad():
        text, neg = pipe.encode_text([prompt]), pipe.encode_text([""])
        labels = pipe.embed_metadata([meta])
    hook = pipe.unet.register_forward_pre_hook(add_labels, with_kwargs=True)
    try:
        out["stock_s_per_image"] = timed(
            lambda: stock(
                prompt_embeds=text,
                negative_prompt_embeds=neg,
                height=size,
                width=size,
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                output_type="np",
            ),
            args.repeats,
        )
    finally:
        hook.remove()
    out["ratio_rsgen_over_stock"] = out["rsgen_s_per_image"] / out["stock_s_per_image"]

    cascade = Cascade(load_cascade(args.cascade))
    stages = cascade.config.active()
    final = size * 1
    for s in stages[1:]:
        final *= s.factor
    out["cascade_size"] = final
    out["cascade_s_per_image"] = timed(
        lambda: cascade(prompt, meta, size=(final, final), steps=args.steps, progress=False),
        max(1, args.repeats - 1),
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
