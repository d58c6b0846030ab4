"""Procedural benchmark (SYNTHETIC): does a model trained on procedural scenes obey each metadata field and the
layout control?

The scenes of :mod:`rsgen.data.procedural` follow stated rules of the metadata (cloud cover, snow by month and
hemisphere, leaf colour, noon-sun shadows, object scale by GSD) and come with exact layout masks. This module
takes N held-out scenes of a procedural set as *requests* (their metadata, their segmentation map), generates
images for them with a base model (text + metadata) and with a layout ControlNet model, reads the rules back with
:mod:`rsgen.eval.procedural_checks` and the layout with :mod:`rsgen.eval.procedural_segmenter`, and scores:

* **requested**: generated images against the metadata / masks they were asked for;
* **shuffled**: the same images against another scene's metadata / masks (what no control at all scores);
* **real**: the real procedural scenes of the requests, read back the same way (the best achievable), and the
  same through the model's VAE (the ceiling its decoder allows).

Every number is a test of the conditioning machinery on synthetic rules, not of realism; every report says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rsgen.data.procedural import SceneParams
from rsgen.errors import ConfigError, DataError
from rsgen.eval.procedural_checks import cloud_mask, score_rules, shuffled_metadata
from rsgen.eval.procedural_segmenter import (
    LAYOUT_CLASSES,
    LayoutSegmenter,
    SegmenterConfig,
    predict_layout,
    read_mask,
    read_rgb,
    segmenter_for,
)
from rsgen.metadata import Metadata
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

SYNTHETIC_LABEL = "SYNTHETIC benchmark (procedural scenes, rsgen.data.procedural): not real imagery"
LAYOUT_SCORED = ("roads", "buildings", "water")
# (summary key in score_rules' output, label, higher is better)
RULE_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("cloud_fraction_mae", "cloud cover: MAE of cloud fraction", False),
    ("snow_cover_mae", "snow (month x hemisphere x latitude): MAE of snow cover of open land", False),
    ("greenness_mae", "leaf colour: MAE of greenness index", False),
    ("autumn_mae", "leaf colour: MAE of autumn index", False),
    ("shadow_direction_accuracy", "sun: shadow direction accuracy (shadows >= 2 px)", True),
    ("shadow_length_rel_mae", "sun: relative error of shadow length", False),
    ("object_scale_log2_mae", "GSD: building scale error (octaves, abs log2)", False),
    ("road_scale_log2_mae", "GSD: road width error (octaves, abs log2)", False),
)
# Rules correlated per image: (name in expected_rules / measure_rules, log scale)
CORRELATED = (
    ("cloud_fraction", "cloud_fraction", False),
    ("snow_cover", "snow_cover", False),
    ("greenness", "greenness", False),
    ("autumn", "autumn", False),
    ("shadow_length_px", "shadow_length_px", False),
    ("building_size_px", "object_scale_px", True),
)
# Mean road width of the generator (uniform 6-10 m, rsgen.data.procedural.draw_layout): a second GSD ruler, found
# in most scenes (buildings are rare outside residential ones).
ROAD_WIDTH_M = 8.0
SEASONS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}


@dataclass
class ProceduralBenchmarkConfig:
    """``configs/eval/procedural_benchmark.yaml``. ``base_model`` / ``control_model``: rsgen model folders (the
    second with a segmentation ControlNet; either may be null). ``prompt``: "empty" (the metadata alone must
    carry the rules) or "caption" (the request scene's first caption, which names season, clouds and GSD)."""

    manifest: str = "data/procedural/manifest.jsonl"
    split: str = "val"
    n: int = 200
    base_model: str | None = None
    control_model: str | None = None
    out_dir: str = "runs/procedural-benchmark"
    prompt: Literal["empty", "caption"] = "empty"
    num_inference_steps: int = 20
    guidance_text: float = 1.0
    guidance_meta: float = 1.0
    control_weight: float = 1.0
    scheduler: str | None = None  # None = the pipeline's default
    batch_size: int = 50
    seed: int = 0
    grid_scenes: int = 8
    segmenter_path: str | None = None  # None = <out_dir>/layout-segmenter.safetensors
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ConfigError(f"procedural benchmark: n={self.n}: expected at least 2 scenes (for shuffling)")
        if self.prompt not in ("empty", "caption"):
            raise ConfigError(f"procedural benchmark: prompt={self.prompt!r}: expected 'empty' or 'caption'")


# ---------------------------------------------------------------------------------------------- requests
@dataclass
class Requests:
    """N held-out procedural scenes used as requests: their metadata, captions, real images (N, H, W, 3) uint8
    and exact layout masks; ``segmentation`` (N, H, W, 3) uint8 is the ControlNet condition of each."""

    ids: list[str]
    metadata: list[Metadata]
    captions: list[str]
    images: np.ndarray
    masks: list[dict[str, np.ndarray]]
    segmentation: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def load_requests(manifest: str | Path, split: str, n: int) -> Requests:
    """The first ``n`` scenes of a procedural manifest's split that have masks and a segmentation condition."""
    from rsgen.data.manifest import read_manifest, record_metadata
    from rsgen.data.procedural import SOURCE_NAME

    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"procedural benchmark: manifest {manifest} does not exist (write a procedural set)")
    root = manifest.parent
    ids, metas, caps, imgs, masks, segs = [], [], [], [], [], []
    for rec in read_manifest(manifest, split):
        if len(ids) >= n:
            break
        m, cond = rec.get("masks") or {}, rec.get("conditions") or {}
        if (
            rec.get("source") != SOURCE_NAME
            or "segmentation" not in cond
            or not all(k in m for k in LAYOUT_CLASSES)
        ):
            continue
        ids.append(rec["id"])
        metas.append(record_metadata(rec))
        caps.append((rec.get("captions") or [""])[0])
        imgs.append(read_rgb(root / rec["path"]))
        masks.append({k: read_mask(root / m[k]) for k in LAYOUT_CLASSES})
        segs.append(read_rgb(root / cond["segmentation"]))
    if len(ids) < 2:
        raise DataError(
            f"procedural benchmark: {manifest} split {split!r} has {len(ids)} usable scenes, need >= 2"
        )
    if len(ids) < n:
        log.warning("procedural benchmark: only %d scenes in split %r (asked for %d)", len(ids), split, n)
    return Requests(ids, metas, caps, np.stack(imgs), masks, np.stack(segs))


