"""One evaluation run: a folder of generated images (or a model that generates them) against a reference set
-> distribution metrics, text and metadata faithfulness, sweeps over guidance scale / steps, report + plots."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.errors import RsgenError
from rsgen.eval.distribution import (
    RSFeatureExtractor,
    StandardInceptionExtractor,
    distribution_metrics,
    extract_features,
    frechet_distance,
)
from rsgen.eval.generated_set import GeneratedSet, load_generated_set
from rsgen.eval.prompt_sets import PromptSetConfig
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """What ``rsgen evaluate`` measures and on what (``configs/eval/default.yaml``)."""

    reference: str = "eurosat-val"  # or a folder of real images (<Class>/ subfolders optional)
    max_reference: int | None = None
    image_size: int = 64
    feature_net: str | None = None  # None = assets/eval/rs-feature-net
    # class judges of text faithfulness (the headline); None = assets/eval/class-judges; "off" = none, the
    # EuroSAT classifiers below then give the headline
    class_judges: str | None = None
    # second opinion on EuroSAT classes; None = assets/eval/rs-classifier-robust when shipped
    text_classifier: str | None = None
    inception_weights: str | None = None  # pt_inception-2015-12-05-6726825d.pth for standard FID/KID/IS
    gsd_predictor: str | None = None  # None = assets/eval/gsd-predictor
    max_generated: int | None = None
    # a model folder (or VAE folder) whose VAE round trip of the real held-out images is reported beside them in
    # metadata faithfulness: a latent model cannot beat its decoder; `--model` sets it to that model
    vae: str | None = None
    sweep_keys: tuple[str, ...] = ("guidance_scale", "steps", "guidance_meta")
    year_predictor: str | None = None  # None = assets/eval/year-predictor
    rs_clip: str | None = None  # None = assets/eval/rs-clip
    clip_model: str | None = None  # local transformers CLIP folder for the standard CLIP score
    clip_real_images: int = 500
    metadata_real_images: int = 400
    # trained captioner folder (eval/caption_judge.py train) for the "Captioner as judge" section;
    # None = assets/eval/captioner when shipped; "off" = skip the section
    captioner: str | None = None
    captioner_real_images: int = 500  # real EuroSAT val images captioned beside the generated ones
    # Control faithfulness (records with "conditions"): mask type -> segmenter "module:function" / "file.py:fn".
    segmenters: dict[str, str] = field(default_factory=dict)
    control_tolerance_px: float = 2.0  # edge F1 pixel tolerance
    # Generation when a model folder is given instead of images.
    num_images: int = 2000
    num_inference_steps: int = 30
    guidance_scale: float = 5.0
    # metadata guidance scale (1 = none; >1 pushes the metadata's effect further); None = the model's own
    # default_guidance_meta (model_index.json), i.e. what `rsgen generate` gives with that model
    guidance_meta: float | None = None
    gsd_choices: tuple[float, ...] = (10.0,)
    guidance_sweep: tuple[float, ...] = ()  # extra images at each guidance scale (FID_RS vs guidance plot)
    steps_sweep: tuple[int, ...] = ()  # extra images at each number of steps (FID_RS vs steps plot)
    # extra images at each metadata guidance scale: FID_RS, class accuracy and GSD error against it
    guidance_meta_sweep: tuple[float, ...] = ()
    sweep_images: int = 200
    batch_size: int = 16
    seed: int = 0
    # Prompt sets people write (rsgen.eval.prompt_sets): with --model each is generated at its own GSD and size
    # after the class prompts; each set found in the generated folder is reported in its own section.
    prompt_sets: list[PromptSetConfig] = field(default_factory=list)


def class_prompt(class_name: str) -> str:
    """A plain prompt naming a EuroSAT class, e.g. ``a satellite image of a dense forest``."""
    from rsgen.data.captions import default_vocabulary

    # the vocabulary ships with rsgen (assets/captions): a missing or broken one is a DataError, not a fallback
    phrase = default_vocabulary().scene(class_name).singular[0]
    return f"a satellite image of {phrase}"


def generate_class_prompt_set(model_dir: str | Path, out_folder: str | Path, config: EvaluateConfig) -> Path:
    """Generate ``num_images`` images from class prompts (classes and GSDs cycled; per-image seeds) with a saved
    rsgen model, plus ``sweep_images`` more at every value of ``guidance_sweep``, ``steps_sweep`` and
    ``guidance_meta_sweep`` (the same prompts, GSDs and seeds as the first ``sweep_images`` of the main set),
    then every prompt set of ``prompt_sets`` at its own GSD and size, written as a generated set (PNGs +
    ``generated.jsonl``) that :func:`evaluate_folder` reads."""
    from rsgen.eval.generated_set import write_generated_set
    from rsgen.eval.prompt_sets import prompt_set_records
    from rsgen.eval.reference_data import EUROSAT_CLASSES
    from rsgen.metadata import Metadata
    from rsgen.pipelines import RSGenPipeline

    if not (Path(model_dir) / "model_index.json").is_file():
        raise RsgenError(f"--model {model_dir}: not a saved rsgen model (no model_index.json)")
    pipe = RSGenPipeline.from_pretrained(str(model_dir), use_safetensors=use_safetensors())
    import torch

    if torch.cuda.is_available():  # per-image seeds keep the set reproducible on either device
        pipe.to("cuda")
    pipe.set_progress_bar_config(disable=True)
    gm = pipe.resolve_guidance_meta(config.guidance_meta)
    n_steps, gt = config.num_inference_steps, config.guidance_scale
    # (images, text guidance, steps, metadata guidance, what is swept)
    runs = [(config.num_images, gt, n_steps, gm, None)]
    runs += [(config.sweep_images, g, n_steps, gm, "guidance_scale") for g in config.guidance_sweep]
    runs += [(config.sweep_images, gt, s, gm, "steps") for s in config.steps_sweep]
    runs += [
        (config.sweep_images, gt, n_steps, float(m), "guidance_meta") for m in config.guidance_meta_sweep
    ]
    records: list[dict[str, Any]] = []
    images: list[np.ndarray] = []

    def generate(
        batch: list[dict[str, Any]], steps: int, guidance: float, meta_guidance: float, size: int | None
    ) -> None:
        """One batch of records (prompt, label, metadata, seed, ...) through the model, kept with the settings."""
        out = pipe(
            prompt=[r["prompt"] for r in batch],
            metadata=[Metadata.from_dict(r["metadata"]) for r in batch],
            n=1,
            num_inference_steps=steps,
            guidance_text=guidance,
            guidance_meta=meta_guidance,
            seed=[r["seed"] for r in batch],
            output_type="np",
            progress=False,
            **({"height": size, "width": size} if size else {}),
        )
        for j, record in enumerate(batch):
            images.append((np.clip(out.images[j], 0, 1) * 255).round().astype(np.uint8))  # (H, W, 3)
            settings = {"guidance_scale": guidance, "guidance_meta": meta_guidance, "steps": steps}
            records.append({"path": f"img_{len(records):05d}.png", **record, **settings})

    for count, guidance, steps, guidance_meta, swept in runs:
        for start in range(0, count, config.batch_size):
            idx = list(range(start, min(count, start + config.batch_size)))
            classes = [EUROSAT_CLASSES[i % len(EUROSAT_CLASSES)] for i in idx]
            gsds = [config.gsd_choices[(i // len(EUROSAT_CLASSES)) % len(config.gsd_choices)] for i in idx]
            batch = [
                {
                    "prompt": class_prompt(c),
                    "label": c,
                    "metadata": Metadata(gsd_m=g).to_dict(),
                    "seed": config.seed + i,
                    "sweep": swept,  # None: the main set; else the swept setting
                }
                for i, c, g in zip(idx, classes, gsds, strict=True)
            ]
            generate(batch, steps, guidance, guidance_meta, None)
    for prompt_set in config.prompt_sets:  # each at its own GSD and size, with the main set's settings
        try:
            wanted = [{**r, "seed": config.seed + i} for i, r in enumerate(prompt_set_records(prompt_set))]
        except (
            RsgenError
        ) as e:  # e.g. the real data of a caption set is not on this machine: the report says so
            log.warning("prompt set %s skipped: %s", prompt_set.name, e)
            continue
        for start in range(0, len(wanted), config.batch_size):
            generate(wanted[start : start + config.batch_size], n_steps, gt, gm, prompt_set.size)
    return write_generated_set(out_folder, images, records)


def _sweep_groups(gen: GeneratedSet, key: str) -> dict[float, list[int]] | None:
    """Indexes per value of a swept setting (the first ``n`` of each, ``n`` the smallest group: FID's bias
    depends on the count, and the first images of every group share prompts, GSDs and seeds); None when the
    setting takes fewer than two values."""
    groups = {k: v for k, v in gen.group_by(key).items() if k is not None}
    if len(groups) < 2:
        return None
    n = min(len(g) for g in groups.values())
    return {float(x): groups[x][:n] for x in sorted(groups, key=float)}


def _sweeps(
    gen: GeneratedSet, gen_feats: Any, ref_feats: Any, keys: tuple[str, ...], suffix: str
) -> list[dict]:
    """FID per value of each sweep key (guidance scale, steps, metadata guidance) that takes more than one
    value."""
    out = []
    for key in keys:
        groups = _sweep_groups(gen, key)
        if groups is None:
            continue
        n = len(next(iter(groups.values())))
        ys = [
            frechet_distance(ref_feats, gen_feats[idx]) if n > 1 else float("nan") for idx in groups.values()
        ]
        out.append({"key": key, "metric": f"FID{suffix}", "x": list(groups), "n": [n] * len(groups), "y": ys})
    return out


def _sweep_faithfulness(gen: GeneratedSet, sweeps: list[dict], judge: Any, config: EvaluateConfig) -> None:
    """Add class accuracy and GSD error (mean |log2(read / asked)|, octaves) per swept value to each sweep,
    on the same images as its FID: what a setting trades between realism, text and metadata. The GSD is read
    with the metadata section's ``gsd_m`` predictor spec."""
    from rsgen.eval.text_faithfulness import judged_faithfulness, requested_classes

    gsd = next(spec for spec in _metadata_predictors(config) if spec.field == "gsd_m")
    try:
        gsd_model = gsd.load()
    except RsgenError:
        gsd_model = None
    for sweep in sweeps:
        groups = _sweep_groups(gen, sweep["key"]) or {}
        accuracy, gsd_error = [], []
        for idx in groups.values():
            sub = gen.subset(idx)
            text = judged_faithfulness(judge, sub.images, requested_classes(sub.samples, judge.classes))
            accuracy.append(text.accuracy)
            asked = [(i, gsd.requested(s)) for i, s in enumerate(sub.samples)]
            asked = [(i, g) for i, g in asked if g is not None]
            if gsd_model is None or not asked:
                gsd_error.append(float("nan"))
                continue
            read = gsd.predict(gsd_model, sub.images[[i for i, _ in asked]])
            gsd_error.append(float(np.mean(gsd.error(read, np.array([g for _, g in asked])))))
        sweep["class_accuracy"], sweep["gsd_error"] = accuracy, gsd_error


