"""Training pairs for a land-cover ControlNet (``configs/default-landcover-controlnet.yaml``) from labelled tiles.

Two kinds of (image, class map) pairs, written as a manifest whose records carry ``conditions.landcover``:

* **single-class**: every labelled tile (EuroSAT / UC Merced / AID: a tile labelled "Forest" is all forest)
  with a constant map of its class (one small palette PNG per class, resized onto the tile by nearest
  neighbour when the condition is made);
* **mosaics**: tiles of different classes of one source cut into a random guillotine partition of one
  tile's extent (each part keeps the pixels of its tile at their own GSD), with the class map of the parts,
  so the ControlNet learns class borders and layouts, not only uniform maps.

Usage: ``python -m rsgen.data.landcover_pairs --manifest data/curated/manifest.jsonl --out data/landcover``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.conditions.landcover import LANDCOVER_CLASSES, label_class
from rsgen.errors import DataError
from rsgen.pipelines.windows import Window

log = logging.getLogger(__name__)

CONDITION = "landcover"
SOURCE_NAME = "landcover-mosaic"


def guillotine_partition(size: int, parts: int, rng: np.random.Generator, min_side: int) -> list[Window]:
    """A ``size x size`` square cut into ``parts`` rectangles by repeated straight cuts (each cut splits the
    largest rectangle that can still be cut, across its longer side, at a random point keeping both sides
    >= ``min_side``); fewer parts when no rectangle can be cut further."""
    rects = [Window(0, 0, size, size)]
    while len(rects) < parts:
        cuttable = [r for r in rects if max(r.height, r.width) >= 2 * min_side]
        if not cuttable:
            break
        r = max(cuttable, key=lambda w: w.height * w.width)
        rects.remove(r)
        if r.height >= r.width:
            cut = int(rng.integers(min_side, r.height - min_side + 1))
            rects += [
                Window(r.top, r.left, cut, r.width),
                Window(r.top + cut, r.left, r.height - cut, r.width),
            ]
        else:
            cut = int(rng.integers(min_side, r.width - min_side + 1))
            rects += [
                Window(r.top, r.left, r.height, cut),
                Window(r.top, r.left + cut, r.height, r.width - cut),
            ]
    return rects


def compose_mosaic(
    tiles: Sequence[np.ndarray], classes: Sequence[int], parts: Sequence[Window]
) -> tuple[np.ndarray, np.ndarray]:
    """Part k of the mosaic from tile k (each (S, S, 3) uint8, cut at the part's place) and its class map:
    -> image (S, S, 3) uint8, class ids (S, S) uint8."""
    size = tiles[0].shape[0]
    image = np.zeros((size, size, 3), np.uint8)
    ids = np.zeros((size, size), np.uint8)
    for tile, cls, part in zip(tiles, classes, parts, strict=True):
        if tile.shape[:2] != (size, size):
            raise DataError(f"mosaic: tile of shape {tile.shape[:2]} in a {size}x{size} mosaic")
        rows, cols = part.slices()
        image[rows, cols] = tile[rows, cols]
        ids[rows, cols] = cls
    return image, ids


def mosaic_caption(classes: Iterable[int]) -> str:
    """A caption naming the classes of a mosaic in order of first appearance."""
    names = list(dict.fromkeys(LANDCOVER_CLASSES[c] for c in classes))
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"a satellite image of {listed}"


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _shared_metadata(metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metadata fields every tile of a mosaic agrees on (e.g. the source's GSD)."""
    first = metas[0] if metas else {}
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in metas[1:])}


