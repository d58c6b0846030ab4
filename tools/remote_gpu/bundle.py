"""Send a training run to a remote GPU machine that has neither the images nor the embedded MiniLM package.

A lent accelerator often takes only a small upload (tens of MB) and has no network. What a base or SR run
needs from this machine is the latent cache and the text encoder; :func:`pack` squeezes both and
:func:`unpack` restores, on the remote side, a standard latent cache folder and a transformers model folder
that ``rsgen train --set data.cache_only=true data.cache_dir=... text.encoder=...`` reads as usual.

* **Latents**: the posterior mean is stored as 8 bits per value with an affine map per sample and channel
  (rounding error at most half a step, i.e. (max - min) / 510 of that channel, far below the posterior noise the
  training adds); the posterior std as its mean per sample and channel. About 1 KB for a 4x16x16 latent
  instead of 4 KB. ``keep`` picks the samples to send (e.g. a subset of a large cache).
* **Text encoder**: the vocabulary is cut to the tokens that the cached captions and the sample prompts use
  (WordPiece's greedy longest match gives the same tokens for every such text: the kept pieces include every
  piece these texts use, and any longer piece was already absent) and the Linear weights are stored as int8
  per output row. Its hidden states match the original's to a cosine similarity :func:`pack` measures and
  records in ``bundle.json``; texts with words outside the kept vocabulary are read with [UNK] pieces.

* **Autoencoder** (optional, when the run's VAE is not in the repository): only its decoding half
  (``decoder``, ``post_quant_conv``) in float16, about 60 % of the weights; the remote side fills the encoder
  with a seeded random initialisation, never used there (the latents are cached), so that the folder loads as
  a standard ``AutoencoderKL`` for previews, export and generation. Pair the exported model with the real
  autoencoder here.
* **Images** (for runs that read pixels, e.g. an autoencoder): :func:`pack_images` copies a sample of a
  manifest's records, each decoded the way the training dataset decodes it (window read, bands picked, GSD
  factor applied) and saved losslessly as PNG (or, for a plain image file that needs none of that, its own
  bytes), with a manifest of relative paths; a byte budget is shared between the sources, so that a minority
  source can be oversampled. The remote machine then needs no rasterio and no dataset.

The remote run is a transport format only: export the trained model there and pair it here with the real
text encoder (the exported UNet never stores the text encoder).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rsgen.errors import DataError
from rsgen.io import atomic_path, atomic_write_json
from rsgen.seeding import seeded_cpu_rng
from rsgen.training.latent_cache import cache_is_complete

log = logging.getLogger(__name__)

BUNDLE_VERSION = 1


# ------------------------------------------------------------------------------------------------ latents
def quantize_mean(mean: torch.Tensor) -> dict[str, torch.Tensor]:
    """mean (N, C, h, w) -> uint8 codes (N, C, h, w) and the per sample and channel ``lo``/``step`` (N, C)."""
    x = mean.float()
    lo = x.amin(dim=(2, 3))  # (N, C)
    step = ((x.amax(dim=(2, 3)) - lo) / 255.0).clamp_min(1e-8)  # (N, C)
    codes = ((x - lo[..., None, None]) / step[..., None, None]).round().clamp(0, 255).to(torch.uint8)
    return {"codes": codes, "lo": lo, "step": step}


def dequantize_mean(codes: torch.Tensor, lo: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_mean`: (N, C, h, w) float32."""
    return lo[..., None, None].float() + codes.float() * step[..., None, None].float()


def _shards(cache_dir: Path) -> list[Path]:
    if not cache_is_complete(cache_dir):
        raise DataError(f"latent cache {cache_dir}: no complete cache (cache.json missing or incomplete)")
    return sorted(cache_dir.glob("shard-*.safetensors"))