@dataclass
class MetadataPredictorSpec:
    """How to score one metadata field: which value each sample asked for, and the predictor's functions."""

    field: str
    requested: Callable[[Any], float | None]  # GeneratedSample -> requested value or None
    load: Callable[[], Any]
    predict: Callable[[Any, np.ndarray], np.ndarray]
    heldout: Callable[[int], tuple[np.ndarray, np.ndarray]]
    error: Callable[[np.ndarray, np.ndarray], np.ndarray]
    score: Callable[..., Any]
    log_scale: bool


def _metadata_predictors(config: EvaluateConfig) -> list[MetadataPredictorSpec]:
    from rsgen.eval import gsd_predictor as gsdp
    from rsgen.eval import year_predictor as yearp

    return [
        MetadataPredictorSpec(
            "gsd_m",
            lambda s: s.effective_gsd(config.image_size),
            lambda: gsdp.load_gsd_predictor(config.gsd_predictor),
            gsdp.predict_gsd,
            gsdp.real_heldout_set,
            gsdp.log2_errors,
            gsdp.gsd_faithfulness,
            True,
        ),
        MetadataPredictorSpec(
            "year",
            lambda s: s.metadata.date.year if s.metadata.date is not None else None,
            lambda: yearp.load_year_predictor(config.year_predictor),
            yearp.predict_year,
            yearp.real_heldout_set,
            yearp.year_errors,
            yearp.year_faithfulness,
            False,
        ),
    ]


