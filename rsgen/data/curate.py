"""Curation: sources -> checked, de-duplicated, captioned, split records -> manifest (+ shards, report).

Every record is decoded and checked (size, channels, dtype, blank, nodata) in a process pool; duplicates are
found in the main process in a fixed order, so the result does not depend on the number of workers. Each
result is appended to ``progress.jsonl`` as soon as it is known: a killed run re-reads it and continues where
it stopped. Splits are a hash of each record's group key, so re-running or adding files never reshuffles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rsgen.data.curate_config import ChecksConfig, CurateConfig, make_reader
from rsgen.data.dedupe import DuplicateIndex, exact_hash, grey_std, phash, thumbnail
from rsgen.data.images import SampleError, load_image
from rsgen.data.manifest import write_manifest
from rsgen.data.readers import finalize_record
from rsgen.data.splits import assign_split
from rsgen.errors import ConfigError, DataError, MetadataError

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.jsonl"
STATE_FILE = "curation_state.json"


def check_record(record: dict[str, Any], checks: ChecksConfig, low_texture_std: float) -> dict[str, Any]:
    """Decode and check one record (runs in a worker). Returns a result: ``status`` kept/dropped, ``reason``,
    the finished record, and the hashes used for de-duplication."""
    base = {"id": record["id"], "source": record.get("source"), "label": record.get("label")}
    try:
        if "_drop" in record:
            raise SampleError(record["_drop"], record.get("_drop_message", ""))
        loaded = load_image(
            record["path"], record.get("window"), record.get("bands"), float(record.get("gsd_factor") or 1.0)
        )
        h, w = loaded.array.shape[:2]
        if min(h, w) < checks.min_size:
            raise SampleError("too_small", f"{record['id']}: {w}x{h} px is below min_size {checks.min_size}")
        if loaded.valid_fraction < checks.min_valid_fraction:
            raise SampleError(
                "mostly_nodata", f"{record['id']}: only {loaded.valid_fraction:.0%} valid pixels"
            )
        std = grey_std(loaded.array[loaded.valid][:, None, :]) if loaded.valid.any() else 0.0
        if std < checks.blank_std:
            raise SampleError("blank", f"{record['id']}: blank image (grey std {std:.3f})")
        rec = finalize_record(record, loaded)
    except SampleError as e:
        return {**base, "status": "dropped", "reason": e.reason, "message": str(e)}
    except (DataError, MetadataError) as e:
        return {**base, "status": "dropped", "reason": "bad_metadata", "message": str(e)}
    except Exception as e:  # one bad file never stops a run; the reason names the exception
        return {**base, "status": "dropped", "reason": "error", "message": f"{type(e).__name__}: {e}"}
    return {
        **base,
        "status": "kept",
        "record": rec,
        "xhash": exact_hash(loaded.array),
        "phash": f"{phash(loaded.array):016x}" if std >= low_texture_std else None,
        "thumb": thumbnail(loaded.array).hex(),
        "std": round(std, 3),
        "dtype": loaded.source_dtype,
        "channels": loaded.source_channels,
    }


def _check_star(args: tuple[dict[str, Any], ChecksConfig, float]) -> dict[str, Any]:
    return check_record(*args)


@dataclass
class CurationResult:
    """What a run produced: paths, kept / dropped counts, seconds."""

    out_dir: Path
    manifest: Path
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)
    processed_now: int = 0
    resumed: int = 0
    seconds: float = 0.0
    shards: list[Path] = field(default_factory=list)
    report: Path | None = None

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items()))
        return (
            f"kept {self.kept} ({splits}); dropped {sum(self.dropped.values())} ({drops}); "
            f"{self.processed_now} checked now, {self.resumed} from a previous run; {self.seconds:.1f} s"
        )


def _settings_hash(config: CurateConfig) -> str:
    """Hash of the settings that change a record's result (not the source list: sources may be added)."""
    relevant = {
        "checks": asdict(config.checks),
        "dedupe": asdict(config.dedupe),
        "splits": asdict(config.splits),
        "caption_seed": config.caption_seed,
    }
    return hashlib.blake2b(json.dumps(relevant, sort_keys=True).encode(), digest_size=8).hexdigest()


def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with path.open() as f:
        for line in f:
            try:
                res = json.loads(line)
            except json.JSONDecodeError:  # the line a kill cut short
                continue
            done[res["id"]] = res
    return done


class _Progress:
    """Append-only result log, flushed every ``every`` lines."""

    def __init__(self, path: Path, every: int = 500) -> None:
        self.f = path.open("a")
        self.every = every
        self.n = 0

    def write(self, res: dict[str, Any]) -> None:
        self.f.write(json.dumps(res) + "\n")
        self.n += 1
        if self.n % self.every == 0:
            self.f.flush()

    def close(self) -> None:
        self.f.close()


def iter_config_records(config: CurateConfig) -> Iterator[dict[str, Any]]:
    """Every record of every source, in config order; source-level errors name the source."""
    seen: set[str] = set()
    for src in config.sources:
        reader = make_reader(src, config.caption_seed)
        for rec in reader.records():
            if rec["id"] in seen:
                raise DataError(f"source {src.name}: record id {rec['id']} occurs twice")
            seen.add(rec["id"])
            yield rec


