"""Curation report: markdown plus PNG plots of what was kept and dropped and why, caption statistics, and the
class and metadata distributions of the kept records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.data.captions import caption_words


def caption_stats(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Caption count, words per caption (mean / median / max), vocabulary size, distinct captions, top words."""
    lengths: list[int] = []
    vocab: Counter[str] = Counter()
    distinct: set[str] = set()
    for r in records:
        for c in r.get("captions", []):
            words = caption_words(c)
            lengths.append(len(words))
            vocab.update(words)
            distinct.add(c.lower())
    arr = np.array(lengths or [0])
    return {
        "captions": len(lengths),
        "distinct_captions": len(distinct),
        "mean_words": float(arr.mean()),
        "median_words": float(np.median(arr)),
        "max_words": int(arr.max()),
        "vocabulary": len(vocab),
        "top_words": vocab.most_common(25),
        "lengths": lengths,
    }


def write_report(
    out_dir: str | Path, kept: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], result: Any
) -> Path:
    """Write ``report.md`` and plots into ``out_dir``; returns the markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rsgen.io import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter(
        r.get("reason", "kept") if r["status"] != "kept" else "kept" for r in results
    )
    stats = caption_stats(kept)
    labels = Counter(str(r.get("label")) for r in kept)
    gsds = [r["metadata"]["gsd_m"] for r in kept if r.get("metadata", {}).get("gsd_m")]
    years = [int(str(r["metadata"]["date"])[:4]) for r in kept if r.get("metadata", {}).get("date")]
    locs = [
        (r["metadata"]["lat"], r["metadata"]["lon"])
        for r in kept
        if r.get("metadata", {}).get("lat") is not None
    ]
    splits = Counter(r["split"] for r in kept)
    sources = Counter(str(r.get("caption_source", "unknown")) for r in kept)

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes[0, 0]
    names = [k for k, _ in reasons.most_common()]
    ax.barh(
        names, [reasons[k] for k in names], color=["tab:green" if k == "kept" else "tab:red" for k in names]
    )
    ax.set_xscale("log")
    ax.set_title("kept and dropped (by reason)")
    ax = axes[0, 1]
    ax.hist(stats["lengths"] or [0], bins=range(0, max(stats["lengths"] or [1]) + 2), color="tab:blue")
    ax.set_title(f"caption length (words); vocabulary {stats['vocabulary']}")
    ax = axes[0, 2]
    top = labels.most_common(20)
    ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1])
    ax.set_title("kept images per class")
    ax = axes[1, 0]
    if gsds:
        ax.hist(np.log10(gsds), bins=30, color="tab:orange")
    ax.set_xlabel("log10 GSD (m)")
    ax.set_title("GSD")
    ax = axes[1, 1]
    if years:
        ax.hist(years, bins=range(min(years), max(years) + 2), color="tab:purple")
    ax.set_title(f"acquisition year ({len(years)} with a date)")
    ax = axes[1, 2]
    if locs:
        ax.scatter([p[1] for p in locs], [p[0] for p in locs], s=4)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
    ax.set_title(f"image centres ({len(locs)} with a location)")
    fig.tight_layout()
    fig.savefig(out / "curation.png", dpi=80)
    plt.close(fig)

    lines = [
        "# Curation report",
        "",
        f"{result.summary()}",
        "",
        "## Kept and dropped, by source",
        "",
        "| source | kept | dropped (reason: count) |",
        "|---|---|---|",
    ]
    for src, c in result.by_source.items():
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()) if k != "kept") or "-"
        lines.append(f"| {src} | {c.get('kept', 0)} | {drops} |")
    lines += ["", "## Splits", "", "| split | records |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(splits.items())]
    lines += [
        "",
        "## Captions",
        "",
        f"- captions: {stats['captions']} ({stats['distinct_captions']} distinct)",
        "- records by caption source: "
        + (", ".join(f"{k} {v}" for k, v in sorted(sources.items())) or "-")
        + " (human: written by people, kept as written; written: from label and metadata)",
        f"- words per caption: mean {stats['mean_words']:.1f}, median {stats['median_words']:.0f}, "
        f"max {stats['max_words']}",
        f"- vocabulary: {stats['vocabulary']} words",
        f"- most frequent: {', '.join(f'{w} ({n})' for w, n in stats['top_words'])}",
        "",
        "## Classes",
        "",
        "| label | images |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in labels.most_common()]
    lines += ["", "## Metadata", ""]
    if gsds:
        lines.append(
            f"- GSD: {len(gsds)} images, {min(gsds):.3g} m to {max(gsds):.3g} m; "
            + ", ".join(f"{g} m: {n}" for g, n in sorted(Counter(_round_gsd(g) for g in gsds).items()))
        )
    lines.append(f"- dates: {len(years)} images" + (f", years {min(years)}-{max(years)}" if years else ""))
    lines.append(f"- locations: {len(locs)} images")
    lines += ["", "![curation plots](curation.png)", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _round_gsd(g: float) -> float:
    return round(g, max(0, 1 - int(math.floor(math.log10(g)))))