# -------------------------------------------------------------------------------------------- generation
def generate(
    pipe: Any,
    requests: Requests,
    cfg: ProceduralBenchmarkConfig,
    control: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for the requests' metadata (and segmentation maps when ``control``); image i
    uses seed ``cfg.seed + i`` whatever the batch size."""
    from tqdm.auto import tqdm

    from rsgen.pipelines.pipeline import ControlInput

    n, h, w = len(requests), requests.images.shape[1], requests.images.shape[2]
    out = []
    options: dict[str, Any] = {}
    if cfg.scheduler is not None:
        options["scheduler"] = cfg.scheduler
    for i in tqdm(
        range(0, n, cfg.batch_size),
        desc="generate " + ("control" if control else "base"),
        disable=not progress,
    ):
        j = min(n, i + cfg.batch_size)
        prompts = requests.captions[i:j] if cfg.prompt == "caption" else [""] * (j - i)
        controls = []
        if control:
            seg = (
                torch.from_numpy(requests.segmentation[i:j]).permute(0, 3, 1, 2).float() / 255.0
            )  # (b, 3, H, W)
            controls = [ControlInput(seg, cfg.control_weight, kind="segmentation")]
        result = pipe(
            prompts,
            requests.metadata[i:j],
            height=h,
            width=w,
            num_inference_steps=cfg.num_inference_steps,
            guidance_text=cfg.guidance_text,
            guidance_meta=cfg.guidance_meta,
            seed=list(range(cfg.seed + i, cfg.seed + j)),
            controls=controls,
            output_type="np",
            progress=False,
            **options,
        )
        out.append(
            np.clip(np.round(np.asarray(result.images) * 255), 0, 255).astype(np.uint8)
        )  # (b, H, W, 3)
    return np.concatenate(out)


@torch.no_grad()
def vae_round_trip(vae: Any, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Images (N, H, W, 3) uint8 encoded (posterior mode) and decoded by ``vae``: what its decoder can show."""
    out = []
    for i in range(0, len(images), batch_size):
        x = (
            torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        )  # (b, 3, H, W)
        x = x.to(vae.device, vae.dtype)
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)  # (b, 3, H, W)
        out.append(((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------- scoring
def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _pairs(rows: list[dict[str, Any]], want_key: str, got_key: str, log_scale: bool) -> tuple[list, list]:
    want, got = [], []
    for r in rows:
        w, g = r["expected"].get(want_key), r["measured"].get(got_key)
        if w is None or g is None or not (math.isfinite(w) and math.isfinite(g)):
            continue
        if log_scale:
            if w <= 0 or g <= 0:
                continue
            w, g = math.log2(w), math.log2(g)
        want.append(w)
        got.append(g)
    return want, got


def rule_correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per rule: Pearson correlation of measured with expected values over images (log2 for object scale),
    and the number of images. A model that outputs the mean scores a low MAE but a correlation of ~0."""
    out = {}
    for want_key, got_key, log_scale in CORRELATED:
        want, got = _pairs(rows, want_key, got_key, log_scale)
        out[want_key] = {"r": _pearson(want, got), "n": len(want)}
    return out


def snow_by_season(metadatas: Sequence[Metadata], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean expected and measured snow cover by hemisphere and meteorological season of the asked date."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for meta, row in zip(metadatas, rows, strict=True):
        if meta.lat is None or meta.date is None or meta.date.month is None:
            continue
        hemi = "N" if meta.lat >= 0 else "S"
        season = next(s for s, months in SEASONS.items() if meta.date.month in months)
        w, g = row["expected"]["snow_cover"], row["measured"]["snow_cover"]
        if w is not None and g is not None and math.isfinite(w) and math.isfinite(g):
            groups.setdefault((hemi, season), []).append((w, g))
    return [
        {
            "hemisphere": hemi,
            "season": season,
            "n": len(groups.get((hemi, season), [])),
            "expected": float(np.mean([w for w, _ in groups[(hemi, season)]]))
            if (hemi, season) in groups
            else None,
            "measured": float(np.mean([g for _, g in groups[(hemi, season)]]))
            if (hemi, season) in groups
            else None,
        }
        for hemi in ("N", "S")
        for season in SEASONS
    ]


def measure_road_width(roads: np.ndarray) -> float:
    """Road width in pixels from a road mask (H, W): twice the median distance to the road edge on its centre
    ridge (local maxima of the distance transform, away from the image border) minus one pixel; the mask is
    opened first (speckle of a segmenter). NaN with fewer than 10 road pixels or 3 ridge pixels."""
    from scipy import ndimage

    roads = ndimage.binary_opening(np.asarray(roads, bool))
    if roads.sum() < 10:
        return float("nan")
    dist = ndimage.distance_transform_edt(np.pad(roads, 1, mode="edge"))[1:-1, 1:-1]  # (H, W)
    ridge = roads & (dist >= ndimage.maximum_filter(dist, size=3))
    ridge[:2], ridge[-2:], ridge[:, :2], ridge[:, -2:] = False, False, False, False
    if ridge.sum() < 3:
        return float("nan")
    return float(2 * np.median(dist[ridge]) - 0.5)


def _road_scale_rows(
    metadatas: Sequence[Metadata], masks: Sequence[Mapping[str, np.ndarray] | None] | None
) -> list[tuple[float, float]]:
    """(log2 measured road width px, log2 of ROAD_WIDTH_M / asked GSD) per image where both are known."""
    out = []
    for meta, m in zip(metadatas, masks or [None] * len(metadatas), strict=True):
        if m is None or "roads" not in m or meta.gsd_m is None:
            continue
        width = measure_road_width(m["roads"])
        if math.isfinite(width) and width > 0:
            out.append((math.log2(width), math.log2(ROAD_WIDTH_M / meta.gsd_m)))
    return out


def score_metadata_rules(
    images: Sequence[Any] | np.ndarray,
    metadatas: Sequence[Metadata],
    masks: Sequence[Mapping[str, np.ndarray] | None] | None,
    params: SceneParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The rules read back from ``images`` (with layout ``masks`` read from the same images) scored against the
    asked metadata and against shuffled metadata: MAEs / accuracy (:func:`score_rules`), the GSD read from road
    widths, per-image correlations and the snow table by hemisphere and season."""
    shuffled = shuffled_metadata(list(metadatas), seed)
    out: dict[str, Any] = {"synthetic": True}
    for name, metas in (("requested", list(metadatas)), ("shuffled", shuffled)):
        res = score_rules(images, metas, masks, params, per_image=True)
        rows = res.pop("per_image")
        res["correlation"] = rule_correlations(rows)
        road = _road_scale_rows(metas, masks)
        res["road_scale_log2_mae"] = float(np.mean([abs(g - w) for g, w in road])) if road else float("nan")
        res["n_road_scale_log2"] = len(road)
        res["correlation"]["road_width_px"] = {
            "r": _pearson([w for _, w in road], [g for g, _ in road]),
            "n": len(road),
        }
        res["snow_by_season"] = snow_by_season(metas, rows)
        out[name] = res
    return out


def layout_iou(
    found: Sequence[Mapping[str, np.ndarray]],
    asked: Sequence[Mapping[str, np.ndarray]],
    valid: Sequence[np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Per class of :data:`LAYOUT_SCORED`: pooled IoU (intersections over unions summed over images, counting
    only ``valid`` pixels, e.g. not under cloud) and the mean per-image IoU over images where the class was
    asked for or found."""
    out = {}
    for name in LAYOUT_SCORED:
        inter = union = 0
        per_image = []
        for i, (f, a) in enumerate(zip(found, asked, strict=True)):
            v = np.ones_like(a[name], bool) if valid is None else np.asarray(valid[i], bool)
            fi, ai = np.asarray(f[name], bool) & v, np.asarray(a[name], bool) & v
            it, un = int((fi & ai).sum()), int((fi | ai).sum())
            inter, union = inter + it, union + un
            if un:
                per_image.append(it / un)
        out[name] = {
            "iou": inter / union if union else float("nan"),
            "mean_image_iou": float(np.mean(per_image)) if per_image else float("nan"),
            "n_images": len(per_image),
        }
    out["mean"] = {"iou": float(np.nanmean([out[k]["iou"] for k in LAYOUT_SCORED]))}
    return out


def score_layout(
    found: Sequence[Mapping[str, np.ndarray]],
    asked: Sequence[Mapping[str, np.ndarray]],
    images: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """Layout IoU of the masks found in ``images`` with the asked masks and with a shuffled scene's asked masks
    (pixels under opaque cloud in the image are left out of both)."""
    valid = [~cloud_mask(im) for im in images]
    perm: list[int] = shuffled_metadata(list(range(len(asked))), seed)  # type: ignore[arg-type]
    return {
        "synthetic": True,
        "requested": layout_iou(found, asked, valid),
        "shuffled": layout_iou(found, [asked[p] for p in perm], valid),
        "cloud_pixels_excluded": float(1 - np.mean([v.mean() for v in valid])),
    }


def score_image_set(
    images: np.ndarray,
    requests: Requests,
    segmenter: LayoutSegmenter | None,
    params: SceneParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Rules and layout of one image set against the requests. ``segmenter`` None: use the requests' exact masks
    as the layout found (an oracle; only meaningful for the real scenes themselves)."""
    found = predict_layout(segmenter, images) if segmenter is not None else list(requests.masks)
    return {
        "rules": score_metadata_rules(images, requests.metadata, found, params, seed),
        "layout": score_layout(found, requests.masks, images, seed),
    }


# ---------------------------------------------------------------------------------------------- the run
def run_benchmark(
    cfg: ProceduralBenchmarkConfig,
    pipelines: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, score and write ``report.json``, ``report.md`` and ``grid.png`` in ``cfg.out_dir``; returns the
    report. ``pipelines``: already loaded {"base": ..., "control": ...} instead of the config's model folders."""
    from rsgen.io import atomic_write_json, atomic_write_text

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipes = dict(pipelines or {})
    for name, path in (("base", cfg.base_model), ("control", cfg.control_model)):
        if name not in pipes and path:
            pipes[name] = _load_pipeline(path)
    if "control" in pipes and getattr(pipes["control"], "controlnet", None) is None:
        raise ConfigError(f"procedural benchmark: control_model {cfg.control_model} has no controlnet/")
    requests = load_requests(cfg.manifest, cfg.split, cfg.n)
    segmenter = segmenter_for(
        cfg.manifest,
        cfg.segmenter_path or out / "layout-segmenter.safetensors",
        cfg.segmenter,
        split="train",
        progress=progress,
    )
    sets: dict[str, np.ndarray] = {"real": requests.images}
    if pipes:
        first = pipes.get("base", pipes.get("control"))
        sets["real_vae"] = vae_round_trip(first.vae, requests.images)
    for name, pipe in pipes.items():
        sets[name] = generate(pipe, requests, cfg, control=name == "control", progress=progress)
    report: dict[str, Any] = {
        "label": SYNTHETIC_LABEL,
        "synthetic": True,
        "n_scenes": len(requests),
        "image_size": int(requests.images.shape[1]),
        "manifest": str(cfg.manifest),
        "split": cfg.split,
        "config": _jsonable(asdict(cfg)),
        "sets": {},
    }
    for name, images in sets.items():
        log.info("scoring %s (%d images)", name, len(images))
        report["sets"][name] = score_image_set(images, requests, segmenter, seed=cfg.seed)
    report["real_exact_masks"] = score_image_set(requests.images, requests, None, seed=cfg.seed)
    report["summary"] = summary_table(report)
    atomic_write_json(out / "report.json", _jsonable(report))
    atomic_write_text(out / "report.md", render_markdown(report))
    write_grid(out / "grid.png", requests, sets, cfg.grid_scenes)
    return report


def _load_pipeline(path: str | Path) -> Any:
    from rsgen.pipelines import RSGenPipeline

    pipe = RSGenPipeline.from_pretrained(str(path), use_safetensors=use_safetensors())
    pipe.set_progress_bar_config(disable=True)
    return pipe


SET_LABELS = {
    "base": "base model (text + metadata)",
    "control": "layout ControlNet model",
    "real": "real procedural scenes",
    "real_vae": "real scenes through the model's VAE",
}


def summary_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: for each set, the value against the requested and against shuffled conditions."""
    rows = []
    for key, label, higher in RULE_METRICS:
        row: dict[str, Any] = {"metric": key, "label": label, "higher_is_better": higher}
        for name, res in report["sets"].items():
            row[name] = {
                "requested": res["rules"]["requested"].get(key),
                "shuffled": res["rules"]["shuffled"].get(key),
            }
        rows.append(row)
    for want_key in [*(c[0] for c in CORRELATED), "road_width_px"]:
        row = {
            "metric": f"r_{want_key}",
            "label": f"correlation measured vs asked: {want_key}",
            "higher_is_better": True,
        }
        for name, res in report["sets"].items():
            row[name] = {
                "requested": res["rules"]["requested"]["correlation"][want_key]["r"],
                "shuffled": res["rules"]["shuffled"]["correlation"][want_key]["r"],
            }
        rows.append(row)
    for cls in (*LAYOUT_SCORED, "mean"):
        row = {"metric": f"iou_{cls}", "label": f"layout: IoU of {cls}", "higher_is_better": True}
        for name, res in report["sets"].items():
            row[name] = {
                "requested": res["layout"]["requested"][cls]["iou"],
                "shuffled": res["layout"]["shuffled"][cls]["iou"],
            }
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the summary table (requested | shuffled per set), counts, the snow table; labelled synthetic."""
    names = list(report["sets"])
    lines = [
        f"# Procedural benchmark: {SYNTHETIC_LABEL}",
        "",
        f"**SYNTHETIC benchmark.** {report['n_scenes']} held-out procedural scenes "
        f"({report['image_size']} px, split `{report['split']}` of `{report['manifest']}`) are the requests: their "
        "metadata (and, for the ControlNet, their segmentation map) are asked for; rules are read back with "
        "`rsgen.eval.procedural_checks`, the layout with a small segmenter trained on the procedural train split "
        "(`rsgen.eval.procedural_segmenter`). *requested* = scored against what was asked; *shuffled* = the same "
        "images against another scene's metadata / layout (no control at all); *real* = the real scenes of the "
        "requests (best achievable). These rules are ours, not the world's: this tests the conditioning machinery.",
        "",
        "## Summary (SYNTHETIC benchmark)",
        "",
        "| metric | " + " | ".join(f"{SET_LABELS.get(n, n)}: requested / shuffled" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in report["summary"]:
        arrow = "higher better" if row["higher_is_better"] else "lower better"
        cells = [f"{_fmt(row[n]['requested'])} / {_fmt(row[n]['shuffled'])}" for n in names]
        lines.append(f"| {row['label']} ({arrow}) | " + " | ".join(cells) + " |")
    lines += ["", "## Images measured per rule (SYNTHETIC benchmark)", ""]
    counts = [k for k in next(iter(report["sets"].values()))["rules"]["requested"] if k.startswith("n_")]
    lines.append("| set | " + " | ".join(c[2:] for c in counts) + " |")
    lines.append("|---|" + "---|" * len(counts))
    for n in names:
        r = report["sets"][n]["rules"]["requested"]
        lines.append(f"| {SET_LABELS.get(n, n)} | " + " | ".join(str(r[c]) for c in counts) + " |")
    lines += [
        "",
        "## Snow cover by hemisphere and season of the asked date (SYNTHETIC benchmark)",
        "",
        "Mean snow cover of open land: expected by the rule / measured, per image set.",
        "",
        "| hemisphere | season | n | expected | " + " | ".join(SET_LABELS.get(n, n) for n in names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    tables = {n: report["sets"][n]["rules"]["requested"]["snow_by_season"] for n in names}
    for k, base_row in enumerate(tables[names[0]]):
        cells = [_fmt(tables[n][k]["measured"]) for n in names]
        lines.append(
            f"| {base_row['hemisphere']} | {base_row['season']} | {base_row['n']} | {_fmt(base_row['expected'])} | "
            + " | ".join(cells)
            + " |"
        )
    exact = report.get("real_exact_masks")
    if exact:
        lines += [
            "",
            "## Measurement ceiling (SYNTHETIC benchmark)",
            "",
            "Real scenes scored with their exact generator masks instead of the segmenter's: "
            + ", ".join(f"{key} {_fmt(exact['rules']['requested'].get(key))}" for key, _, _ in RULE_METRICS)
            + ".",
        ]
    lines += ["", "Sample grid: `grid.png` (rows: asked layout, then each image set; SYNTHETIC).", ""]
    return "\n".join(lines)


def write_grid(path: str | Path, requests: Requests, sets: Mapping[str, np.ndarray], n: int = 8) -> Path:
    """grid.png: one column per scene; rows = asked segmentation map, then each image set (labelled)."""
    from PIL import Image, ImageDraw

    from rsgen.io import write_png

    n = min(n, len(requests))
    rows = [("asked layout", requests.segmentation[:n])] + [
        (SET_LABELS.get(k, k), v[:n]) for k, v in sets.items()
    ]
    h, w = requests.images.shape[1:3]
    scale = max(1, 96 // max(h, w))
    label_w, pad, title_h = 250, 2, 18
    cell_h, cell_w = h * scale, w * scale
    canvas = Image.new(
        "RGB", (label_w + n * (cell_w + pad), title_h + len(rows) * (cell_h + pad)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), SYNTHETIC_LABEL[:90], fill=(160, 0, 0))
    for r, (label, images) in enumerate(rows):
        y = title_h + r * (cell_h + pad)
        draw.text((4, y + cell_h // 2 - 6), label[:42], fill=(0, 0, 0))
        for c in range(n):
            tile = Image.fromarray(images[c]).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * (cell_w + pad), y))
    return write_png(path, np.asarray(canvas))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer | np.bool_):
        return x.item()
    return x


def load_benchmark_config(
    name_or_path: str | Path, overrides: Sequence[str] = ()
) -> ProceduralBenchmarkConfig:
    """``configs/eval/<name>.yaml`` (or a path) with ``key=value`` overrides."""
    from rsgen.config import load_config

    return load_config(ProceduralBenchmarkConfig, name_or_path, overrides, subdir="eval")


__all__ = [
    "SYNTHETIC_LABEL",
    "ProceduralBenchmarkConfig",
    "Requests",
    "generate",
    "layout_iou",
    "measure_road_width",
    "load_benchmark_config",
    "load_requests",
    "render_markdown",
    "rule_correlations",
    "run_benchmark",
    "score_image_set",
    "score_layout",
    "score_metadata_rules",
    "snow_by_season",
    "summary_table",
    "vae_round_trip",
    "write_grid",
]
