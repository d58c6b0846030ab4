"""Generation jobs as the command line describes them: prompts (or a prompts file), metadata options, a
``--like`` reference tile, controls, cascade or single model, large scenes; and what-if sweeps. Each job
validates everything before loading a model, then writes images + sidecars and returns the paths."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsgen import __version__
from rsgen.errors import ConfigError, DataError, GeoTiffError, MetadataError
from rsgen.io import GeoReference, write_png
from rsgen.metadata import Metadata, read_geotiff_metadata
from rsgen.paths import DEFAULT_MODEL_DIR
from rsgen.pipelines.output import check_formats, write_image
from rsgen.pipelines.pipeline import ControlInput, RSGenPipeline, Tiling, images_to_uint8
from rsgen.pipelines.schedulers import canonical_scheduler_name

log = logging.getLogger(__name__)

#: Outputs with more pixels than this (per side) go through the block-wise scene writer (GeoTIFF only).
SCENE_MIN_SIDE = 1024


@dataclass
class PromptItem:
    """One prompt of a batch job, with its own metadata / seed / name where the prompts file gives them."""

    prompt: str
    metadata: Metadata | None = None
    seed: int | None = None
    name: str | None = None


@dataclass
class MetadataOptions:
    """The metadata options as typed (strings, parsed by :meth:`Metadata.from_cli`)."""

    lat: str | None = None
    lon: str | None = None
    latlon: str | None = None
    date: str | None = None
    gsd: str | None = None
    cloud: str | None = None

    def parse(self) -> Metadata:
        return Metadata.from_cli(
            gsd=self.gsd, latlon=self.latlon, lat=self.lat, lon=self.lon, date=self.date, cloud=self.cloud
        )


@dataclass
class SamplingOptions:
    model: str | None = None
    scheduler: str = "dpm++"
    steps: int = 25
    guidance_text: float = 5.0
    guidance_meta: float | None = None  # None: the model's default_guidance_meta (model_index.json)
    negative: str | None = None
    seed: int = 0
    window: int | None = None
    overlap: int = 8
    out: str = "outputs"
    formats: tuple[str, ...] = ("tif", "png")
    name: str | None = None
    progress: bool = True

    def check(self) -> None:
        """Validate before any model is loaded (one-line ConfigError naming the option)."""
        if self.steps < 1:
            raise ConfigError(
                f"--steps {self.steps}: the number of denoising steps must be a positive integer"
            )
        self.scheduler = canonical_scheduler_name(self.scheduler)
        for name, v in (("--guidance-text", self.guidance_text), ("--guidance-meta", self.guidance_meta)):
            if v is not None and not v >= 0:
                raise ConfigError(f"{name} {v}: a guidance scale must be >= 0 (1 = no guidance)")
        if self.window is not None and self.window < 2:
            raise ConfigError(f"--window {self.window}: expected at least 2 latent pixels")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: expected a non-negative integer")
        self.formats = check_formats(self.formats)

    def pipeline_options(self) -> dict[str, Any]:
        """These options as keyword arguments of ``RSGenPipeline.__call__`` / ``generate_scene``."""
        return {
            "negative_prompt": self.negative,
            "num_inference_steps": self.steps,
            "guidance_text": self.guidance_text,
            "guidance_meta": self.guidance_meta,
            "scheduler": self.scheduler,
            "progress": self.progress,
        }


@dataclass
class GenerateRequest:
    prompts: list[PromptItem]
    metadata: MetadataOptions = field(default_factory=MetadataOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    n: int = 1
    size: tuple[int, int] | None = None  # (height, width)
    like: str | None = None
    like_control: str | None = None
    controls: list[str] = field(default_factory=list)
    controlnets: dict[str, str] = field(default_factory=dict)
    cascade: str | None = None
    skip_stages: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ parsing
def parse_size(text: str | None) -> tuple[int, int] | None:
    """``N`` or ``WxH`` -> (height, width)."""
    if text is None:
        return None
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--size {text!r}: expected N or WIDTHxHEIGHT in pixels, e.g. 512 or 1024x768"
        ) from None
    if len(nums) not in (1, 2) or min(nums) < 1:
        raise ConfigError(f"--size {text!r}: expected N or WIDTHxHEIGHT with positive integers")
    w, h = (nums[0], nums[0]) if len(nums) == 1 else nums
    return h, w


def read_prompts_file(path: str | Path) -> list[PromptItem]:
    """Prompts from a text file (one per line, ``#`` comments) or JSONL (``{"prompt", "metadata", "seed",
    "name"}`` per line). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--prompts: no such file {path}")
    items = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if "prompt" not in rec:
                raise DataError(f'{path}:{lineno}: a JSONL record needs a "prompt" key')
            try:
                meta = Metadata.from_dict(rec["metadata"]) if rec.get("metadata") else None
            except MetadataError as e:
                raise MetadataError(f"{path}:{lineno}: {e}") from None
            seed = rec.get("seed")
            items.append(
                PromptItem(str(rec["prompt"]), meta, int(seed) if seed is not None else None, rec.get("name"))
            )
        else:
            items.append(PromptItem(line))
    if not items:
        raise DataError(f"--prompts {path}: no prompts in the file")
    return items