def curate(
    config: CurateConfig,
    out_dir: str | Path,
    *,
    restart: bool = False,
    workers: int | None = None,
    show_progress: bool = True,
) -> CurationResult:
    """Run curation into ``out_dir`` (``manifest.jsonl``, ``progress.jsonl``, ``report/``, ``shards/``)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not config.sources:
        raise ConfigError("curation config has no sources")
    progress_path, state_path = out / PROGRESS_FILE, out / STATE_FILE
    settings = _settings_hash(config)
    if state_path.is_file() and not restart:
        old = json.loads(state_path.read_text()).get("settings")
        if old != settings:
            raise ConfigError(
                f"{out}: an earlier curation there used other checks/dedupe/split settings; "
                "pass --restart to start over or choose another --out"
            )
    if restart:
        progress_path.unlink(missing_ok=True)
    from rsgen.io import atomic_write_json

    atomic_write_json(state_path, {"settings": settings})
    done = _read_progress(progress_path)
    dd = config.dedupe
    index = DuplicateIndex(dd.max_distance if dd.near else -1, dd.max_thumbnail_difference)
    for res in done.values():  # rebuild the duplicate index in the order results were found
        if res["status"] == "kept" and float(res["record"].get("gsd_factor") or 1.0) == 1.0:
            _index_add(index, res, dd.exact)

    records = list(iter_config_records(config))
    todo = [r for r in records if r["id"] not in done]
    result = CurationResult(out, out / "manifest.jsonl", resumed=len(records) - len(todo))
    log.info("curation: %d records, %d already done, %d to check", len(records), result.resumed, len(todo))
    n_workers = max(1, workers if workers is not None else config.workers)
    log_file = _Progress(progress_path)
    jobs = ((r, config.checks, dd.low_texture_std) for r in todo)
    try:
        if n_workers > 1 and len(todo) > 200:
            ctx = multiprocessing.get_context("fork" if hasattr(multiprocessing, "get_context") else None)
            with ctx.Pool(n_workers) as pool:
                results = pool.imap(_check_star, jobs, chunksize=64)
                _consume(results, todo, index, config, log_file, done, show_progress)
        else:
            _consume(map(_check_star, jobs), todo, index, config, log_file, done, show_progress)
    finally:
        log_file.close()
    result.processed_now = len(todo)

    kept_records = []
    for rec in records:
        res = done[rec["id"]]
        per_source = result.by_source.setdefault(rec["source"], Counter())
        if res["status"] == "kept":
            kept_records.append(res["record"])
            result.splits[res["record"]["split"]] += 1
            per_source["kept"] += 1
        else:
            result.dropped[res["reason"]] += 1
            per_source[res["reason"]] += 1
    result.kept = len(kept_records)
    fmt = config.manifest_format
    if fmt in ("jsonl", "both"):
        write_manifest(kept_records, out / "manifest.jsonl")
    if fmt in ("parquet", "both"):
        write_manifest(kept_records, out / "manifest.parquet")
        if fmt == "parquet":
            result.manifest = out / "manifest.parquet"
    if config.shards.enabled:
        from rsgen.data.shards import write_shards

        result.shards = write_shards(
            kept_records,
            out / "shards",
            root=out,
            max_samples=config.shards.max_samples,
            image_format=config.shards.image_format,
        )
    result.seconds = time.perf_counter() - t0
    if config.report:
        from rsgen.data.report import write_report

        result.report = write_report(out / "report", kept_records, [done[r["id"]] for r in records], result)
    log.info("curation: %s", result.summary())
    return result


def _index_add(index: DuplicateIndex, res: dict[str, Any], exact: bool = True) -> None:
    rec = res["record"]
    ph = int(res["phash"], 16) if res.get("phash") else None
    index.add(
        rec["id"],
        res["xhash"] if exact else f"-{rec['id']}",
        ph,
        rec.get("group", rec["id"]),
        rec.get("metadata", {}).get("date"),
        bytes.fromhex(res.get("thumb") or ""),
    )


def _consume(
    results: Iterator[dict[str, Any]],
    todo: list[dict[str, Any]],
    index: DuplicateIndex,
    config: CurateConfig,
    log_file: _Progress,
    done: dict[str, dict[str, Any]],
    show_progress: bool,
) -> None:
    """Dedupe and split each checked record in order, logging every result."""
    sp = config.splits
    # Groups whose native image was a duplicate: their GSD copies go with it. Only native-GSD images are
    # compared (a pHash ignores scale, so a copy would match other images' copies, not duplicates).
    dup_groups = {r["group"]: (r["reason"], r["message"]) for r in done.values() if r.get("group")}
    for res in tqdm(
        results, total=len(todo), desc="curate", unit="img", disable=not show_progress, mininterval=2
    ):
        if res["status"] == "kept":
            rec = res["record"]
            ph = int(res["phash"], 16) if res.get("phash") else None
            thumb = bytes.fromhex(res.get("thumb") or "")
            group = rec.get("group", rec["id"])
            date = rec.get("metadata", {}).get("date")
            native = float(rec.get("gsd_factor") or 1.0) == 1.0
            if group in dup_groups:
                hit = dup_groups[group]
            elif native:
                found = index.find(res["xhash"] if config.dedupe.exact else "", ph, group, date, thumb)
                hit = (found[0], f"duplicate of {found[1]}") if found else None
            else:
                hit = None
            if hit is not None:
                res = {k: res[k] for k in ("id", "source", "label")}
                res.update(status="dropped", reason=hit[0], message=hit[1], group=group)
                dup_groups[group] = hit
            else:
                if native:
                    _index_add(index, res, config.dedupe.exact)
                rec["split"] = rec.get("split") or assign_split(group, sp.val, sp.test, sp.salt)
                rec["phash"] = res.get("phash")
        done[res["id"]] = res
        log_file.write(res)