def _metadata_section(
    spec: MetadataPredictorSpec, gen: GeneratedSet, config: EvaluateConfig, report: dict, out: Path
) -> None:
    """Predict ``spec.field`` on the generated images that asked for it; score vs real and shuffled."""
    from rsgen.eval.report import plot_predicted_vs_requested

    idx = [i for i, s in enumerate(gen.samples) if spec.requested(s) is not None]
    if not idx:
        report["not_measured"].append(f"{spec.field} faithfulness: no sample has a requested {spec.field}")
        return
    try:
        model = spec.load()
    except RsgenError as e:
        report["not_measured"].append(f"{spec.field} faithfulness: {e}")
        return
    requested = np.asarray([spec.requested(gen.samples[i]) for i in idx], dtype=np.float64)
    predicted = spec.predict(model, gen.images[idx])
    real_err: float | None = None
    real_pairs: tuple[np.ndarray, np.ndarray] | None = None
    ceiling_pairs: tuple[np.ndarray, np.ndarray] | None = None
    try:
        real_x, real_y = spec.heldout(config.metadata_real_images)
        real_pairs = (spec.predict(model, real_x), real_y)
        real_err = float(spec.error(*real_pairs).mean())
        if config.vae:  # the same real images after the model's VAE round trip: the decoder's ceiling
            from rsgen.eval.autoencoder import reconstruct
            from rsgen.models.vae import load_vae

            ceiling_pairs = (spec.predict(model, reconstruct(load_vae(config.vae), real_x)), real_y)
    except RsgenError as e:
        log.warning("no real held-out set for %s: %s", spec.field, e)
    report["metadata_faithfulness"].append(
        spec.score(
            predicted, requested, real_err, config.seed, real_pairs=real_pairs, ceiling_pairs=ceiling_pairs
        ).to_dict()
    )
    name = f"{spec.field}_predicted_vs_requested.png"
    plot_predicted_vs_requested(requested, predicted, spec.field, spec.log_scale, out / name)
    report["plots"].append(name)


