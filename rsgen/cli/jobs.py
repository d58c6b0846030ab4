"""Generation jobs as the command line describes them: prompts (or a prompts file), metadata options, a
``--like`` reference tile, controls, cascade or single model, large scenes; and what-if sweeps. Each job
validates everything before loading a model (limits, names, the output folder), then writes images + sidecars
(each image appears only with its sidecar: see :func:`rsgen.pipelines.output.write_image`) and returns the
paths."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsgen import __version__, safety
from rsgen.errors import ConfigError, DataError, GeoTiffError, MetadataError
from rsgen.io import GeoReference, write_png
from rsgen.metadata import Metadata, read_geotiff_metadata
from rsgen.paths import DEFAULT_MODEL_DIR
from rsgen.pipelines.output import check_formats, write_image
from rsgen.pipelines.pipeline import ControlInput, RSGenPipeline, Tiling, images_to_uint8
from rsgen.pipelines.schedulers import canonical_scheduler_name
from rsgen.safety import LIMITS

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
        """Validate before any model is loaded (one-line ConfigError naming the option); prepares ``--out``
        (created, proven writable, stale temporary files of killed runs removed)."""
        if self.steps < 1:
            raise ConfigError(
                f"--steps {self.steps}: the number of denoising steps must be a positive integer"
            )
        safety.check_limit("--steps", self.steps, LIMITS.max_steps, "denoising steps")
        self.scheduler = canonical_scheduler_name(self.scheduler)
        safety.check_guidance("--guidance-text", self.guidance_text)
        safety.check_guidance("--guidance-meta", self.guidance_meta)
        if self.window is not None and self.window < 2:
            raise ConfigError(f"--window {self.window}: expected at least 2 latent pixels")
        if self.overlap < 0:
            raise ConfigError(f"--overlap {self.overlap}: expected a non-negative number of latent pixels")
        if self.window is not None and self.overlap >= self.window:
            raise ConfigError(
                f"--overlap {self.overlap}: must be smaller than --window {self.window} (e.g. --overlap "
                f"{self.window // 4})"
            )
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed {self.seed}: expected an integer in [0, 2^63)")
        if self.name is not None:
            self.name = safety.safe_name(self.name)
        self.formats = check_formats(self.formats)
        safety.check_output_dir(self.out)
        for stale in safety.clean_stale_temps(self.out):
            log.warning("removed %s (a temporary file left by a killed run)", stale)

    def check_model(self, pipe: RSGenPipeline) -> None:
        """Checks that need the loaded model: no more steps than its scheduler's training timesteps."""
        limit = int(getattr(pipe.scheduler.config, "num_train_timesteps", 0) or 0)
        if limit and self.steps > limit:
            raise ConfigError(
                f"--steps {self.steps}: the model's scheduler was trained with {limit} timesteps; use at most "
                f"{limit} steps"
            )

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


PROMPT_KEYS = ("prompt", "metadata", "seed", "name")


def _prompt_text(path: Path) -> str:
    """The prompts file as text: UTF-8 (a BOM is accepted), no NUL bytes; one-line DataError naming the line."""
    if not path.is_file():
        raise DataError(f"--prompts: no such file {path}")
    data = path.read_bytes()
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise DataError(f"{path}:{line}: binary data (NUL byte); a prompts file is UTF-8 text or JSONL")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None


def _prompt_record(path: Path, lineno: int, line: str) -> PromptItem:
    """One JSONL record, strictly typed: every error names the file, line and key."""
    where = f"{path}:{lineno}"
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{where}: invalid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
    if not isinstance(rec, dict):
        raise DataError(f'{where}: expected a JSON object {{"prompt": ...}}')
    unknown = sorted(set(rec) - set(PROMPT_KEYS))
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(PROMPT_KEYS)}"
        )
    prompt = rec.get("prompt")
    if not isinstance(prompt, str):
        raise DataError(f'{where}: "prompt" must be a string, found {type(prompt).__name__}')
    metadata = rec.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DataError(f'{where}: "metadata" must be an object, found {type(metadata).__name__}')
    try:
        meta = Metadata.from_dict(metadata) if metadata else None
    except MetadataError as e:
        raise MetadataError(f"{where}: {e}") from None
    seed = rec.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise DataError(f'{where}: "seed" must be an integer in [0, 2^63), found {seed!r}')
    name = rec.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise DataError(f'{where}: "name" must be a string, found {type(name).__name__}')
        name = safety.safe_name(name, f'{where}: "name"')
    return PromptItem(prompt, meta, seed, name)


