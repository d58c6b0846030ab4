"""Real reference images for evaluation: EuroSAT RGB (decoded once into a uint8 ``.npy`` cache) and image
folders (``<root>/<Class>/*.jpg|png|tif``), all returned as ``(N, H, W, 3)`` uint8 arrays with integer labels.

EuroSAT ``train`` trains the evaluation networks; EuroSAT ``val`` is the reference set for FID_RS / KID_RS and
the test set for the downstream augmentation test (never trained on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rsgen.errors import DataError
from rsgen.io import atomic_path
from rsgen.paths import REPO_ROOT, datasets_dir

log = logging.getLogger(__name__)

EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
EUROSAT_GSD_M = 10.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


@dataclass
class LabelledImages:
    """Images ``(N, H, W, 3)`` uint8, labels ``(N,)`` int64 indexing ``class_names``, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages(
            self.images[index], self.labels[index], self.class_names, self.source, self.skipped
        )


def cache_dir() -> Path:
    """Where decoded arrays are cached (gitignored ``data/cache``)."""
    return REPO_ROOT / "data" / "cache"


def eurosat_root() -> Path:
    return datasets_dir() / "eurosat-rgb"


def load_image_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """One image file as ``(H, W, 3)`` uint8 (GeoTIFFs via rasterio: first three bands), optionally resized."""

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        from rsgen.io import read_geotiff, to_hwc_uint8

        array = read_geotiff(path).array  # (C, H, W)
        if array.shape[0] == 1:
            array = np.repeat(array, 3, axis=0)
        array = array[:3]
        if array.dtype != np.uint8:
            lo, hi = np.percentile(array, (1, 99))
            array = np.clip((array - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        rgb = to_hwc_uint8(array)
    else:
        from rsgen.safety import read_image_rgb

        rgb = read_image_rgb(path)  # size checked from the header before decoding
    return resize_rgb(rgb, size) if size is not None else rgb


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)`` by the shared resampling rule (triangle filter when shrinking,
    bicubic when enlarging; unchanged when already that size)."""
    from rsgen.data.resampling import show_at

    return show_at(rgb, size, size)


def load_image_folder(
    root: str | Path,
    class_names: tuple[str, ...] | None = None,
    size: int = 64,
    max_per_class: int | None = None,
) -> LabelledImages:
    """Images in ``root/<Class>/`` (labelled) or directly in ``root`` (label -1), resized to ``size``.

    A file that cannot be decoded is skipped and counted, never fatal.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if class_names is None:
        class_names = tuple(p.name for p in subdirs)
    files: list[tuple[Path, int]] = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append((p, -1))
    for d in subdirs:
        label = class_names.index(d.name) if d.name in class_names else -1
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files.extend((p, label) for p in found[:max_per_class])
    if not files:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    images, labels, skipped = [], [], 0
    for path, label in tqdm(files, desc=f"decode {root.name}", leave=False, disable=len(files) < 500):
        try:
            images.append(load_image_rgb(path, size))
        except Exception as e:  # a corrupt sample is counted, not fatal
            log.warning("skipping %s: %s", path, e)
            skipped += 1
            continue
        labels.append(label)
    if not images:
        raise DataError(f"{root}: none of the {len(files)} images could be decoded")
    return LabelledImages(
        np.stack(images), np.asarray(labels, dtype=np.int64), class_names, str(root), skipped
    )


def load_eurosat(
    split: str = "train", root: str | Path | None = None, use_cache: bool = True
) -> LabelledImages:
    """EuroSAT RGB ``split`` (train 18,900 / val 4,050 images, 64x64) decoded once and cached as ``.npy``."""
    if split not in ("train", "val"):
        raise DataError(f"EuroSAT split {split!r}: expected 'train' or 'val'")
    root = Path(root) if root is not None else eurosat_root()
    if not (root / split).is_dir():
        raise DataError(
            f"EuroSAT {split} not found at {root / split} (set RSGEN_DATASETS or give --reference)"
        )
    img_cache = cache_dir() / f"eurosat_rgb_{split}_images.npy"
    lbl_cache = cache_dir() / f"eurosat_rgb_{split}_labels.npy"
    if use_cache and img_cache.is_file() and lbl_cache.is_file():
        return LabelledImages(np.load(img_cache), np.load(lbl_cache), EUROSAT_CLASSES, f"EuroSAT-RGB {split}")
    data = load_image_folder(root / split, EUROSAT_CLASSES, size=64)
    data.source = f"EuroSAT-RGB {split}"
    if use_cache:
        for path, array in ((img_cache, data.images), (lbl_cache, data.labels)):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
        log.info("cached EuroSAT %s (%d images) in %s", split, len(data), cache_dir())
    return data


def load_reference(reference: str | Path, size: int = 64, max_images: int | None = None) -> LabelledImages:
    """A reference set by name (``eurosat-val``, ``eurosat-train``; ``eurosat-val-a`` / ``eurosat-val-b`` are
    fixed disjoint halves of val, for control sets drawn from one half) or as an image folder."""
    name = str(reference).lower()
    if name in ("eurosat-val", "eurosat-train"):
        data = load_eurosat(name.split("-")[1])
    elif name in ("eurosat-val-a", "eurosat-val-b"):
        data = eurosat_val_half(name[-1])
    else:
        data = load_image_folder(reference, size=size)
    if max_images is not None and len(data) > max_images:
        rng = np.random.default_rng(0)
        data = data.subset(np.sort(rng.choice(len(data), max_images, replace=False)))
    return data


def per_class_subset(data: LabelledImages, n_per_class: int, seed: int) -> LabelledImages:
    """``n_per_class`` images of every class, drawn with ``seed`` (fewer where a class has fewer)."""
    rng = np.random.default_rng(seed)
    index = []
    for c in range(len(data.class_names)):
        members = np.flatnonzero(data.labels == c)
        index.append(rng.choice(members, min(n_per_class, len(members)), replace=False))
    return data.subset(np.sort(np.concatenate(index)))


def eurosat_val_half(half: str) -> LabelledImages:
    """Half ``a`` or ``b`` of EuroSAT val (a fixed random split), so a control set and its reference never share
    images."""
    val = load_eurosat("val")
    perm = np.random.default_rng(12345).permutation(len(val))
    mid = len(val) // 2
    data = val.subset(np.sort(perm[:mid] if half == "a" else perm[mid:]))
    data.source = f"EuroSAT-RGB val half {half}"
    return data
