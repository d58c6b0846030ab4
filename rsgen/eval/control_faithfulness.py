"""Control faithfulness: does a generated image obey the ControlNet condition it was made from?

The condition is read back off the generated image and compared with the input condition:

* **edge** conditions (canny, lineart; hed / pidi / mlsd with their weights): the *same* detector
  (:func:`rsgen.conditions.make_condition`, same defaults) is re-run on the generated image; scored by edge
  precision / recall / F1 with a pixel tolerance (distance transform) and SSIM between the two condition maps;
* **dense** image conditions (midas, normalbae): re-extracted likewise, SSIM only;
* **mask** conditions (footprints, roads, segmentation): a *segmenter* given by the user (a callable
  ``(H, W, 3) uint8 -> (H, W) class indexes``, or a ``module:function`` / ``file.py:function`` string) reads
  the mask off the image; scored by IoU (foreground IoU for footprints / roads, per-class and mean IoU for
  segmentation). Without a segmenter the score is reported as not measured, never guessed.

Every score comes with two references that make it interpretable:

* ``shuffled``: generated images scored against *another* sample's condition (what a generator that ignores
  the control gets, given the same image statistics);
* ``real``: the detector / segmenter run on the real image the condition was drawn from (the best achievable
  with this detector), when the record names that image.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsgen.errors import ConfigError, DataError, RsgenError

log = logging.getLogger(__name__)

#: Condition types scored as edge maps, with the grey level (0-255) above which a pixel is an edge.
EDGE_THRESHOLDS: dict[str, int] = {"canny": 128, "lineart": 32, "hed": 128, "pidi": 128, "mlsd": 128}
#: Image-detector conditions scored by SSIM only (continuous maps, no edges to match).
DENSE_KINDS = ("midas", "normalbae")
#: Mask conditions: read back by a user's segmenter and scored by IoU.
BINARY_MASK_KINDS = ("footprints", "roads")
MASK_KINDS = (*BINARY_MASK_KINDS, "segmentation")
DEFAULT_TOLERANCE_PX = 2.0

Segmenter = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 -> (H, W) int class indexes


def condition_family(kind: str) -> str | None:
    """``"edges"``, ``"dense"``, ``"mask"`` or None (no faithfulness score defined, e.g. shuffle, height)."""
    if kind in EDGE_THRESHOLDS:
        return "edges"
    if kind in DENSE_KINDS:
        return "dense"
    if kind in MASK_KINDS:
        return "mask"
    return None


# ------------------------------------------------------------------------------------------ map conversions
def _grey01(cond: np.ndarray) -> np.ndarray:
    """Condition image (H, W, 3) or (H, W) uint8 -> (H, W) float32 in [0, 1] (max over channels)."""
    cond = np.asarray(cond)
    grey = cond.max(axis=2) if cond.ndim == 3 else cond
    return grey.astype(np.float32) / 255.0


def edge_map(cond: np.ndarray, kind: str = "canny") -> np.ndarray:
    """Condition image (H, W[, 3]) uint8 -> (H, W) bool edge pixels (threshold per type, see EDGE_THRESHOLDS)."""
    cond = np.asarray(cond)
    grey = cond.max(axis=2) if cond.ndim == 3 else cond
    return grey >= EDGE_THRESHOLDS.get(kind, 128)


def _colour_code(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) int64 0xRRGGBB codes."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_classes(cond: np.ndarray, kind: str) -> np.ndarray:
    """Mask condition image -> (H, W) int64 class indexes: white-on-black footprints / roads -> 0/1;
    a segmentation map coloured with :data:`rsgen.conditions.SEGMENTATION_PALETTE` -> its class indexes."""
    cond = np.asarray(cond)
    if kind in BINARY_MASK_KINDS or cond.ndim == 2:
        grey = cond.max(axis=2) if cond.ndim == 3 else cond
        return (grey >= 128).astype(np.int64) if kind in BINARY_MASK_KINDS else grey.astype(np.int64)
    from rsgen.conditions import SEGMENTATION_PALETTE

    lut = {int(c): k for k, c in reversed(list(enumerate(_colour_code(SEGMENTATION_PALETTE))))}
    codes = _colour_code(cond)  # (H, W)
    uniq, inv = np.unique(codes, return_inverse=True)
    unknown = [u for u in uniq.tolist() if u not in lut]
    if unknown:
        raise DataError(
            f"segmentation condition: colour #{unknown[0]:06x} is not in the segmentation palette "
            "(expected a map made by rsgen.conditions)"
        )
    return np.asarray([lut[u] for u in uniq.tolist()], np.int64)[inv].reshape(codes.shape)


def _resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) -> (h, w[, C]) by nearest neighbour (keeps edges binary and class indexes valid)."""
    if arr.shape[:2] == tuple(size):
        return arr
    rows = (np.arange(size[0]) * arr.shape[0] / size[0]).astype(np.int64)
    cols = (np.arange(size[1]) * arr.shape[1] / size[1]).astype(np.int64)
    return arr[rows][:, cols]