def _clip_section(gen: GeneratedSet, config: EvaluateConfig, report: dict) -> None:
    """CLIP_RS (offline RS-CLIP) and, with a local checkpoint, CLIP, each beside its two references."""
    from rsgen.eval.clip_score import (
        ClipScoreResult,
        RSClip,
        eurosat_caption_pairs,
        local_clip_score,
        rs_clip_scores,
    )

    idx = [i for i, s in enumerate(gen.samples) if s.prompt]
    if not idx:
        report["not_measured"].append("CLIP score: no sample has a prompt")
        return
    images, prompts = gen.images[idx], [gen.samples[i].prompt for i in idx]
    report["clip"] = []
    try:
        clip = RSClip.load(config.rs_clip, config.feature_net)
    except RsgenError as e:
        clip = None
        report["not_measured"].append(f"CLIP_RS: {e}")
    if clip is None and not config.clip_model:
        report["not_measured"].append("CLIP score with a standard CLIP: no local checkpoint given (--clip)")
        return
    try:
        real = eurosat_caption_pairs("val", config.clip_real_images)
    except RsgenError as e:
        log.warning("no real captioned reference for CLIP scores: %s", e)
        real = None
    if clip is not None:
        report["clip"].append(rs_clip_scores(clip, images, prompts, real).to_dict())
    if config.clip_model:
        rng = np.random.default_rng(0)
        shuffled = [prompts[i] for i in rng.permutation(len(prompts))]
        report["clip"].append(
            ClipScoreResult(
                "CLIP",
                local_clip_score(images, prompts, config.clip_model),
                local_clip_score(images, shuffled, config.clip_model),
                local_clip_score(real[0], real[1], config.clip_model) if real is not None else None,
                len(prompts),
            ).to_dict()
        )
    else:
        report["not_measured"].append("CLIP score with a standard CLIP: no local checkpoint given (--clip)")


