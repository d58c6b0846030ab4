"""Prompt sets people write: plain-language prompts (``configs/eval/prompts/<name>.yaml``) and the human
captions of held-out real images (UCM val, AID-RSICD held out), each prompt with the class label a judge scores
it by, and each set with an explicit GSD and image size. ``rsgen evaluate`` generates every configured set
(:func:`rsgen.eval.evaluate.generate_class_prompt_set`) and reports each in its own section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rsgen.errors import ConfigError

PROMPTS_DIR = "prompts"  # under configs/eval/


@dataclass
class PromptSetConfig:
    """One prompt set. Exactly one of ``prompts`` (a YAML file of plain prompts per class label: a name in
    ``configs/eval/prompts/`` or a path) and ``curation`` (``"<curation config>:<source>"``: the human captions
    of that source's records in ``split``, e.g. ``curated:ucm_val``, read with the same reader, held-out rule
    and cleaning as curation). ``gsd_m``: the GSD every image is asked for (null: none asked, e.g. AID, whose
    GSD is unknown). ``size``: generated image side in pixels."""

    name: str
    prompts: str | None = None
    curation: str | None = None
    split: str = "val"
    gsd_m: float | None = None
    size: int = 64
    captions_per_image: int = 5
    max_prompts: int | None = None
    images_per_prompt: int = 1  # each prompt drawn this many times (other seeds): the whole list, then again

    def __post_init__(self) -> None:
        if (self.prompts is None) == (self.curation is None):
            raise ConfigError(
                f"prompt set {self.name}: give exactly one of prompts (a YAML file) and curation"
            )
        if self.size < 8:
            raise ConfigError(f"prompt set {self.name}: size {self.size} px is too small")
        if self.gsd_m is not None and not self.gsd_m > 0:
            raise ConfigError(f"prompt set {self.name}: gsd_m {self.gsd_m} must be positive (or null)")


@dataclass
class PromptItem:
    """One prompt, the class it asks for, and the real image it describes (human-caption sets)."""

    prompt: str
    label: str | None
    real_image: str | None = None


def _interleave(groups: list[list[PromptItem]]) -> list[PromptItem]:
    """The first item of every group, then the second, ...: a cap on the count keeps every class / image."""
    out: list[PromptItem] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def read_prompt_file(name_or_path: str) -> list[list[PromptItem]]:
    """Prompts per class of a YAML file ``{prompts: {Label: [prompt, ...]}}``."""
    from rsgen.config import resolve_config_path

    path = resolve_config_path(name_or_path, f"eval/{PROMPTS_DIR}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict) or not all(isinstance(v, list) for v in prompts.values()):
        raise ConfigError(f"{path}: expected 'prompts:' mapping each class label to a list of prompts")
    return [[PromptItem(str(p).strip(), str(label)) for p in items] for label, items in prompts.items()]


def curation_captions(spec: str, split: str, per_image: int) -> list[list[PromptItem]]:
    """Human captions (cleaned, as curation keeps them, without added metadata phrases) per image of one
    curation source's records in ``split`` (:func:`rsgen.data.curate_config.source_records`)."""
    from rsgen.data.captions import clean_captions
    from rsgen.data.curate_config import source_records

    config_name, sep, source = spec.rpartition(":")
    if not sep or not config_name or not source:
        raise ConfigError(
            f"prompt set curation {spec!r}: expected '<curation config>:<source>', e.g. curated:ucm_val"
        )
    groups = []
    for rec in source_records(config_name, source, split):
        captions = clean_captions(rec.get("captions") or [])[:per_image]
        if captions:
            groups.append([PromptItem(c, rec.get("label"), rec["path"]) for c in captions])
    return groups


def load_prompt_set(config: PromptSetConfig) -> list[PromptItem]:
    """The set's prompts: per class (plain prompts) or per image (captions) in turn, at most ``max_prompts``."""
    if config.prompts is not None:
        groups = read_prompt_file(config.prompts)
    else:
        groups = curation_captions(str(config.curation), config.split, config.captions_per_image)
    items = _interleave(groups)[: config.max_prompts]
    if not items:
        raise ConfigError(f"prompt set {config.name}: no prompts (split {config.split!r}?)")
    return items


def prompt_set_records(config: PromptSetConfig) -> list[dict[str, Any]]:
    """Generation records of a set: prompt, label, requested metadata, size, the real image, the set's name."""
    meta = {"gsd_m": config.gsd_m} if config.gsd_m is not None else {}
    if config.images_per_prompt < 1:
        raise ConfigError(f"prompt set {config.name}: images_per_prompt must be at least 1")
    items = load_prompt_set(config)
    return [
        {
            "prompt": item.prompt,
            "label": item.label,
            "metadata": meta,
            "prompt_set": config.name,
            "size": config.size,
            **({"real_image": str(Path(item.real_image).resolve())} if item.real_image else {}),
        }
        for _ in range(config.images_per_prompt)
        for item in items
    ][: config.max_prompts]  # max_prompts caps the images too (every prompt once before any twice)