# -------------------------------------------------------------------------------------------------- scores
@dataclass(frozen=True)
class EdgeScore:
    """Edge agreement of one pair of maps: precision (share of observed edge pixels within the tolerance of a
    target edge), recall (the converse) and their harmonic mean."""

    precision: float
    recall: float
    f1: float


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) Euclidean distance of each pixel to the nearest True pixel (inf when none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError:  # pragma: no cover - scipy ships with the project's dependencies
        return _distance_by_dilation(mask)
    return distance_transform_edt(~mask)


def _distance_by_dilation(mask: np.ndarray, max_px: float = 8.0) -> np.ndarray:
    """Euclidean distance up to ``max_px`` (inf beyond) by dilating with discs of every radius a pixel grid
    offers (torch conv2d): the fallback when scipy is missing."""
    r = int(max_px)
    x = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
    ii, jj = np.mgrid[-r : r + 1, -r : r + 1]
    radius = np.sqrt(ii**2 + jj**2)  # (2r+1, 2r+1)
    dist = np.full(mask.shape, np.inf)
    for d in sorted(set(radius[radius <= max_px].round(9).tolist()), reverse=True):
        disc = torch.from_numpy((radius <= d + 1e-9).astype(np.float32))[None, None]
        reached = torch.nn.functional.conv2d(x, disc, padding=r)[0, 0].numpy() > 0  # (H, W)
        dist[reached] = d
    return dist


def edge_f1(observed: np.ndarray, target: np.ndarray, tolerance: float = DEFAULT_TOLERANCE_PX) -> EdgeScore:
    """Edge precision / recall / F1 of ``observed`` (H, W) bool against ``target`` (H, W) bool, where an edge
    pixel counts as matched when the other map has an edge within ``tolerance`` px. Empty maps: precision of an
    empty observation is 1, recall of an empty target is 1 (two empty maps agree perfectly)."""
    if observed.shape != target.shape:
        raise DataError(f"edge maps differ in shape: {observed.shape} vs {target.shape}")
    n_obs, n_tgt = int(observed.sum()), int(target.sum())
    precision = float((_distance_to(target)[observed] <= tolerance).mean()) if n_obs else 1.0
    recall = float((_distance_to(observed)[target] <= tolerance).mean()) if n_tgt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EdgeScore(precision, recall, f1)


def condition_ssim(observed: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> np.ndarray:
    """SSIM (torchmetrics, data range 1) between pairs of condition maps (H, W[, 3]) uint8 -> (N,) float."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    out = np.zeros(len(observed))
    for i, (a, b) in enumerate(zip(observed, target, strict=True)):
        x = torch.from_numpy(_grey01(a))[None, None]  # (1, 1, H, W)
        y = torch.from_numpy(_grey01(b))[None, None]
        k = min(11, (min(x.shape[-2:]) - 1) // 2 * 2 + 1)  # odd Gaussian window no larger than the map
        out[i] = float(ssim(x, y, data_range=1.0, kernel_size=k))
    return out


def mask_iou(observed: np.ndarray, target: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """IoU per class of ``observed`` (H, W) int against ``target`` (H, W) int; NaN where the class is in
    neither map."""
    if observed.shape != target.shape:
        raise DataError(f"masks differ in shape: {observed.shape} vs {target.shape}")
    out = {}
    for c in classes:
        o, t = observed == c, target == c
        union = int((o | t).sum())
        out[int(c)] = float((o & t).sum() / union) if union else math.nan
    return out


# -------------------------------------------------------------------------------------------- segmenters
def load_segmenter(spec: str | Segmenter) -> Segmenter:
    """A segmenter from a callable or ``module:function`` / ``path/to/file.py:function`` (the function maps an
    (H, W, 3) uint8 image to (H, W) class indexes: 0/1 for footprints and roads, palette indexes for
    segmentation)."""
    if callable(spec):
        return spec
    target, sep, attr = str(spec).rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"segmenter {spec!r}: expected a callable, module:function or file.py:function")
    try:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise ConfigError(f"segmenter {spec!r}: file {target} does not exist")
            mod_spec = importlib.util.spec_from_file_location(f"rsgen_segmenter_{Path(target).stem}", target)
            assert mod_spec is not None and mod_spec.loader is not None
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"segmenter {spec!r}: cannot load it ({e})") from None
    if not callable(fn):
        raise ConfigError(f"segmenter {spec!r}: {attr} is not callable")
    return fn


def _segment(segmenter: Segmenter, rgb: np.ndarray, kind: str, size: tuple[int, int]) -> np.ndarray:
    """Run ``segmenter`` on (H, W, 3) uint8 and return (h, w) int64 classes on the condition's grid."""
    out = np.asarray(segmenter(rgb))
    if out.ndim == 3 and out.shape[2] == 3:  # a colour-coded map
        out = mask_classes(out.astype(np.uint8), kind)
    if out.ndim != 2:
        raise DataError(f"segmenter for {kind!r} returned shape {out.shape}, expected (H, W) class indexes")
    out = out.astype(np.int64)
    if kind in BINARY_MASK_KINDS:
        out = (out > 0).astype(np.int64)
    return _resize_nearest(out, size)


# ---------------------------------------------------------------------------------------- one condition type
@dataclass
class ControlFaithfulnessResult:
    """Scores of one condition type: means over images for the generated set and its two references."""

    kind: str
    family: str
    metrics: dict[str, float]  # generated images vs their own conditions
    shuffled: dict[str, float]  # generated images vs another sample's condition (no control)
    real: dict[str, float] | None  # detector / segmenter on the real source image (best achievable)
    num_generated: int
    num_real: int = 0
    tolerance_px: float | None = None
    per_class_iou: dict[str, dict[str, float]] = field(default_factory=dict)  # class -> {generated, ...}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def observe(
    kind: str, rgb: np.ndarray, size: tuple[int, int], segmenter: Segmenter | None = None
) -> np.ndarray:
    """Read condition ``kind`` back off an (H, W, 3) uint8 image on the (h, w) ``size`` grid: the detector's
    (h, w, 3) uint8 map for edge / dense types, the segmenter's (h, w) int64 classes for mask types."""
    family = condition_family(kind)
    if family == "mask":
        if segmenter is None:
            raise ConfigError(f"condition {kind!r}: reading a mask back needs a segmenter")
        return _segment(segmenter, rgb, kind, size)
    if family is None:
        raise ConfigError(f"condition {kind!r}: no faithfulness score is defined for this type")
    from rsgen.conditions import make_condition

    return make_condition(kind, rgb, size=size)


def pair_scores(
    kind: str, observed: Sequence[np.ndarray], targets: Sequence[np.ndarray], tolerance: float
) -> tuple[dict[str, float], dict[int, float]]:
    """Mean scores of ``observed`` maps (from :func:`observe`) against condition images ``targets``; returns
    (metrics, mean IoU per class for mask types). Targets are resized (nearest) to the observed grid."""
    family = condition_family(kind)
    targets = [_resize_nearest(np.asarray(t), o.shape[:2]) for o, t in zip(observed, targets, strict=True)]
    if family == "mask":
        tgt = [mask_classes(t, kind) for t in targets]
        if kind in BINARY_MASK_KINDS:
            classes = [1]
        else:
            classes = sorted(set().union(*(np.unique(t).tolist() for t in tgt)))
        per_image = [mask_iou(o, t, classes) for o, t in zip(observed, tgt, strict=True)]
        per_class = {c: float(np.nanmean([p[c] for p in per_image])) for c in classes}
        if kind in BINARY_MASK_KINDS:
            ious = [p[1] if not math.isnan(p[1]) else 1.0 for p in per_image]  # both empty: full agreement
            return {"IoU": float(np.mean(ious))}, {}
        miou = [np.nanmean([v for v in p.values()]) for p in per_image]
        return {"mIoU": float(np.nanmean(miou))}, per_class
    metrics: dict[str, float] = {"SSIM": float(condition_ssim(observed, targets).mean())}
    if family == "edges":
        scores = [
            edge_f1(edge_map(o, kind), edge_map(t, kind), tolerance)
            for o, t in zip(observed, targets, strict=True)
        ]
        metrics = {
            "F1": float(np.mean([s.f1 for s in scores])),
            "precision": float(np.mean([s.precision for s in scores])),
            "recall": float(np.mean([s.recall for s in scores])),
            **metrics,
        }
    return metrics, {}


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A permutation of ``range(n)`` with no fixed point (n >= 2): each sample gets another's condition."""
    if n < 2:
        raise DataError("a shuffled reference needs at least 2 samples")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


def control_faithfulness(
    kind: str,
    generated: Sequence[np.ndarray],
    conditions: Sequence[np.ndarray],
    real_images: Sequence[np.ndarray | None] | None = None,
    *,
    segmenter: Segmenter | str | None = None,
    tolerance: float = DEFAULT_TOLERANCE_PX,
    seed: int = 0,
) -> ControlFaithfulnessResult:
    """Score generated images ``(H, W, 3)`` uint8 against their input ``conditions`` (h, w, 3) uint8 of type
    ``kind``, with the shuffled reference and, where ``real_images[i]`` is given, the real reference."""
    if len(generated) != len(conditions):
        raise DataError(f"{len(generated)} generated images but {len(conditions)} conditions")
    if not generated:
        raise DataError(f"condition {kind!r}: no image to score")
    family = condition_family(kind)
    if family is None:
        raise ConfigError(f"condition {kind!r}: no faithfulness score is defined for this type")
    seg = load_segmenter(segmenter) if segmenter is not None else None
    observed = [observe(kind, g, c.shape[:2], seg) for g, c in zip(generated, conditions, strict=True)]
    metrics, per_class = pair_scores(kind, observed, conditions, tolerance)
    notes = []
    shuffled: dict[str, float] = {}
    shuffled_pc: dict[int, float] = {}
    if len(observed) >= 2:
        perm = derangement(len(observed), seed)
        shuffled, shuffled_pc = pair_scores(kind, observed, [conditions[j] for j in perm], tolerance)
    else:
        notes.append("shuffled reference needs at least 2 images")
    real: dict[str, float] | None = None
    real_pc: dict[int, float] = {}
    have_real = [i for i, r in enumerate(real_images or []) if r is not None]
    if have_real:
        real_obs = [observe(kind, real_images[i], conditions[i].shape[:2], seg) for i in have_real]  # type: ignore[index]
        real, real_pc = pair_scores(kind, real_obs, [conditions[i] for i in have_real], tolerance)
    else:
        notes.append("real reference: no record names the real image its condition came from")
    classes = sorted(set(per_class) | set(shuffled_pc) | set(real_pc))
    table = {
        str(c): {
            "generated": per_class.get(c, math.nan),
            "shuffled": shuffled_pc.get(c, math.nan),
            "real": real_pc.get(c, math.nan),
        }
        for c in classes
    }
    return ControlFaithfulnessResult(
        kind,
        family,
        metrics,
        shuffled,
        real,
        len(observed),
        len(have_real),
        tolerance if family == "edges" else None,
        table,
        notes,
    )


# ---------------------------------------------------------------------------------- generated sets (evaluate)
def _load_rgb(path: str | Path) -> np.ndarray:
    from rsgen.eval.reference_data import load_image_rgb

    return load_image_rgb(path)


def _real_source(sample: Any, kind: str, size: tuple[int, int]) -> np.ndarray | None:
    """The real image condition ``kind`` of ``sample`` came from, on the condition's grid, or None.

    For image-detector types the condition's own source (``condition_sources``); for mask types the record's
    ``real_image`` (``rsgen generate --like`` records it)."""
    from rsgen.conditions.sources import load_rgb, resize, split_band

    source = sample.condition_sources.get(kind) if condition_family(kind) != "mask" else None
    if source is None and sample.real_image is not None:
        source = str(sample.real_image)
    if source is None:
        return None
    path, band = split_band(source)
    if not Path(path).is_file():
        log.warning("real source %s of a %s condition is missing; no real reference for it", path, kind)
        return None
    return resize(load_rgb(path, band, None), size)  # (h, w, 3) uint8


def control_section(
    gen: Any,
    segmenters: Mapping[str, Segmenter | str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE_PX,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The "Control faithfulness" section of a generated set (:class:`rsgen.eval.generated_set.GeneratedSet`)
    whose records carry ``conditions: {type: path}``: one result dict per condition type, and the list of
    what could not be measured (with the reason). Images are scored at their native size."""
    segmenters = dict(segmenters or {})
    by_kind: dict[str, list[tuple[Any, Path]]] = {}
    for s in gen.samples:
        for key, path in s.conditions.items():
            by_kind.setdefault(key.split("#")[0], []).append((s, path))
    results: list[dict[str, Any]] = []
    missing: list[str] = []
    if not by_kind:
        return results, ['control faithfulness: no record names its conditions ("conditions": {type: path})']
    for kind, items in sorted(by_kind.items()):
        family = condition_family(kind)
        if family is None:
            missing.append(f"control faithfulness for {kind!r}: no score is defined for this condition type")
            continue
        if family == "mask" and kind not in segmenters:
            missing.append(
                f"control faithfulness for {kind!r} (IoU): no segmenter given (segmenters={{{kind}: "
                "module:function}}); not measured"
            )
            continue
        generated, conditions, reals, skipped = [], [], [], 0
        for s, path in items:
            try:
                cond = _load_rgb(path)  # (h, w, 3) uint8
                generated.append(_load_rgb(s.path))  # native size
            except Exception as e:  # an unreadable file is counted, not fatal
                log.warning("control faithfulness: skipping %s (%s)", path, e)
                skipped += 1
                continue
            conditions.append(cond)
            try:
                reals.append(_real_source(s, kind, cond.shape[:2]))
            except RsgenError as e:
                log.warning("no real reference for %s: %s", path, e)
                reals.append(None)
        if not generated:
            missing.append(f"control faithfulness for {kind!r}: no readable condition ({skipped} skipped)")
            continue
        result = control_faithfulness(
            kind, generated, conditions, reals, segmenter=segmenters.get(kind), tolerance=tolerance, seed=seed
        )
        if skipped:
            result.notes.append(f"{skipped} unreadable conditions skipped")
        results.append(result.to_dict())
    return results, missing


def control_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """The report's "Control faithfulness" section as markdown."""
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    lines = [
        "## Control faithfulness",
        "",
        "The condition is read back off each generated image (edges: the same detector; masks: the given "
        "segmenter) and compared with the input condition; higher is better. *Shuffled*: generated images "
        "against another sample's condition (no control). *Real*: the detector / segmenter on the real image "
        "the condition came from (best achievable).",
        "",
        "| condition | score | generated | shuffled (no control) | real (best achievable) | n (real) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        tol = f" (tolerance {r['tolerance_px']:g} px)" if r.get("tolerance_px") is not None else ""
        for name, value in r["metrics"].items():
            real = (r.get("real") or {}).get(name)
            lines.append(
                f"| {r['kind']} | {name}{tol if name == 'F1' else ''} | {fmt(value)} | "
                f"{fmt(r['shuffled'].get(name))} | {fmt(real)} | {r['num_generated']} ({r['num_real']}) |"
            )
    for r in results:
        if r.get("per_class_iou"):
            lines += ["", f"IoU per class ({r['kind']}):", "", "| class | generated | shuffled | real |"]
            lines.append("|---|---|---|---|")
            lines += [
                f"| {c} | {fmt(v['generated'])} | {fmt(v['shuffled'])} | {fmt(v['real'])} |"
                for c, v in r["per_class_iou"].items()
            ]
        for note in r.get("notes", []):
            lines.append(f"- {r['kind']}: {note}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- reference benchmark (real)
def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 through JPEG at ``quality`` (a degraded-generator stand-in)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) uint8 Gaussian-blurred with ``sigma`` px (a degraded-generator stand-in)."""
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(float(sigma))))


def reference_benchmark(
    images: np.ndarray,
    kind: str = "canny",
    degradations: Sequence[tuple[str, float]] = (("jpeg", 75), ("jpeg", 30), ("blur", 0.8), ("blur", 1.5)),
    tolerance: float = DEFAULT_TOLERANCE_PX,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Scores on real images ``(N, H, W, 3)`` uint8 with known answers: each image against its own condition
    (~1), against another image's condition (shuffled, no control), and degraded copies (JPEG / blur) against
    the original's condition (a generator that keeps the layout but loses detail). One row per case."""
    if condition_family(kind) not in ("edges", "dense"):
        raise ConfigError(f"reference benchmark: {kind!r} is not an image-detector condition")
    size = images.shape[1:3]
    conds = [observe(kind, im, size) for im in images]
    own, _ = pair_scores(kind, [observe(kind, im, size) for im in images], conds, tolerance)
    rows = [{"case": "real vs own condition", **own}]
    perm = derangement(len(images), seed)
    shuf, _ = pair_scores(kind, conds, [conds[j] for j in perm], tolerance)
    rows.append({"case": "real vs another image's condition (shuffled)", **shuf})
    ops = {"jpeg": jpeg, "blur": blur}
    for name, value in degradations:
        if name not in ops:
            raise ConfigError(f"degradation {name!r}: expected one of {sorted(ops)}")
        obs = [observe(kind, ops[name](im, value), size) for im in images]
        scores, _ = pair_scores(kind, obs, conds, tolerance)
        rows.append({"case": f"{name} {value:g} vs original's condition", **scores})
    for r in rows:
        r["n"] = len(images)
    return rows


def raster_windows(paths: Sequence[str | Path], n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random ``size`` x ``size`` RGB windows (bands 1-3, uint8) from GeoTIFFs -> (n, size, size, 3)."""
    import rasterio
    from rasterio.windows import Window

    from rsgen.conditions.sources import to_uint8

    def bands(path: str | Path) -> int:
        with rasterio.open(path) as src:
            return src.count

    paths = [p for p in paths if bands(p) >= 3]  # skip panchromatic / single-band rasters
    if not paths:
        raise DataError("raster windows: no GeoTIFF with at least 3 bands given")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        path = paths[i % len(paths)]
        with rasterio.open(path) as src:
            if src.width < size or src.height < size:
                raise DataError(f"{path}: {src.width}x{src.height} px is smaller than a {size} px window")
            col, row = int(rng.integers(0, src.width - size + 1)), int(rng.integers(0, src.height - size + 1))
            data = src.read([1, 2, 3], window=Window(col, row, size, size))  # (3, size, size)
        out[i] = to_uint8(data.astype(np.float64))  # (size, size, 3)
    return out