def pack_latent_cache(cache_dir: str | Path, out_dir: str | Path, keep: np.ndarray | None = None) -> int:
    """Write the compact copy of an (unbucketed) latent cache to ``out_dir``; ``keep``: boolean mask over all
    samples in shard order (None = all). Returns the number of samples written."""
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    offset, written = 0, 0
    for i, path in enumerate(_shards(cache_dir)):
        tensors = load_file(str(path))
        if any("@" in k for k in tensors):
            raise DataError(f"{path}: bucketed latent caches are not supported by the remote bundle")
        rows = [r for r in path.with_suffix(".jsonl").read_text().splitlines() if r]
        n = len(rows)
        sel = np.ones(n, bool) if keep is None else np.asarray(keep[offset : offset + n], bool)
        offset += n
        if not sel.any():
            continue
        idx = torch.from_numpy(np.flatnonzero(sel))
        q = quantize_mean(tensors["mean"][idx])
        packed = {
            "mean_codes": q["codes"],
            "mean_lo": q["lo"].half(),
            "mean_step": q["step"].float(),
            "std_mean": tensors["std"][idx].float().mean(dim=(2, 3)).half(),  # (N, C)
            **{k: v[idx] for k, v in tensors.items() if k not in ("mean", "std")},
        }
        with atomic_path(out_dir / f"shard-{i:05d}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in packed.items()}, str(tmp))
        with atomic_path(out_dir / f"shard-{i:05d}.jsonl") as tmp:
            tmp.write_text("\n".join(rows[j] for j in np.flatnonzero(sel)) + "\n")
        written += int(sel.sum())
    return written


def unpack_latent_cache(packed_dir: str | Path, cache_dir: str | Path) -> int:
    """Restore a standard latent cache (float16 ``mean``/``std`` shards + ``cache.json``) from a packed copy."""
    packed_dir, cache_dir = Path(packed_dir), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in sorted(packed_dir.glob("shard-*.safetensors")):
        t = load_file(str(path))
        mean = dequantize_mean(t.pop("mean_codes"), t.pop("mean_lo"), t.pop("mean_step"))  # (N, C, h, w)
        std = t.pop("std_mean").float()[..., None, None].expand_as(mean)  # (N, C, h, w)
        with atomic_path(cache_dir / path.name) as tmp:
            save_file({"mean": mean.half(), "std": std.half().contiguous(), **t}, str(tmp))
        shutil.copyfile(path.with_suffix(".jsonl"), cache_dir / path.with_suffix(".jsonl").name)
        n += mean.shape[0]
    atomic_write_json(
        cache_dir / "cache.json",
        {"fingerprint": f"unpacked:{packed_dir.name}", "num_samples": n, "complete": True},
    )
    return n


def _cache_rows(cache_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The JSONL rows of a latent cache (captions, metadata, ...), in shard order."""
    for path in sorted(Path(cache_dir).glob("shard-*.jsonl")):
        for line in path.read_text().splitlines():
            if line:
                yield json.loads(line)


def cache_texts(cache_dir: str | Path) -> list[str]:
    """Every caption of a latent cache (its JSONL rows), deduplicated, in first-seen order."""
    seen: dict[str, None] = {}
    for row in _cache_rows(cache_dir):
        seen.update(dict.fromkeys(row["captions"]))
    return list(seen)


# ------------------------------------------------------------------------------------------- text encoder
def _token_ids(tokenizer: Any, texts: Sequence[str], max_length: int) -> set[int]:
    ids: set[int] = set(tokenizer.all_special_ids)
    for start in range(0, len(texts), 4096):
        batch = tokenizer(list(texts[start : start + 4096]), truncation=True, max_length=max_length)
        for row in batch["input_ids"]:
            ids.update(row)
    return ids


def pack_text_encoder(
    tokenizer: Any, model: torch.nn.Module, texts: Sequence[str], out_dir: str | Path, max_length: int = 32
) -> dict[str, Any]:
    """Write the cut-vocabulary, int8 copy of a BERT-style encoder (``tokenizer``, ``model``) to ``out_dir``.
    Returns facts for ``bundle.json``: vocabulary kept and original, number of texts (:func:`text_fidelity`
    measures the fidelity)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = sorted(_token_ids(tokenizer, texts, max_length))  # old ids, ascending: new id = rank
    vocab = tokenizer.convert_ids_to_tokens(keep)
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok_cfg = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": bool(getattr(tokenizer, "do_lower_case", True)),
        "model_max_length": 512,
        "unk_token": tokenizer.unk_token,
        "sep_token": tokenizer.sep_token,
        "pad_token": tokenizer.pad_token,
        "cls_token": tokenizer.cls_token,
        "mask_token": tokenizer.mask_token,
    }
    atomic_write_json(out_dir / "tokenizer_config.json", tok_cfg)
    config = model.config.to_dict()
    config["vocab_size"] = len(keep)
    atomic_write_json(out_dir / "config.json", config)

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    packed: dict[str, torch.Tensor] = {}
    for name, w in state.items():
        if name.endswith("word_embeddings.weight"):
            packed[name] = w[torch.tensor(keep)].half()
        elif w.ndim == 2 and "embeddings" not in name:  # Linear (out, in): int8 per output row
            scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)  # (out, 1)
            packed[name + ".int8"] = (w / scale).round().clamp(-127, 127).to(torch.int8)
            packed[name + ".scale"] = scale.float()
        else:
            packed[name] = w.half() if w.is_floating_point() else w
    with atomic_path(out_dir / "packed.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in packed.items()}, str(tmp))
    return {"vocab_kept": len(keep), "vocab_original": int(model.config.vocab_size), "texts": len(texts)}


def unpack_text_encoder(packed_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``model.safetensors`` (float32) beside the packed weights so that transformers loads the folder."""
    packed_dir = Path(packed_dir)
    out_dir = Path(out_dir) if out_dir is not None else packed_dir
    if out_dir != packed_dir:
        shutil.copytree(packed_dir, out_dir, dirs_exist_ok=True)
    packed = load_file(str(packed_dir / "packed.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for name, v in packed.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".int8"):
            base = name[: -len(".int8")]
            state[base] = v.float() * packed[base + ".scale"]
        else:
            state[name] = v.float() if v.is_floating_point() else v
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    return out_dir


def text_fidelity(
    reference: tuple[Any, torch.nn.Module], packed_dir: str | Path, texts: Sequence[str], max_length: int = 32
) -> dict[str, float]:
    """Cosine similarity of the token states (non-padding tokens) of the unpacked copy vs the original."""
    from rsgen.models.text import encode_prompts, load_text_encoder

    tok, model = load_text_encoder(unpack_text_encoder(packed_dir, Path(packed_dir)))
    texts = list(texts)
    ref = encode_prompts(*reference, texts, max_length)  # (B, T, D)
    got = encode_prompts(tok, model, texts, max_length)  # (B, T, D)
    mask = reference[0](
        texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )["attention_mask"].bool()
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=-1)[mask]  # (tokens,)
    (Path(packed_dir) / "model.safetensors").unlink()  # the bundle carries the packed weights only
    return {"token_cosine_mean": float(cos.mean()), "token_cosine_min": float(cos.min())}


# ------------------------------------------------------------------------------------------- autoencoder
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def pack_vae_decoder(vae_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the decoding half of the autoencoder at ``vae_path`` (its config, and ``decoder`` +
    ``post_quant_conv`` weights in float16) to ``out_dir``; returns its parameter count."""
    from rsgen.models.vae import load_vae

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae = load_vae(vae_path)
    state = {k: v.half().contiguous() for k, v in vae.state_dict().items() if k.startswith(DECODER_PREFIXES)}
    with atomic_path(out_dir / "decoder.safetensors") as tmp:
        save_file(state, str(tmp))
    vae.save_config(out_dir)
    return {"decoder_parameters": sum(v.numel() for v in state.values())}


def unpack_vae_decoder(packed_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """A loadable ``AutoencoderKL`` folder at ``out_dir`` from :func:`pack_vae_decoder`'s: the packed decoder
    (float32) and a seeded random encoder, which must not encode anything (transport only)."""
    from diffusers import AutoencoderKL

    packed_dir = Path(packed_dir)
    with seeded_cpu_rng(seed):  # a seeded encoder without moving the caller's random state
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(packed_dir))
    state = {k: v.float() for k, v in load_file(str(packed_dir / "decoder.safetensors")).items()}
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if unexpected or any(k.startswith(DECODER_PREFIXES) for k in missing):
        raise DataError(f"{packed_dir}: decoder weights do not match its config.json")
    vae.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


# ------------------------------------------------------------------------------------------------ bundle
def pack(
    cache_dir: str | Path,
    out_dir: str | Path,
    extra_texts: Sequence[str] = (),
    keep: np.ndarray | None = None,
    text_encoder: str | Path | None = None,
    fidelity_texts: int = 256,
    vae: str | Path | None = None,
) -> dict[str, Any]:
    """Pack a latent cache and the text encoder into ``out_dir`` (``latents/``, ``text-encoder/``,
    ``bundle.json``); ``extra_texts``: prompts the remote run also encodes (sample previews); ``vae``: also the
    decoding half of this autoencoder (``vae-decoder/``), for a run whose VAE the remote repository lacks."""
    from rsgen.models.text import load_text_encoder

    out_dir = Path(out_dir)
    n = pack_latent_cache(cache_dir, out_dir / "latents", keep)
    texts = cache_texts(out_dir / "latents") + [t for t in extra_texts if t]
    tokenizer, model = load_text_encoder(text_encoder)
    text_facts = pack_text_encoder(tokenizer, model, texts, out_dir / "text-encoder")
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), min(fidelity_texts, len(texts)), replace=False)]
    text_facts.update(text_fidelity((tokenizer, model), out_dir / "text-encoder", sample))
    vae_facts = pack_vae_decoder(vae, out_dir / "vae-decoder") if vae is not None else None
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    facts = {"version": BUNDLE_VERSION, "samples": n, "bytes": size, "text_encoder": text_facts}
    if vae_facts is not None:
        facts["vae"] = {"source": str(vae), **vae_facts}
    atomic_write_json(out_dir / "bundle.json", facts)
    return facts