def _control_section(gen: GeneratedSet, config: EvaluateConfig, report: dict) -> None:
    """Control faithfulness of records naming their ControlNet conditions, beside shuffled / real references."""
    from rsgen.eval.control_faithfulness import control_section

    results, missing = control_section(gen, config.segmenters, config.control_tolerance_px, config.seed)
    if results:
        report["control_faithfulness"] = results
    report["not_measured"] += missing


def _captioner_section(gen: GeneratedSet, config: EvaluateConfig, report: dict) -> None:
    """Captioner as judge: captions of the generated images scored against their prompts, beside shuffled
    prompts and real images with their own captions."""
    from rsgen.eval.captioner import default_captioner, judge_generated

    idx = [i for i, s in enumerate(gen.samples) if s.prompt]
    path = None if config.captioner == "off" else (config.captioner or default_captioner())
    why = None
    if config.captioner == "off":
        why = "switched off (captioner: off)"
    elif path is None:
        why = "no trained captioner given (captioner: path)"
    elif not idx:
        why = "no sample has a prompt"
    if why is not None:
        report["not_measured"].append(f"captioner as judge: {why}")
        return
    try:
        prompts = [gen.samples[i].prompt for i in idx]
        report["caption_judge"] = judge_generated(
            path, gen.images[idx], prompts, config.captioner_real_images, seed=config.seed
        )
    except RsgenError as e:
        report["not_measured"].append(f"captioner as judge: {e}")


def _prompt_set_sections(
    everything: GeneratedSet, config: EvaluateConfig, rs: RSFeatureExtractor, report: dict, out: Path
) -> None:
    """One section per prompt set in the generated folder: class accuracy by the text-faithfulness judge (labels
    in its classes), FID_RS against the set's own real images, CLIP_RS with own / shuffled prompts and of the
    real images with their captions, and a sample grid."""
    from rsgen.eval.clip_score import RSClip
    from rsgen.eval.prompt_sets import prompt_set_section
    from rsgen.eval.report import sample_grid
    from rsgen.io import write_png

    groups = everything.prompt_sets()
    for wanted in config.prompt_sets:
        if wanted.name not in groups:
            report["not_measured"].append(f"prompt set {wanted.name}: no generated image of it in the folder")
    if not groups:
        return
    try:
        clip = RSClip.load(config.rs_clip, config.feature_net)
    except RsgenError as e:
        clip = None
        report["not_measured"].append(f"CLIP_RS of prompt sets: {e}")
    report["prompt_sets"] = []
    for name, idx in groups.items():
        sub = everything.subset(idx)
        judge = _headline_judge(config, rs, [sample.label for sample in sub.samples])
        section = prompt_set_section(
            name, sub, config.image_size, rs, judge, clip, _native_images(sub, config)
        )
        grid = f"samples_{name}.png"
        write_png(out / grid, sample_grid(sub.images))
        report["plots"].append(grid)
        report["prompt_sets"].append(section)


def _native_images(gen: GeneratedSet, config: EvaluateConfig) -> np.ndarray | None:
    """The images at the size they were generated (the largest among them) when that exceeds the evaluation
    size, so that a judge of 256 px aerial classes does not read 64 px thumbnails; None otherwise."""
    from rsgen.eval.reference_data import load_image_rgb, resize_rgb

    native = max((s.native_size[0] for s in gen.samples if s.native_size), default=config.image_size)
    if native <= config.image_size:
        return None
    return np.stack([resize_rgb(load_image_rgb(s.path), native) for s in gen.samples])  # (N, S, S, 3)


