"""Caption text: a writer that turns a class label and known metadata into varied natural captions, and the
cleaning applied to every human caption.

The vocabulary (``assets/captions/classes.yaml``) and sentence frames (``assets/captions/templates.yaml``)
follow the real UCM / Sydney / RSICD captions, so that generated captions read like the human ones a user
will type. Captions are deterministic given (seed, key): re-running curation writes the same text.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rsgen.errors import DataError
from rsgen.metadata import Metadata
from rsgen.paths import ASSETS_DIR

CAPTION_ASSETS = ASSETS_DIR / "captions"

# Misspellings that occur in the human caption sets, fixed when cleaning.
_SPELLING = {
    "surounded": "surrounded",
    "sorrounded": "surrounded",
    "parrallel": "parallel",
    "lugage": "luggage",
    "buidings": "buildings",
    "builidings": "buildings",
    "vegatation": "vegetation",
}
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def clean_caption(text: Any) -> str:
    """Normalise one caption: unicode NFKC, control characters removed, whitespace collapsed, no space before
    punctuation, known misspellings fixed, first letter upper case, a final full stop. '' if nothing is left."""
    if text is None:
        return ""
    s = unicodedata.normalize("NFKC", str(text))
    s = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([.,;:!?])", r"\1", s)
    s = re.sub(r"([.,;:!?])\1+", r"\1", s)
    s = re.sub(r"[a-zA-Z]+", lambda m: _SPELLING.get(m.group(0).lower(), m.group(0)), s)
    s = s.strip(" ,;:-")
    if not _WORD_RE.search(s.lower()):
        return ""
    s = s[0].upper() + s[1:]
    if s[-1] not in ".!?":
        s += "."
    return s


def clean_captions(texts: Sequence[Any]) -> list[str]:
    """Clean each caption, dropping empty ones and exact repeats (order kept)."""
    out: list[str] = []
    seen: set[str] = set()
    for t in texts:
        c = clean_caption(t)
        if c and c.lower() not in seen:
            seen.add(c.lower())
            out.append(c)
    return out


def caption_words(text: str) -> list[str]:
    """Lower-case words of a caption (for vocabulary statistics)."""
    return _WORD_RE.findall(text.lower())


def _norm_label(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", label).lower()


@dataclass(frozen=True)
class SceneVocabulary:
    """Phrases for one scene class."""

    singular: tuple[str, ...]
    plural: tuple[str, ...]
    details: tuple[str, ...]
    sentences: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaptionVocabulary:
    """Scene classes plus sentence frames and metadata phrases, loaded from YAML."""

    classes: Mapping[str, SceneVocabulary]
    aliases: Mapping[str, str]
    templates: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, folder: str | Path = CAPTION_ASSETS) -> CaptionVocabulary:
        folder = Path(folder)
        try:
            classes_raw = yaml.safe_load((folder / "classes.yaml").read_text())
            templates_raw = yaml.safe_load((folder / "templates.yaml").read_text())
        except FileNotFoundError as e:
            raise DataError(
                f"caption vocabulary: missing file {e.filename}; expected classes.yaml and "
                f"templates.yaml in {folder}"
            ) from None
        classes: dict[str, SceneVocabulary] = {}
        aliases: dict[str, str] = {}
        for name, spec in classes_raw.items():
            classes[name] = SceneVocabulary(
                singular=tuple(spec.get("singular", ())),
                plural=tuple(spec.get("plural", ())),
                details=tuple(spec.get("details", ())),
                sentences=tuple(spec.get("sentences", ())),
            )
            aliases[_norm_label(name)] = name
            for a in spec.get("aliases", ()):
                aliases.setdefault(_norm_label(a), name)
        templates = {k: tuple(v) for k, v in templates_raw.items()}
        for key in ("singular", "plural", "views"):
            if not templates.get(key):
                raise DataError(f"caption vocabulary: {folder / 'templates.yaml'} has no {key!r} frames")
        return cls(classes, aliases, templates)

    def scene(self, label: str | None) -> SceneVocabulary:
        """The vocabulary of a label (by name or alias); an unknown label becomes its own plain noun phrase."""
        if label:
            name = self.aliases.get(_norm_label(label))
            if name is not None:
                return self.classes[name]
            words = (
                re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").replace("-", " ").lower().strip()
            )
            article = "an" if words[:1] in "aeiou" else "a"
            return SceneVocabulary(
                singular=(f"{article} {words}", f"{article} {words} area", f"a scene of {words}"),
                plural=(f"some areas of {words}", f"several {words} scenes"),
                details=("seen from above", "in the middle of the image", "with its surroundings"),
            )
        return SceneVocabulary(
            singular=("a landscape", "an area of land", "a scene"),
            plural=("some fields and buildings",),
            details=("seen from above",),
        )


@functools.lru_cache(maxsize=4)
def default_vocabulary() -> CaptionVocabulary:
    return CaptionVocabulary.load(CAPTION_ASSETS)


def format_gsd(gsd_m: float) -> str:
    """GSD for text: ``10``, ``2.5``, ``0.3``, ``89``."""
    if gsd_m >= 10:
        return f"{round(gsd_m):d}"
    if gsd_m >= 1:
        return f"{gsd_m:.1f}".rstrip("0").rstrip(".")
    return f"{gsd_m:.2g}"


def season_name(month: int, lat: float | None) -> str | None:
    """Meteorological season of a month; None in the tropics or where the hemisphere is unknown."""
    if lat is None or abs(lat) < 23.5:
        return None
    north = [
        "winter",
        "winter",
        "spring",
        "spring",
        "spring",
        "summer",
        "summer",
        "summer",
        "autumn",
        "autumn",
        "autumn",
        "winter",
    ]
    south = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}
    s = north[month - 1]
    return s if lat >= 0 else south[s]


class CaptionWriter:
    """Varied natural captions from a class label and the known metadata.

    Each caption picks a sentence frame, scene phrases and synonyms, and adds metadata phrases (GSD, date or
    season, place, sensor) with probability ``metadata_probability`` each, so a model sees both captions that
    mention the metadata and captions that do not.
    """

    def __init__(
        self,
        vocabulary: CaptionVocabulary | None = None,
        seed: int = 0,
        metadata_probability: float = 0.4,
    ) -> None:
        self.vocabulary = vocabulary or default_vocabulary()
        self.seed = seed
        self.metadata_probability = metadata_probability

    def captions(
        self,
        label: str | None,
        metadata: Metadata | None = None,
        n: int = 5,
        key: str = "",
        *,
        place: str | None = None,
        false_color: bool = False,
    ) -> list[str]:
        """``n`` distinct captions (fewer only if the vocabulary cannot make that many), deterministic in key."""
        out: list[str] = []
        seen: set[str] = set()
        for attempt in range(n * 20):
            c = self.caption(
                label,
                metadata,
                rng=self._rng(f"{label}|{key}", attempt),
                place=place,
                false_color=false_color,
            )
            if c.lower() not in seen:
                seen.add(c.lower())
                out.append(c)
                if len(out) == n:
                    break
        return out

    def _rng(self, key: str, i: int) -> random.Random:
        digest = hashlib.blake2b(f"{self.seed}|{key}|{i}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "little"))

    def caption(
        self,
        label: str | None,
        metadata: Metadata | None = None,
        *,
        rng: random.Random,
        place: str | None = None,
        false_color: bool = False,
    ) -> str:
        """One caption drawn with ``rng``."""
        t = self.vocabulary.templates
        scene = self.vocabulary.scene(label)
        views = t.get("false_color_views") if false_color else None
        view = rng.choice(views or t["views"])
        if metadata is not None and metadata.sensor and t.get("sensor") and rng.random() < 0.25:
            kind = f"{metadata.sensor} false-colour image" if false_color else f"{metadata.sensor} image"
            view = f"{indefinite_article(kind)} {kind}"
        r = rng.random()
        if scene.sentences and (r < 0.2 or not scene.singular):
            frame = rng.choice(t.get("whole") or ("{sent}.",))
        elif scene.plural and (r < 0.5 or not scene.singular):
            frame = rng.choice(t["plural"])
        else:
            frame = rng.choice(t["singular"])
        text = frame.format(
            s=rng.choice(scene.singular) if scene.singular else "",
            p=rng.choice(scene.plural) if scene.plural else "",
            d=rng.choice(scene.details) if scene.details else "",
            v=view,
            sent=rng.choice(scene.sentences) if scene.sentences else "",
        )
        text = self._append(text, self._metadata_phrases(metadata, place, rng), rng)
        if false_color and not any(w in text for w in ("false", "infrared")):
            text = text.rstrip(".") + rng.choice([", in false colour.", " (false-colour composite).", "."])
        return clean_caption(text)

    def with_metadata(
        self,
        captions: Sequence[str],
        metadata: Metadata | None = None,
        key: str = "",
        *,
        place: str | None = None,
    ) -> list[str]:
        """Human captions kept as written, each followed by the writer's metadata phrases (GSD, date, place)
        with the same probability as written captions get them, deterministic in ``key``."""
        out = []
        for i, caption in enumerate(captions):
            rng = self._rng(f"human|{key}", i)
            out.append(self._append(caption, self._metadata_phrases(metadata, place, rng), rng))
        return clean_captions(out)

    @staticmethod
    def _append(text: str, phrases: Sequence[str], rng: random.Random) -> str:
        """``text`` with metadata ``phrases`` joined on before its final full stop."""
        if not phrases:
            return text
        body = text.rstrip(".").rstrip()
        sep = (
            " "
            if "," in body or phrases[0].startswith(("in ", "at ", "with ", "near ")) and rng.random() < 0.5
            else ", "
        )
        return body + sep + " ".join(phrases) + "."

    def _metadata_phrases(self, meta: Metadata | None, place: str | None, rng: random.Random) -> list[str]:
        t = self.vocabulary.templates
        p = self.metadata_probability
        out: list[str] = []
        if meta is not None and meta.gsd_m is not None and t.get("gsd") and rng.random() < p:
            out.append(rng.choice(t["gsd"]).format(gsd=format_gsd(meta.gsd_m)))
        if meta is not None and meta.date is not None and rng.random() < p:
            d = meta.date
            season = season_name(d.month, meta.lat) if d.month else None
            if d.month is None:
                frames = t.get("date_year", ())
            elif d.day is None:
                frames = t.get("date_month", ())
            else:
                frames = t.get("date_day", ())
            frames = tuple(f for f in frames if "{season}" not in f or season)
            if season and t.get("season") and rng.random() < 0.3:
                frames = t["season"]
            if frames:
                out.append(
                    rng.choice(frames).format(
                        date=d.isoformat(),
                        year=d.year,
                        month=calendar.month_name[d.month] if d.month else "",
                        day=d.day or "",
                        season=season or "",
                    )
                )
        if place and t.get("place") and rng.random() < p:
            out.append(rng.choice(t["place"]).format(place=place))
        rng.shuffle(out)
        return out


def indefinite_article(phrase: str) -> str:
    """ "an" before a vowel sound ("an aerial image", "an NAIP image"), else "a"."""
    word = phrase.split()[0] if phrase.split() else ""
    if word.isupper() and word[:1] in "AEFHILMNORSX":  # initialisms read letter by letter: an NAIP, an SAR
        return "an"
    return "an" if word[:1].lower() in "aeiou" else "a"