def unpack(bundle_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Restore ``<out_dir>/latent-cache``, ``<out_dir>/text-encoder`` and (when packed) ``<out_dir>/vae`` from a
    bundle."""
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    facts = json.loads((bundle_dir / "bundle.json").read_text())
    n = unpack_latent_cache(bundle_dir / "latents", out_dir / "latent-cache")
    unpack_text_encoder(bundle_dir / "text-encoder", out_dir / "text-encoder")
    if (bundle_dir / "vae-decoder").is_dir():
        unpack_vae_decoder(bundle_dir / "vae-decoder", out_dir / "vae")
    return {**facts, "unpacked_samples": n}


def subsample_mask(
    cache_dir: str | Path, fractions: dict[tuple[str, float], float], seed: int = 0
) -> np.ndarray:
    """Boolean mask over a cache's samples (shard order) keeping ``fractions[(sensor, gsd_m)]`` of each such
    group, drawn at random with ``seed``, and every sample of the other groups."""
    rows = [row["metadata"] for row in _cache_rows(cache_dir)]
    rng = np.random.default_rng(seed)
    draws = rng.random(len(rows))
    keep = np.ones(len(rows), bool)
    for i, meta in enumerate(rows):
        key = (str(meta.get("sensor")), round(float(meta.get("gsd_m") or 0.0), 1))
        if key in fractions:
            keep[i] = draws[i] < fractions[key]
    return keep


# ------------------------------------------------------------------------------------------------- images
def _as_is(record: dict[str, Any], path: Path) -> bool:
    """Whether the training dataset would decode this record's file unchanged (so its bytes can travel)."""
    from rsgen.data.images import TIFF_SUFFIXES

    return (
        record.get("window") is None
        and not record.get("bands")
        and float(record.get("gsd_factor") or 1.0) == 1.0
        and path.suffix.lower() not in TIFF_SUFFIXES
    )


def pack_images(
    manifest: str | Path,
    out_dir: str | Path,
    max_bytes: int,
    shares: dict[str, float] | None = None,
    split: str = "train",
    seed: int = 0,
) -> dict[str, Any]:
    """Copy a random sample of ``manifest``'s ``split`` records into ``out_dir`` (``images/``,
    ``manifest.jsonl`` with paths relative to it, ``images.json``), at most ``max_bytes`` of image files in
    all; ``shares``: fraction of the budget per source (default: in proportion to the record counts). Each
    image is stored as the training dataset would decode it before resizing: window read, bands picked and GSD
    factor applied (the record then says ``gsd_factor`` 1 and its own ``size``; its metadata is unchanged,
    since a record's GSD is already that of the factored image). Unreadable records are skipped and counted."""
    from PIL import Image

    from rsgen.data.images import SampleError, load_image
    from rsgen.data.manifest import iter_manifest, resolve_path

    manifest, out_dir = Path(manifest), Path(out_dir)
    records = [r for r in iter_manifest(manifest) if r.get("split") == split]
    if not records:
        raise DataError(f"{manifest}: no records of split {split!r}")
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_source.setdefault(str(r.get("source", "")), []).append(r)
    if shares is None:
        shares = {s: len(rs) / len(records) for s, rs in by_source.items()}
    unknown = sorted(set(shares) - set(by_source))
    if unknown:
        raise DataError(f"{manifest}: no {split} records of source(s) {unknown} (have {sorted(by_source)})")
    total = sum(shares.values())
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    for source in sorted(shares):
        budget, used, skipped, packed = max_bytes * shares[source] / total, 0, 0, 0
        group = by_source[source]
        for i in rng.permutation(len(group)):
            rec = group[int(i)]
            src = resolve_path(rec, manifest.parent)
            name = f"images/{len(rows):06d}"
            try:
                loaded = load_image(
                    src, rec.get("window"), rec.get("bands"), float(rec.get("gsd_factor") or 1.0)
                )
                size = [int(loaded.array.shape[1]), int(loaded.array.shape[0])]
                if _as_is(rec, src):  # decodes (checked above) to the same pixels: its own, smaller bytes
                    data, name = src.read_bytes(), name + src.suffix.lower()
                else:
                    buf = io.BytesIO()
                    Image.fromarray(loaded.array).save(buf, format="PNG", optimize=True)
                    data, name = buf.getvalue(), name + ".png"
            except (SampleError, OSError) as e:
                log.warning("skipped %s: %s", rec.get("id"), e)
                skipped += 1
                continue
            if used + len(data) > budget:
                break
            (out_dir / name).write_bytes(data)
            used += len(data)
            packed += 1
            rows.append({**rec, "path": name, "window": None, "bands": None, "gsd_factor": 1.0, "size": size})
        counts[source] = {"images": packed, "bytes": used, "skipped": skipped}
    with atomic_path(out_dir / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    facts = {
        "version": BUNDLE_VERSION,
        "manifest": str(manifest),
        "split": split,
        "images": len(rows),
        "sources": counts,
    }
    atomic_write_json(out_dir / "images.json", facts)
    return facts


def _share(text: str) -> tuple[str, float]:
    """``SOURCE=F`` -> (source, F)."""
    try:
        source, frac = text.split("=")
        return source, float(frac)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--share {text!r}: expected SOURCE=FRACTION") from e


def _fraction(text: str) -> tuple[tuple[str, float], float]:
    """``SENSOR@GSD=F`` -> ((sensor, gsd), F)."""
    try:
        group, frac = text.split("=")
        sensor, gsd = group.split("@")
        return (sensor, round(float(gsd), 1)), float(frac)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--fraction {text!r}: expected SENSOR@GSD=FRACTION") from e


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.remote_gpu.bundle",
        description="Pack a latent cache + text encoder (+ decoder) or a sample of images for a remote GPU run, or unpack a bundle there.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack CACHE_DIR into OUT_DIR")
    p.add_argument("cache_dir", help="a complete latent cache (rsgen train ... data.cache_dir)")
    p.add_argument("out_dir", help="bundle folder to write")
    p.add_argument("--prompts", nargs="*", default=[], help="extra texts the remote run encodes")
    p.add_argument(
        "--text-encoder", default=None, help="local text encoder folder (default: embedded MiniLM)"
    )
    p.add_argument(
        "--fraction",
        type=_fraction,
        nargs="*",
        default=[],
        help="SENSOR@GSD=F: send only a random fraction F of that group (e.g. Sentinel-2@20=0.3), to fit a limit",
    )
    p.add_argument(
        "--vae",
        default=None,
        help="also send the decoding half of this autoencoder (a run whose VAE the remote repository lacks; "
        "unpacked to OUT_DIR/vae)",
    )
    u = sub.add_parser(
        "unpack", help="unpack BUNDLE_DIR into OUT_DIR/latent-cache, OUT_DIR/text-encoder (and OUT_DIR/vae)"
    )
    u.add_argument("bundle_dir")
    u.add_argument("out_dir")
    m = sub.add_parser(
        "pack-images", help="pack a sample of MANIFEST's images into OUT_DIR (runs that read pixels)"
    )
    m.add_argument("manifest", help="a curated manifest.jsonl")
    m.add_argument("out_dir", help="folder to write (images/, manifest.jsonl, images.json)")
    m.add_argument(
        "--max-mb", type=float, required=True, help="budget for the image files, in MB (10^6 bytes)"
    )
    m.add_argument(
        "--share",
        type=_share,
        nargs="*",
        default=[],
        help="SOURCE=F: that source's share of the budget (e.g. eurosat_train=0.6 naip=0.3 landsat=0.1); "
        "default: in proportion to the record counts",
    )
    m.add_argument("--split", default="train", help="records of this split (default: train)")
    m.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "pack-images":
        facts = pack_images(
            args.manifest,
            args.out_dir,
            int(args.max_mb * 1e6),
            dict(args.share) or None,
            args.split,
            args.seed,
        )
    elif args.command == "pack":
        keep = subsample_mask(args.cache_dir, dict(args.fraction)) if args.fraction else None
        facts = pack(
            args.cache_dir, args.out_dir, args.prompts, keep, text_encoder=args.text_encoder, vae=args.vae
        )
    else:
        facts = unpack(args.bundle_dir, args.out_dir)
    print(json.dumps(facts, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "cache_texts",
    "dequantize_mean",
    "pack",
    "pack_images",
    "pack_latent_cache",
    "pack_text_encoder",
    "pack_vae_decoder",
    "quantize_mean",
    "subsample_mask",
    "unpack",
    "unpack_latent_cache",
    "unpack_text_encoder",
    "unpack_vae_decoder",
]