def _headline_judge(config: EvaluateConfig, rs: RSFeatureExtractor, labels: list[str | None]) -> Any:
    """The judge of text faithfulness for images asked for ``labels``: the class judge whose label set names
    the most of them; without class judges, the EuroSAT second opinion (robust classifier, else feature net)."""
    from rsgen.eval.class_judges import DEFAULT_CLASS_JUDGES_DIR, WEIGHTS_NAME, judge_for_labels

    if config.class_judges != "off":
        path = Path(config.class_judges) if config.class_judges else DEFAULT_CLASS_JUDGES_DIR
        if config.class_judges or (path / WEIGHTS_NAME).is_file():
            judge = judge_for_labels(labels, _class_judges_at(str(path.resolve())))
            if judge is not None:
                return judge
    return _second_opinions(config, rs)[0]


@functools.lru_cache(maxsize=4)
def _class_judges_at(path: str) -> Any:
    """The class-judge network at ``path``, loaded once per process (every section asks for it)."""
    from rsgen.eval.class_judges import load_class_judges

    return load_class_judges(path)


def _second_opinions(config: EvaluateConfig, rs: RSFeatureExtractor) -> list[Any]:
    """EuroSAT classifiers besides the class judges: the degradation-robust classifier (when given or shipped),
    then the plain feature network, which also scores the decoder's sharpness."""
    from rsgen.eval.text_faithfulness import NetworkJudge

    judges = []
    robust = _text_classifier(config)
    if robust is not None:
        judges.append(NetworkJudge(*robust))
    from rsgen.eval.feature_net import read_training_summary

    plain_acc = read_training_summary(config.feature_net).get("val_accuracy")
    judges.append(NetworkJudge(rs.net, rs.description, plain_acc))
    return judges


def _text_classifier(config: EvaluateConfig) -> tuple[Any, str, float | None] | None:
    """(model, description, real val accuracy) of the degradation-robust EuroSAT classifier, or None when it
    is neither given nor shipped."""
    from rsgen.eval.feature_net import DEFAULT_TEXT_CLASSIFIER_DIR, load_feature_net, read_training_summary

    path = Path(config.text_classifier) if config.text_classifier else DEFAULT_TEXT_CLASSIFIER_DIR
    if not (path / "config.json").is_file():
        if config.text_classifier:
            raise RsgenError(f"text_classifier={path}: no RS classifier there (config.json + safetensors)")
        return None
    summary = read_training_summary(path)
    acc = summary.get("val_accuracy")
    degraded = summary.get("val_accuracy_degraded") or {}
    blur = degraded.get("blur_sigma_0.8")
    text = (
        f"degradation-robust RS classifier ({path.name}, EuroSAT val accuracy {acc:.3f}" if acc else path.name
    )
    text += f", {blur:.3f} at blur sigma 0.8)" if blur is not None else ")"
    return load_feature_net(path), text, acc


def _accuracy_only(text: Any) -> dict:
    return {"accuracy": text.accuracy, "real_accuracy": text.real_accuracy, "per_class": text.per_class}