def prompt_set_section(
    name: str,
    images: Any,  # GeneratedSet of this prompt set's images
    image_size: int,
    rs: Any,  # RSFeatureExtractor
    judge: Any,  # rsgen.eval.text_faithfulness.Judge
    clip: Any | None,  # RSClip or None
    judge_images: Any | None = None,  # (N, H, W, 3) at the files' own size for the judge; None: images.images
) -> dict[str, Any]:
    """The report section of one prompt set (see :func:`prompt_set_markdown`)."""
    import logging

    import numpy as np

    from rsgen.eval.clip_score import rs_clip_scores
    from rsgen.eval.distribution import distribution_metrics, extract_features
    from rsgen.eval.reference_data import load_image_rgb, resize_rgb
    from rsgen.eval.text_faithfulness import judged_faithfulness, normalise_label

    samples = images.samples
    class_names = judge.classes
    gsds = sorted({s.metadata.gsd_m for s in samples if s.metadata.gsd_m is not None})
    sizes = sorted({s.native_size[0] for s in samples if s.native_size})
    section: dict[str, Any] = {
        "name": name,
        "num_images": len(samples),
        "gsd_m": gsds,
        "size": sizes,
        "classes": len({s.label for s in samples if s.label}),
    }
    # Class accuracy: the set's own labels in the judge's classes (aliases of the caption vocabulary map, e.g.
    # UCM "freeway" to Highway); labels outside them are not scored (no guessing from prompt words).
    requested = [normalise_label(s.label, class_names) for s in samples]
    section["labels_not_judged"] = sorted(
        {str(s.label) for s, r in zip(samples, requested, strict=True) if r is None}
    )
    if any(r is not None for r in requested):
        text = judged_faithfulness(judge, images.images if judge_images is None else judge_images, requested)
        section["text_faithfulness"] = {**text.to_dict(), "classifier": judge.description}
    # The real images the prompts describe (human-caption sets), with the first caption of each.
    real_images, real_captions, seen = [], [], set()
    for s in samples:
        if s.real_image is None or s.real_image in seen:
            continue
        seen.add(s.real_image)
        try:
            real_images.append(resize_rgb(load_image_rgb(s.real_image), image_size))  # (S, S, 3)
            real_captions.append(s.prompt or "")
        except Exception as e:  # an unreadable real image is left out, not fatal
            logging.getLogger(__name__).warning(
                "prompt set %s: skipping real image %s: %s", name, s.real_image, e
            )
    section["num_real"] = len(real_images)
    if len(real_images) > 1 and len(samples) > 1:
        real = np.stack(real_images)
        section["distribution"] = distribution_metrics(
            extract_features(rs, images.images),
            extract_features(rs, real),
            rs.description,
            rs.suffix,
            f"{name} real images",
        ).to_dict()
    prompts = [s.prompt or "" for s in samples]
    if clip is not None and any(prompts):
        pairs = (np.stack(real_images), real_captions) if real_images else None
        section["clip"] = rs_clip_scores(clip, images.images, prompts, pairs).to_dict()
    section["markdown"] = prompt_set_markdown(section)
    return section


def prompt_set_markdown(section: dict[str, Any]) -> str:
    """One prompt set's report section: what was asked, class accuracy per class, FID_RS and CLIP_RS."""

    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    gsd = ", ".join(f"{g:g} m" for g in section["gsd_m"]) or "none asked"
    size = ", ".join(f"{s} px" for s in section["size"]) or "-"
    lines = [
        f"## Prompt set: {section['name']}",
        "",
        f"{section['num_images']} images generated from the set's prompts ({section['classes']} classes; GSD "
        f"{gsd}; generated at {size}); {section['num_real']} real images they describe.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    text = section.get("text_faithfulness")
    if text:
        lines.append(
            f"| class accuracy ({text['num_scored']} judged) | {f(text['accuracy'])} "
            f"(the judge on real held-out images {f(text['real_accuracy'])}, chance {f(text['chance'])}) |"
        )
    dist = section.get("distribution")
    if dist:
        lines += [
            f"| {k} vs its real images | {f(v)} |"
            for k, v in dist["metrics"].items()
            if k.startswith(("FID", "KID"))
        ]
    clip = section.get("clip")
    if clip:
        lines.append(
            f"| {clip['name']}: own prompts / shuffled / real images with their captions | {f(clip['generated'])} / "
            f"{f(clip['generated_shuffled'])} / {f(clip['real_own_captions'])} |"
        )
    lines.append("")
    if text:
        lines += [
            f"Judge: {text['classifier']}. Per class: "
            + ", ".join(f"{c} {f(a)} ({text['count_per_class'][c]})" for c, a in text["per_class"].items())
            + ".",
            "",
        ]
    if section["labels_not_judged"]:
        lines += [
            f"Labels outside the judge's classes (not scored): {', '.join(section['labels_not_judged'])}.",
            "",
        ]
    return "\n".join(lines)