def _like(path: str | None) -> tuple[Metadata, GeoReference | None]:
    if path is None:
        return Metadata(), None
    if not Path(path).is_file():
        raise GeoTiffError(f"--like {path}: no such file")
    meta, _ = read_geotiff_metadata(path)
    try:
        georef = GeoReference.from_raster(path)
    except GeoTiffError:
        georef = None
    return meta, georef


def output_grid(
    meta: Metadata, like_georef: GeoReference | None, size: tuple[int, int]
) -> tuple[Metadata, GeoReference | None]:
    """The output's georeference and its metadata with the true GSD of the output grid.

    From ``--like``: the reference footprint on the output grid. From lat/lon + GSD: a north-up UTM grid.
    """
    h, w = size
    if like_georef is not None:
        georef = like_georef.resized(w, h)
        if meta.gsd_m is not None and (like_georef.width, like_georef.height) != (w, h):
            meta = meta.replace(gsd_m=meta.gsd_m * like_georef.width / w)
        return meta, georef
    if meta.has_location and meta.gsd_m is not None:
        assert meta.lat is not None and meta.lon is not None
        return meta, GeoReference.from_latlon_gsd(meta.lat, meta.lon, meta.gsd_m, w, h)
    return meta, None


# ------------------------------------------------------------------------------------------------ running
def _load_model(path: str | None) -> RSGenPipeline:
    from rsgen.pipelines.default import load_default_pipeline

    pipe = load_default_pipeline(path) if path is None else _load_explicit(path)
    if getattr(pipe, "untrained", False):
        print(pipe.untrained_reason, file=sys.stderr)
    return pipe


def _load_explicit(path: str) -> RSGenPipeline:
    from rsgen.pipelines.default import load_pipeline

    return load_pipeline(path)


def _controlnet_for(pipe: RSGenPipeline, kind: str, model_dir: str | None, explicit: dict[str, str]) -> Any:
    from rsgen.models.controlnet import controlnet_from_unet, load_controlnet

    if kind in explicit:
        return load_controlnet(explicit[kind])
    if model_dir is not None and (Path(model_dir) / f"controlnet-{kind}" / "config.json").is_file():
        return load_controlnet(Path(model_dir) / f"controlnet-{kind}")
    if pipe.controlnet is not None:
        return pipe.controlnet
    if getattr(pipe, "untrained", False):
        print(f"WARNING: untrained random ControlNet for {kind!r} (it starts as a no-op)", file=sys.stderr)
        return controlnet_from_unet(pipe.unet, pipe.latent_factor)
    raise ConfigError(
        f"control {kind!r}: the model has no ControlNet; give --controlnet {kind}=DIR or put one in MODEL/controlnet-{kind}"
    )


def build_controls(
    pipe: RSGenPipeline,
    specs: Sequence[Any],
    size: tuple[int, int],
    georef: GeoReference | None,
    model_dir: str | None,
    controlnets: dict[str, str],
) -> list[ControlInput]:
    """ControlNet inputs from parsed specs, each condition drawn on the output grid by rsgen.conditions."""
    from rsgen.conditions import condition_to_tensor

    out = []
    for spec in specs:
        arr = spec.make(size=size, georef=georef) if georef is not None else spec.make(size=size)
        out.append(
            ControlInput(
                condition_to_tensor(arr)[None],
                spec.weight,
                spec.start,
                spec.end,
                _controlnet_for(pipe, spec.kind, model_dir, controlnets),
                spec.kind,
            )
        )
    return out


