#!/usr/bin/env python
"""Reconstruction quality of a VAE on EuroSAT val (or an image folder): PSNR, SSIM, colour statistics and the RS
classifier's accuracy on the reconstructions beside the originals (the ceiling of a latent model's text
faithfulness); with ``--gsd-images N``, also the GSD ceiling: the GSD predictor's error and read-as median on
real held-out images at 10 / 20 / 40 m, straight and after the round trip.

python eval/vae_quality.py --vae assets/default-model [--every 8] [--gsd-images 300] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rsgen.errors import RsgenError
from rsgen.eval.autoencoder import gsd_round_trip, reconstruction_quality
from rsgen.eval.reference_data import load_reference
from rsgen.io import atomic_write_json
from rsgen.models.vae import load_vae


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vae", required=True, help="model folder with vae/, or a diffusers AutoencoderKL folder"
    )
    parser.add_argument(
        "--reference", default="eurosat-val", help="eurosat-val, eurosat-train or an image folder"
    )
    parser.add_argument("--every", type=int, default=8, help="use every k-th reference image")
    parser.add_argument(
        "--feature-net", default=None, help="RS feature network folder (default: the shipped one)"
    )
    parser.add_argument(
        "--gsd-images",
        type=int,
        default=0,
        help="real held-out images (EuroSAT val + held-out NAIP years) for the GSD round-trip check; 0 = skip",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args()
    try:
        data = load_reference(args.reference)
        data = data.subset(np.arange(0, len(data), max(1, args.every)))
        vae = load_vae(args.vae).float().eval()
        scores = reconstruction_quality(vae, data, args.feature_net).to_dict()
        if args.gsd_images:
            scores["gsd_round_trip"] = gsd_round_trip(vae, args.gsd_images)
    except RsgenError as e:
        print(f"error: {e}")
        return 2
    print(json.dumps(scores, indent=2))
    if args.out:
        atomic_write_json(args.out, scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
