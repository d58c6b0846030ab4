"""Training speed benchmark (not a test): images/s of rsgen's training loop (`rsgen.training.train`, base mode,
cached latents, text cache, metadata embedding, min-SNR, EMA, AdamW) next to a plain diffusers training step
(noise -> UNet -> MSE -> AdamW) on the same UNet, in the same run.

    nice -n 10 .venv/bin/python train/benchmark_training.py --configs tiny default --steps 12 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from rsgen.metadata import Metadata
from rsgen.models.unet import build_unet, time_embed_dim
from rsgen.training import load_train_config, train


class SyntheticImages(torch.utils.data.Dataset):
    """Random images with captions and metadata, items as ``ImageCaptionDataset``'s (speed only)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self.metas = [Metadata(gsd_m=10.0, date="2019-07-04"), Metadata(), Metadata(gsd_m=0.5, lat=47, lon=8)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {
            "pixel_values": torch.rand((3, self.size, self.size), generator=g) * 2 - 1,
            "caption": f"a satellite image of class {i % 10}",
            "metadata": self.metas[i % 3],
            "index": i,
            "source": "synthetic",
            "label": None,
        }


def plain_diffusers_images_per_s(cfg, steps: int) -> float:
    """A stock diffusers step (as in diffusers' train_text_to_image.py) on the same UNet shape."""
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    unet = build_unet(cfg.unet, 384).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    sched = DDPMScheduler(num_train_timesteps=1000)
    b, s = cfg.optim.batch_size, cfg.unet.sample_size
    latents, ctx = torch.randn(b, 4, s, s), torch.randn(b, 32, 384)
    labels = torch.zeros(b, time_embed_dim(unet))
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (b,))
        pred = unet(sched.add_noise(latents, noise, t), t, ctx, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return b / (sum(times[2:]) / steps)


def rsgen_images_per_s(cfg, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg.output_dir = tmp
        cfg.max_steps, cfg.log_every = 2 * steps, steps
        cfg.checkpoint_every, cfg.sample_every = 0, 0
        ds = SyntheticImages(cfg.optim.batch_size * 4, cfg.data.image_size)
        # two log intervals of `steps` steps: the first includes warm-up, the second (reported) is clean
        result = train(cfg, ds, resume=None, progress=False)
        return result.images_per_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "default"], help="configs to benchmark")
    p.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("| config | UNet params | batch | latent | rsgen loop img/s | plain diffusers img/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        cfg = load_train_config(name, ["sample_every=0"])
        n = sum(q.numel() for q in build_unet(cfg.unet, 384).parameters())
        plain = plain_diffusers_images_per_s(cfg, args.steps)
        ours = rsgen_images_per_s(cfg, args.steps)
        s = cfg.unet.sample_size
        print(
            f"| {name} | {n / 1e6:.1f} M | {cfg.optim.batch_size} | {s}x{s} | {ours:.1f} | {plain:.1f} | "
            f"{ours / plain:.2f} |",
            flush=True,
        )
    print(f"(threads={args.threads}, torch {torch.__version__}, {Path(__file__).name})")


if __name__ == "__main__":
    main()