def _write_conditions(
    stem: Path, controls: Sequence[ControlInput], specs: Sequence[Any], like: str | None
) -> dict[str, Any]:
    """Save each ControlNet condition beside the output as ``<stem>.condition-<type>.png`` so that
    ``rsgen evaluate`` can score control faithfulness; returns the sidecar entries naming them, where each was
    drawn from and (with ``--like``) the real image they belong to."""
    if not controls:
        return {}
    conditions: dict[str, str] = {}
    sources: dict[str, str] = {}
    for c, spec in zip(controls, specs, strict=True):
        key = spec.kind if spec.kind not in conditions else f"{spec.kind}#{len(conditions)}"
        name = f"{stem.name}.condition-{key.replace('#', '-')}.png"
        image = c.image[0].permute(1, 2, 0).float().cpu().numpy()  # (H, W, 3) in [0, 1]
        write_png(stem.with_name(name), images_to_uint8(image[None])[0])
        conditions[key] = name
        band = "" if spec.band is None else ":" + ",".join(str(b) for b in np.atleast_1d(spec.band))
        sources[key] = str(Path(spec.path).resolve()) + band
    out: dict[str, Any] = {"conditions": conditions, "condition_sources": sources}
    if like is not None:
        out["real_image"] = str(Path(like).resolve())
    return out


def _settings(
    req: GenerateRequest, item: PromptItem, seed: int, size: tuple[int, int], extra: dict[str, Any]
) -> dict:
    s = req.sampling
    return {
        "prompt": item.prompt,
        "negative_prompt": s.negative,
        "seed": seed,
        "size": [size[1], size[0]],
        "steps": s.steps,
        "scheduler": s.scheduler,
        "guidance_text": s.guidance_text,
        "guidance_meta": s.guidance_meta,
        "model": s.model or "default",
        "cascade": req.cascade,
        "skip_stages": req.skip_stages,
        "like": req.like,
        "controls": req.controls + ([f"{req.like_control}=--like"] if req.like_control else []),
        "window": s.window,
        "overlap": s.overlap,
        "rsgen_version": __version__,
        **extra,
    }


def _first_model_dir(cascade: Any, model: str | None) -> Path:
    """The folder of the model that runs first (where MODEL/controlnet-TYPE is looked for): the cascade's base
    stage, ``--model``, or the default model."""
    if cascade is not None:
        from rsgen.pipelines.cascade import stage_model_dir

        return stage_model_dir(cascade.config.stages[0])
    return Path(model) if model is not None else DEFAULT_MODEL_DIR