def evaluate_folder(folder: str | Path, out_dir: str | Path, config: EvaluateConfig | None = None) -> dict:
    """Evaluate a folder of generated images against the reference set; write report.md/json + plots."""
    from rsgen.eval.feature_net import load_feature_net, read_training_summary
    from rsgen.eval.reference_data import load_reference
    from rsgen.eval.report import SWEEP_COLUMNS, plot_metric_curve, plot_per_class, sample_grid, write_report
    from rsgen.eval.text_faithfulness import judged_faithfulness, requested_classes

    config = config or EvaluateConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    everything = load_generated_set(folder, size=config.image_size, max_images=config.max_generated)
    gen = everything.main()  # headline metrics: one sampling setting, sweep images only in the sweep plots
    ref = load_reference(config.reference, size=config.image_size, max_images=config.max_reference)
    net = load_feature_net(config.feature_net)
    net_summary = read_training_summary(config.feature_net)
    real_acc = net_summary.get("val_accuracy")
    acc_text = f", EuroSAT val accuracy {real_acc:.3f}" if real_acc is not None else ""
    rs = RSFeatureExtractor(net, f"RS feature network ({config.feature_net or 'shipped'}{acc_text})")
    report: dict[str, Any] = {
        "setup": {
            "generated images": f"{len(gen)} from {gen.root} ({gen.skipped} skipped"
            + (f"; {len(everything) - len(gen)} more in sweeps)" if len(everything) > len(gen) else ")"),
            "reference set": f"{ref.source} ({len(ref)} images)",
            "image size": config.image_size,
            "feature network": rs.description,
        },
        "distribution": [],
        "warnings": [],
        "not_measured": [],
        "plots": [],
    }
    all_f, all_l = extract_features(rs, everything.images, progress=True)
    main_idx = everything.main_index()  # the rows of `gen`
    gen_f, gen_l = all_f[main_idx], all_l[main_idx]
    ref_f, ref_l = extract_features(rs, ref.images, progress=True)
    report["distribution"].append(
        distribution_metrics((gen_f, gen_l), (ref_f, ref_l), rs.description, rs.suffix, ref.source).to_dict()
    )
    report["sweeps"] = _sweeps(everything, all_f, ref_f, config.sweep_keys, rs.suffix)
    for sweep in report["sweeps"]:
        name = f"fid_rs_vs_{sweep['key']}.png"
        plot_metric_curve(sweep["x"], sweep["y"], sweep["key"], sweep["metric"], out / name)
        report["plots"].append(name)
    if config.inception_weights:
        inc = StandardInceptionExtractor(config.inception_weights)
        report["distribution"].append(
            distribution_metrics(
                extract_features(inc, gen.images, batch_size=32, progress=True),
                extract_features(inc, ref.images, batch_size=32, progress=True),
                inc.description,
                inc.suffix,
                ref.source,
            ).to_dict()
        )
    else:
        report["not_measured"].append(
            "standard FID/KID/IS: no InceptionV3 weights given (--inception-weights)"
        )

    requested = requested_classes(gen.samples, tuple(net.config.class_names))
    if any(r is not None for r in requested):
        judge = _headline_judge(config, rs, requested)
        text = judged_faithfulness(judge, gen.images, requested)
        real_acc = judge.real_accuracy
        report["text_faithfulness"] = {**text.to_dict(), "classifier": judge.description}
        report["text_faithfulness_second_opinions"] = [
            {
                "classifier": other.description,
                **_accuracy_only(judged_faithfulness(other, gen.images, requested)),
            }
            for other in _second_opinions(config, rs)
            if other.description != judge.description
        ]
        _sweep_faithfulness(everything, report["sweeps"], judge, config)
        for sweep in report["sweeps"]:
            for metric, label in SWEEP_COLUMNS:
                if any(np.isfinite(sweep.get(metric, []))):
                    name = f"{metric}_vs_{sweep['key']}.png"
                    plot_metric_curve(sweep["x"], sweep[metric], sweep["key"], label, out / name)
                    report["plots"].append(name)
        plot_per_class(text.per_class, real_acc, text.chance, out / "per_class_accuracy.png")
        report["plots"].append("per_class_accuracy.png")
    else:
        report["not_measured"].append("text faithfulness: no sample has a class label or a class prompt")

    report["metadata_faithfulness"] = []
    for spec in _metadata_predictors(config):
        _metadata_section(spec, gen, config, report, out)
    _clip_section(gen, config, report)
    _control_section(gen, config, report)
    _captioner_section(gen, config, report)
    _prompt_set_sections(everything, config, rs, report, out)
    report["setup"]["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(out, report, sample_grid(gen.images))
    log.info("report written to %s", out / "report.md")
    return report