def write_landcover_pairs(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    mosaics_per_tile: float = 0.5,
    parts: tuple[int, int] = (2, 6),
    min_part: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write single-class and mosaic pairs for the labelled tiles of ``manifest``; returns the new manifest.

    Records whose label has a land-cover class (:func:`~rsgen.conditions.landcover.label_class`) and a plain
    image (no window into a larger raster) are used. Per split and source, ``mosaics_per_tile`` times as many
    mosaics as tiles are made from its tiles, each of ``parts`` (min, max) parts no thinner than ``min_part``
    of the tile, with at least two classes. Deterministic in ``seed``.
    """
    from tqdm import tqdm

    from rsgen.conditions.landcover import landcover_image
    from rsgen.data.manifest import iter_manifest, write_manifest
    from rsgen.io import write_png

    manifest, out = Path(manifest), Path(out_dir)
    root = manifest.parent
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    class_maps: dict[int, str] = {}
    for rec in iter_manifest(manifest):
        cls = label_class(rec.get("label"))
        if cls is None or rec.get("window"):
            continue
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else root / rec["path"]
        if cls not in class_maps:  # one constant map per class, resized onto each tile (nearest)
            class_maps[cls] = f"maps/class_{cls:02d}.png"
            write_png(out / class_maps[cls], landcover_image(np.full((8, 8), cls)))
        pair = dict(rec, path=os.path.relpath(path, out), conditions={CONDITION: class_maps[cls]})
        records.append(pair)
        groups[(rec["split"], rec.get("source", ""))][cls].append(pair)
    if not records:
        raise DataError(f"{manifest}: no record with a land-cover label (e.g. EuroSAT/UCM/AID classes)")
    n_tiles = len(records)
    lo, hi = parts
    for (split, source), by_class in groups.items():
        if len(by_class) < 2:
            log.info("landcover pairs: %s/%s has one class; no mosaics", split, source)
            continue
        n = int(round(mosaics_per_tile * sum(len(v) for v in by_class.values())))
        class_list = sorted(by_class)
        for i in tqdm(range(n), desc=f"mosaics {split}/{source}", disable=not progress):
            k = int(rng.integers(lo, hi + 1))
            first = by_class[class_list[int(rng.integers(len(class_list)))]]
            base = _read_rgb(out / first[int(rng.integers(len(first)))]["path"])
            size = min(base.shape[:2])
            rects = guillotine_partition(size, k, rng, max(1, int(size * min_part)))
            picks = list(rng.choice(class_list, size=2, replace=False))  # at least two classes
            picks += [class_list[int(j)] for j in rng.integers(len(class_list), size=len(rects) - 2)]
            rng.shuffle(picks)
            chosen = [by_class[c][int(rng.integers(len(by_class[c])))] for c in picks]
            tiles = [_fit(_read_rgb(out / r["path"]), size) for r in chosen]
            image, ids = compose_mosaic(tiles, [int(c) for c in picks], rects)
            sid = f"{split}-{_slug(source)}-{i:06d}"
            write_png(out / "mosaics" / f"{sid}.png", image)
            write_png(out / "maps" / f"{sid}.png", landcover_image(ids))
            records.append(
                {
                    "id": f"{SOURCE_NAME}/{seed}/{sid}",
                    "path": f"mosaics/{sid}.png",
                    "window": None,
                    "bands": None,
                    "captions": [mosaic_caption(int(c) for c in picks)],
                    "metadata": _shared_metadata([r.get("metadata") or {} for r in chosen]),
                    "split": split,
                    "source": SOURCE_NAME,
                    "label": None,
                    "false_color": False,
                    "gsd_factor": 1.0,
                    "conditions": {CONDITION: f"maps/{sid}.png"},
                    "tiles": [r["id"] for r in chosen],
                }
            )
    path = out / "manifest.jsonl"
    write_manifest(records, path)
    log.info("landcover pairs: %d single-class, %d mosaics -> %s", n_tiles, len(records) - n_tiles, path)
    return path


def _fit(tile: np.ndarray, size: int) -> np.ndarray:
    """A tile as (size, size, 3): centre-cropped when larger (keeps its GSD), resized when smaller."""
    h, w = tile.shape[:2]
    if h >= size and w >= size:
        top, left = (h - size) // 2, (w - size) // 2
        return tile[top : top + size, left : left + size]
    from rsgen.conditions.sources import resize

    return resize(tile, (size, size))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-") or "tiles"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="curated manifest with labelled tiles")
    ap.add_argument("--out", required=True, help="output folder (manifest.jsonl, maps/, mosaics/)")
    ap.add_argument("--mosaics-per-tile", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(
        write_landcover_pairs(args.manifest, args.out, mosaics_per_tile=args.mosaics_per_tile, seed=args.seed)
    )


if __name__ == "__main__":
    main()
