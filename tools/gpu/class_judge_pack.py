#!/usr/bin/env python
"""Transport for training the class judges on a borrowed GPU (not part of the installed package).

A call to the GPU machine carries at most 64 MiB, so the real training images travel re-encoded as WebP in one
``.npz`` (per label set: the encoded bytes, offsets, labels, class names). On the GPU the pack is decoded and handed
to :func:`rsgen.eval.class_judge_training.run`; the held-out splits are scored afterwards on the original files
(``eval/score_class_judges.py``), so the reported accuracy never depends on the transport encoding.

    python tools/gpu/class_judge_pack.py pack .gpu/judges.npz            # here
    python tools/gpu/class_judge_pack.py train .gpu/judges.npz OUT [key=value ...]   # on the GPU machine
"""

from __future__ import annotations

import io
import json
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# transport size and WebP quality per label set (UC Merced travels at 224 px, the judge's input size)
PACK_SIZES = {"eurosat": (64, 88), "ucm": (224, 85), "aid": (150, 85)}


def _encode(args: tuple[str, int, int]) -> bytes:
    from rsgen.eval.class_judge_data import decode_square

    path, size, quality = args
    im = Image.fromarray(decode_square(Path(path), size).transpose(1, 2, 0))
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def pack(out: Path, root: Path | None = None) -> None:
    from rsgen.eval.class_judge_data import list_judge_images
    from rsgen.paths import datasets_dir

    root = root or datasets_dir()
    arrays: dict[str, np.ndarray] = {}
    meta = {}
    with ProcessPoolExecutor() as pool:
        for name, (size, quality) in PACK_SIZES.items():
            items = list_judge_images(name, root, "train")
            classes = sorted({label for _, label in items})
            blobs = list(pool.map(_encode, [(str(p), size, quality) for p, _ in items], chunksize=64))
            offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
            arrays[f"{name}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            arrays[f"{name}_offsets"] = offsets
            arrays[f"{name}_labels"] = np.array([classes.index(label) for _, label in items], dtype=np.int64)
            meta[name] = {"classes": classes, "size": size, "quality": quality, "images": len(items)}
            print(f"{name}: {len(items)} images, {offsets[-1] / 2**20:.1f} MiB")
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def _decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def unpack(path: Path):
    import torch

    from rsgen.eval.class_judge_training import JudgeTrainingSet

    z = np.load(path)
    meta = json.loads(z["meta"].tobytes())
    sets = []
    with ProcessPoolExecutor() as pool:
        for name, m in meta.items():
            raw, off = z[f"{name}_bytes"].tobytes(), z[f"{name}_offsets"]
            blobs = [raw[off[i] : off[i + 1]] for i in range(len(off) - 1)]
            images = np.stack(list(pool.map(_decode, blobs, chunksize=64)))
            sets.append(
                JudgeTrainingSet(
                    name,
                    tuple(m["classes"]),
                    torch.from_numpy(images),
                    torch.from_numpy(z[f"{name}_labels"]),
                )
            )
    return sets


def train(pack_path: Path, out: Path, overrides: list[str]) -> None:
    from rsgen.config import load_config
    from rsgen.eval.class_judge_training import ClassJudgeTrainConfig, run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(ClassJudgeTrainConfig, "class_judges", [f"out={out}", *overrides], subdir="eval")
    summary = run(cfg, train_sets=unpack(pack_path), val_sets=[])
    print(json.dumps({k: v for k, v in summary.items() if k != "loss_curve"}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "pack":
        pack(Path(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "train":
        train(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)