def read_prompts_file(path: str | Path) -> list[PromptItem]:
    """Prompts from a text file (one per line, ``#`` comments) or JSONL (``{"prompt", "metadata", "seed",
    "name"}`` per line). Errors name the file and line."""
    path = Path(path)
    items = []
    for lineno, raw in enumerate(_prompt_text(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        items.append(_prompt_record(path, lineno, line) if line.startswith("{") else PromptItem(line))
        if len(items) > LIMITS.max_prompts and not safety.allow_large():
            raise DataError(
                f"--prompts {path}: more than {LIMITS.max_prompts} prompts; split the file or pass --allow-large"
            )
    if not items:
        raise DataError(f"--prompts {path}: no prompts in the file")
    return items


def _like(path: str | None) -> tuple[Metadata, GeoReference | None]:
    if path is None:
        return Metadata(), None
    if not Path(path).is_file():
        raise GeoTiffError(f"--like {path}: no such file")
    try:
        georef = GeoReference.from_raster(path)
    except GeoTiffError as e:
        raise GeoTiffError(
            f"--like {e}; --like needs a georeferenced GeoTIFF (for metadata alone use --lat/--lon/--gsd/--date)"
        ) from None
    meta, _ = read_geotiff_metadata(path)
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

    if path is not None and Path(path, "model_index.json").is_file():
        safety.check_model_folder(path)  # before anything is imported or unpickled
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


def _condition_files(
    stem: Path, controls: Sequence[ControlInput], specs: Sequence[Any], like: str | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Each ControlNet condition to save beside the output as ``<stem>.condition-<type>.png`` (so that
    ``rsgen evaluate`` can score control faithfulness): the sidecar entries naming them, where each was drawn
    from and (with ``--like``) the real image they belong to; and the (H, W, 3) uint8 images by file name,
    written with the image by :func:`write_image`."""
    if not controls:
        return {}, {}
    conditions: dict[str, str] = {}
    sources: dict[str, str] = {}
    files: dict[str, np.ndarray] = {}
    for c, spec in zip(controls, specs, strict=True):
        key = spec.kind if spec.kind not in conditions else f"{spec.kind}#{len(conditions)}"
        name = f"{stem.name}.condition-{key.replace('#', '-')}.png"
        image = c.image[0].permute(1, 2, 0).float().cpu().numpy()  # (H, W, 3) in [0, 1]
        files[name] = images_to_uint8(image[None])[0]
        conditions[key] = name
        band = "" if spec.band is None else ":" + ",".join(str(b) for b in np.atleast_1d(spec.band))
        sources[key] = str(Path(spec.path).resolve()) + band
    out: dict[str, Any] = {"conditions": conditions, "condition_sources": sources}
    if like is not None:
        out["real_image"] = str(Path(like).resolve())
    return out, files


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


# a job with at least this many UNet evaluations gets a measured time estimate (two short probe runs) first
TIME_PROBE_MIN_EVALUATIONS = 400


def _probe_seconds(pipe: RSGenPipeline, size: tuple[int, int], s: SamplingOptions) -> tuple[float, float]:
    """(seconds per sampling step, seconds of the rest: encoding, decoding) of one image at ``size`` with this
    job's options, from runs of 1 and 2 steps."""
    times = []
    options = {**s.pipeline_options(), "progress": False}
    for steps in (1, 2):
        options["num_inference_steps"] = steps
        start = time.perf_counter()
        pipe("", None, n=1, height=size[0], width=size[1], seed=0, **options)
        times.append(time.perf_counter() - start)
    per_step = max(times[1] - times[0], 1e-4)
    return per_step, max(times[0] - per_step, 0.0)


def _log_estimate(
    count: int, size: tuple[int, int], s: SamplingOptions, pipe: RSGenPipeline, probe: bool = True
) -> None:
    """One log line before the work: images, pixels, UNet evaluations, time (measured when the job is long),
    peak memory and disk (rough)."""
    est = safety.output_estimate(*size, count, s.formats)
    passes = 3 if s.guidance_meta not in (None, 1.0) else 2  # guidance branches per step
    evaluations = count * s.steps * passes
    eta = ""
    if probe and evaluations >= TIME_PROBE_MIN_EVALUATIONS:
        per_step, rest = _probe_seconds(pipe, size, s)
        eta = f", about {count * (s.steps * per_step + rest):.0f} s"
    log.warning(
        "job: %d image(s) of %dx%d, %d steps -> about %d UNet evaluations (%s)%s; output memory ~%s, disk <= %s",
        count,
        size[1],
        size[0],
        s.steps,
        evaluations,
        "untrained tiny model" if getattr(pipe, "untrained", False) else str(pipe.device),
        eta,
        safety.format_bytes(est["memory"]),
        safety.format_bytes(est["disk"]),
    )


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
    safety.check_limit("--n", req.n, LIMITS.max_n, "images per prompt")
    if not req.prompts:
        raise ConfigError("no prompt: give PROMPT or --prompts FILE")
    if req.size is not None:
        safety.check_output_size("--size", *req.size, req.n * len(req.prompts), req.sampling.formats)
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
    req.sampling.check_model(pipe)
    size = req.size
    if size is None:
        size = (
            (like_georef.height, like_georef.width) if like_georef is not None else (pipe.default_size,) * 2
        )
        safety.check_output_size(
            "--size (from --like)", *size, req.n * len(req.prompts), req.sampling.formats
        )
    s = req.sampling
    tiling = Tiling(window=s.window, overlap=s.overlap, decode_tile=s.window) if s.window else None
    scene = max(size) >= SCENE_MIN_SIDE
    if scene and tiling is None and cascade is None:  # a cascade's stages get their own windows
        window = 2 * int(pipe.unet.config.sample_size)
        if s.overlap > window // 2:  # the window is rsgen's choice here: record the overlap actually used
            log.warning(
                "large scene: --overlap %d reduced to %d (half the %d-pixel window)",
                s.overlap,
                window // 2,
                window,
            )
            s.overlap = window // 2
        tiling = Tiling(window=window, overlap=s.overlap, decode_tile=window)
    _log_estimate(req.n * len(req.prompts), size, s, pipe, probe=not scene and cascade is None)
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
            base = safety.inside(out_dir / f"{item.name or stem}_{index:04d}_s{sd}", out_dir)
            entries, condition_images = _condition_files(base, controls, specs, req.like)
            settings.update(entries)
            written += write_image(
                base,
                img,
                georef=georef,
                metadata=meta_out,
                generation=settings,
                formats=s.formats,
                extra_files=condition_images,
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
    from rsgen.io import atomic_group, generation_tags, json_text
    from rsgen.pipelines.output import sidecar_record
    from rsgen.pipelines.scene import generate_scene

    s = req.sampling
    if "png" in s.formats:
        log.warning("large scene: writing GeoTIFF only (a PNG would need the whole image in memory)")
    written = []
    for k in range(req.n):
        sd = seed + k
        base = safety.inside(out_dir / f"{item.name or stem}_{index + k:04d}_s{sd}", out_dir)
        settings = _settings(
            req, item, sd, size, {"scene": True, "untrained": bool(getattr(pipe, "untrained", False))}
        )
        entries, condition_images = _condition_files(base, controls, specs, req.like)
        settings.update(entries)
        tags = generation_tags(meta, prompt=item.prompt, seed=sd, settings=settings)
        side = base.with_name(base.name + ".json")
        tif = base.with_name(base.name + ".tif")
        conditions = [base.with_name(n) for n in condition_images]
        # the same rule as write_image: conditions and sidecar renamed into place first, the GeoTIFF last
        with atomic_group([*conditions, side, tif]) as temps:
            for tmp, image in zip(temps[: len(conditions)], condition_images.values(), strict=True):
                write_png(tmp, image, layout="HWC")
            temps[len(conditions)].write_text(
                json_text(sidecar_record(meta, settings), side), encoding="utf-8"
            )
            generate_scene(
                pipe,
                temps[-1],
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
        written += [*conditions, tif, side]
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
    from rsgen.pipelines.whatif import (
        crop_to_multiple,
        labelled_grid,
        load_source,
        parse_sweep,
        regridded_size,
        run_whatif,
        source_settings,
        variants,
    )

    req.sampling.check()
    if not 0 < req.strength <= 1:  # also false for NaN
        raise ConfigError(f"--strength {req.strength}: expected 0 < strength <= 1")
    field_name, values = parse_sweep(req.sweep, max_values=None if safety.allow_large() else LIMITS.max_sweep)
    if not Path(req.input).is_file():
        raise DataError(f"what-if input: no such file {req.input}")
    cli_meta = req.metadata.parse()
    source = load_source(
        req.input, 1
    )  # a garbage, truncated or huge input fails here, before the model loads
    base = source.metadata.merged_with(cli_meta)
    variants(base, req.prompt, field_name, values)  # every sweep value valid for this image
    _, _, h0, w0 = source.pixels.shape
    safety.check_output_size("what-if input", h0, w0, len(values), req.sampling.formats)
    if field_name == "gsd" and source.metadata.gsd_m is not None:
        for v in values:
            h, w = regridded_size(h0, w0, source.metadata.gsd_m, float(v), 1)
            safety.check_output_size(f"--sweep gsd={v}", h, w, len(values), req.sampling.formats)
    pipe = _load_model(req.sampling.model)
    req.sampling.check_model(pipe)
    source = crop_to_multiple(source, pipe.size_multiple)
    _log_estimate(len(values), tuple(source.pixels.shape[2:]), req.sampling, pipe, probe=False)
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
        label = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in v.label)[:48]
        written += write_image(
            safety.inside(out_dir / f"{stem}_{k:02d}_{label}", out_dir),
            images_to_uint8(img[None])[0],
            georef=georef,
            metadata=meta,
            generation=settings,
            formats=s.formats,
        )
    source_rgb = (source.pixels[0].permute(1, 2, 0).numpy() + 1) / 2
    grid = labelled_grid(res.images, [v.label for v in res.variants], source=source_rgb)
    written.append(write_png(safety.inside(out_dir / f"{stem}_grid.png", out_dir), grid, layout="HWC"))
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