def run_generate(req: GenerateRequest) -> list[Path]:
    """Run a generation job; returns every file written."""
    from rsgen.conditions import ControlSpec, parse_control_spec

    req.sampling.check()
    if req.n < 1:
        raise ConfigError(f"--n {req.n}: the number of images per prompt must be at least 1")
    if not req.prompts:
        raise ConfigError("no prompt: give PROMPT or --prompts FILE")
    cli_meta = req.metadata.parse()
    like_meta, like_georef = _like(req.like)
    specs = [parse_control_spec(c) for c in req.controls]
    if req.like_control:
        if req.like is None:
            raise ConfigError("--like-control needs --like REF.tif")
        specs.append(ControlSpec(req.like_control, req.like))
    out_dir = Path(req.sampling.out)
    cascade = None
    if req.cascade is not None:
        from rsgen.pipelines.cascade import Cascade, load_cascade

        cascade = Cascade(load_cascade(req.cascade))
        cascade.config.active(req.skip_stages)  # validate names before loading anything
        pipe = cascade.pipeline(cascade.config.stages[0])
        if getattr(pipe, "untrained", False):
            print(pipe.untrained_reason, file=sys.stderr)
    else:
        if req.skip_stages:
            raise ConfigError("--skip-stage needs --cascade")
        pipe = _load_model(req.sampling.model)
        req.sampling.guidance_meta = pipe.resolve_guidance_meta(req.sampling.guidance_meta)  # as recorded
    size = req.size
    if size is None:
        size = (
            (like_georef.height, like_georef.width) if like_georef is not None else (pipe.default_size,) * 2
        )
    s = req.sampling
    tiling = Tiling(window=s.window, overlap=s.overlap, decode_tile=s.window) if s.window else None
    scene = max(size) >= SCENE_MIN_SIDE
    if scene and tiling is None and cascade is None:  # a cascade's stages get their own windows
        window = 2 * int(pipe.unet.config.sample_size)
        tiling = Tiling(window=window, overlap=min(s.overlap, window // 2), decode_tile=window)
    written: list[Path] = []
    stem = s.name or "rsgen"
    base_dir = str(_first_model_dir(cascade, s.model))  # where MODEL/controlnet-TYPE is looked for
    index = 0
    for item in req.prompts:
        meta = like_meta.merged_with(item.metadata) if item.metadata else like_meta
        meta = meta.merged_with(cli_meta)
        meta, georef = output_grid(meta, like_georef, size)
        seed = item.seed if item.seed is not None else s.seed + index
        controls = build_controls(pipe, specs, size, georef, base_dir, req.controlnets) if specs else []
        if scene:
            written += _scene(
                pipe,
                req,
                item,
                meta,
                georef,
                size,
                seed,
                controls,
                tiling,
                out_dir,
                stem,
                index,
                specs,
                cascade,
            )
            index += req.n
            continue
        if cascade is not None:
            res = cascade(
                item.prompt,
                meta,
                size=size,
                n=req.n,
                seed=seed,
                steps=s.steps,
                guidance_text=s.guidance_text,
                guidance_meta=s.guidance_meta,
                scheduler=s.scheduler,
                negative_prompt=s.negative,
                controls=controls,
                skip=req.skip_stages,
                tiling=tiling,
                progress=s.progress,
            )
            images, seeds = res.images, res.seeds
            size_out = images.shape[1:3]
            extra = {
                "stages": res.stage_names,
                "stage_gsd_m": [m.gsd_m if m else None for m in res.stage_metadata],
                "untrained_stages": res.untrained,
                "stage_guidance_meta": res.stage_guidance_meta,
            }
            meta_out = res.stage_metadata[-1] or meta
            if tuple(size_out) != tuple(size):  # stages skipped: coarser grid over the same footprint
                georef = georef.resized(size_out[1], size_out[0]) if georef is not None else None
        else:
            out = pipe(
                item.prompt,
                meta,
                n=req.n,
                height=size[0],
                width=size[1],
                seed=seed,
                controls=controls,
                tiling=tiling,
                **s.pipeline_options(),
            )
            images, seeds, size_out, meta_out = out.images, out.seeds, size, meta
            extra = {"untrained": bool(getattr(pipe, "untrained", False))}
        for img, sd in zip(images_to_uint8(images), seeds, strict=True):
            settings = _settings(req, item, sd, tuple(size_out), extra)
            name = item.name or stem
            base = out_dir / f"{name}_{index:04d}_s{sd}"
            settings.update(_write_conditions(base, controls, specs, req.like))
            written += [base.with_name(n) for n in settings.get("conditions", {}).values()]
            written += write_image(
                base,
                img,
                georef=georef,
                metadata=meta_out,
                generation=settings,
                formats=s.formats,
            )
            index += 1
    return written


def _scene(
    pipe: RSGenPipeline,
    req: GenerateRequest,
    item: PromptItem,
    meta: Metadata,
    georef: GeoReference | None,
    size: tuple[int, int],
    seed: int,
    controls: list[ControlInput],
    tiling: Tiling | None,
    out_dir: Path,
    stem: str,
    index: int,
    specs: Sequence[Any] = (),
    cascade: Any = None,
) -> list[Path]:
    from rsgen.io import atomic_write_json, generation_tags
    from rsgen.pipelines.output import sidecar_record
    from rsgen.pipelines.scene import generate_scene

    s = req.sampling
    if "png" in s.formats:
        log.warning("large scene: writing GeoTIFF only (a PNG would need the whole image in memory)")
    written = []
    for k in range(req.n):
        sd = seed + k
        base = out_dir / f"{item.name or stem}_{index + k:04d}_s{sd}"
        settings = _settings(
            req, item, sd, size, {"scene": True, "untrained": bool(getattr(pipe, "untrained", False))}
        )
        settings.update(_write_conditions(base, controls, specs, req.like))
        written += [base.with_name(n) for n in settings.get("conditions", {}).values()]
        tags = generation_tags(meta, prompt=item.prompt, seed=sd, settings=settings)
        path = generate_scene(
            pipe,
            base.with_name(base.name + ".tif"),
            item.prompt,
            meta,
            height=size[0],
            width=size[1],
            georef=georef,
            tiling=tiling,
            seed=sd,
            controls=controls,
            tags=tags,
            cascade=cascade,
            skip_stages=req.skip_stages,
            **s.pipeline_options(),
        )
        side = base.with_name(base.name + ".json")
        atomic_write_json(side, sidecar_record(meta, settings))
        written += [path, side]
    return written


# ------------------------------------------------------------------------------------------------ what-if
@dataclass
class WhatIfRequest:
    input: str
    sweep: str
    prompt: str = ""
    strength: float = 0.6
    metadata: MetadataOptions = field(default_factory=MetadataOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)


def run_whatif_request(req: WhatIfRequest) -> list[Path]:
    """Sweep one field over a real image; writes one image + sidecar per value and ``<name>_grid.png``."""
    from rsgen.pipelines.whatif import labelled_grid, load_source, parse_sweep, run_whatif, source_settings

    req.sampling.check()
    if not 0 < req.strength <= 1:
        raise ConfigError(f"--strength {req.strength}: expected 0 < strength <= 1")
    field_name, values = parse_sweep(req.sweep)
    if not Path(req.input).is_file():
        raise DataError(f"what-if input: no such file {req.input}")
    cli_meta = req.metadata.parse()
    pipe = _load_model(req.sampling.model)
    source = load_source(req.input, pipe.size_multiple)
    base = source.metadata.merged_with(cli_meta)
    s = req.sampling
    tiling = Tiling(window=s.window, overlap=s.overlap, decode_tile=s.window) if s.window else None
    res = run_whatif(
        pipe,
        source,
        req.prompt,
        field_name,
        values,
        strength=req.strength,
        steps=s.steps,
        seed=s.seed,
        guidance_text=s.guidance_text,
        guidance_meta=s.guidance_meta,
        scheduler=s.scheduler,
        base_metadata=base,
        tiling=tiling,
        progress=s.progress,
    )
    out_dir = Path(s.out)
    stem = s.name or "whatif"
    written = []
    for k, (v, img, georef, meta) in enumerate(
        zip(res.variants, res.images, res.georefs, res.metadata, strict=True)
    ):
        settings = {
            "prompt": v.prompt,
            "seed": res.seed,
            "strength": req.strength,
            "sweep": req.sweep,
            "value": v.label,
            "steps": s.steps,
            "scheduler": s.scheduler,
            "guidance_text": s.guidance_text,
            "guidance_meta": s.guidance_meta,
            "model": s.model or "default",
            "untrained": bool(getattr(pipe, "untrained", False)),
            "rsgen_version": __version__,
            **source_settings(source),
        }
        label = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in v.label)
        written += write_image(
            out_dir / f"{stem}_{k:02d}_{label}",
            images_to_uint8(img[None])[0],
            georef=georef,
            metadata=meta,
            generation=settings,
            formats=s.formats,
        )
    source_rgb = (source.pixels[0].permute(1, 2, 0).numpy() + 1) / 2
    grid = labelled_grid(res.images, [v.label for v in res.variants], source=source_rgb)
    written.append(write_png(out_dir / f"{stem}_grid.png", grid))
    return written


def request_dict(req: GenerateRequest | WhatIfRequest) -> dict[str, Any]:
    """The request as plain data (for logs)."""
    return json.loads(json.dumps(asdict(req), default=str))


__all__ = [
    "GenerateRequest",
    "MetadataOptions",
    "PromptItem",
    "SamplingOptions",
    "WhatIfRequest",
    "output_grid",
    "parse_size",
    "read_prompts_file",
    "run_generate",
    "run_whatif_request",
]
