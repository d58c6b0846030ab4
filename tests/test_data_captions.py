import itertools

import pytest

from rsgen.data.captions import CaptionWriter, clean_caption, clean_captions, format_gsd, season_name
from rsgen.eval.reference_data import EUROSAT_CLASSES
from rsgen.metadata import Metadata

EUROSAT = list(EUROSAT_CLASSES)


@pytest.mark.parametrize("label", EUROSAT)
def test_many_distinct_captions_per_class(label):
    w = CaptionWriter(seed=0)
    caps = list(
        itertools.chain.from_iterable(
            w.captions(label, Metadata(gsd_m=10), n=5, key=f"img{i}") for i in range(100)
        )
    )
    assert len(caps) == 500
    assert len(set(caps)) >= 150, f"only {len(set(caps))} distinct captions for {label}"
    frames = {c.split()[0] for c in caps}
    assert len(frames) >= 6  # not one fixed sentence shape


def test_captions_deterministic_and_distinct_within_image():
    w = CaptionWriter(seed=3)
    a = w.captions("River", Metadata(gsd_m=10), n=5, key="x")
    assert a == CaptionWriter(seed=3).captions("River", Metadata(gsd_m=10), n=5, key="x")
    assert len(set(a)) == 5
    assert a != CaptionWriter(seed=4).captions("River", Metadata(gsd_m=10), n=5, key="x")


def test_metadata_phrases_use_the_metadata():
    w = CaptionWriter(seed=0, metadata_probability=1.0)
    meta = Metadata(gsd_m=5.0, lat=47.0, lon=-99.1, date="2019-09-04", sensor="NAIP")
    caps = w.captions("prairie_farmland", meta, n=20, key="k", place="North Dakota, USA")
    text = " ".join(caps)
    assert "5 m" in text or "5 metres" in text
    assert "2019" in text
    assert "North Dakota" in text
    assert "autumn" in text or "September" in text or "2019-09-04" in text
    # a GSD copy mentions its own GSD, never the native one
    caps20 = w.captions("prairie_farmland", meta.replace(gsd_m=20.0), n=10, key="k")
    assert all(" 5 m" not in c for c in caps20) and any("20 m" in c or "20 metres" in c for c in caps20)


def test_false_colour_is_said():
    w = CaptionWriter(seed=0)
    caps = w.captions("tropical_rainforest", Metadata(gsd_m=89), n=10, key="l", false_color=True)
    assert all(("false" in c.lower()) or ("infrared" in c.lower()) for c in caps)


def test_unknown_label_still_gives_captions():
    caps = CaptionWriter().captions("airport_hangar", None, n=3, key="a")
    assert len(caps) == 3 and all("airport hangar" in c for c in caps)


def test_clean_caption():
    assert clean_caption("  there is a piece of farmland .  ") == "There is a piece of farmland."
    assert clean_caption("trees surounded by\tlawns") == "Trees surrounded by lawns."
    assert clean_caption("   ") == ""
    assert clean_caption(" . ") == ""
    assert clean_caption(None) == ""
    assert clean_captions(["a river .", "A river.", "", "  "]) == ["A river."]


def test_format_gsd_and_season():
    assert [format_gsd(g) for g in (10, 89.2, 2.5, 0.1, 5.0)] == ["10", "89", "2.5", "0.1", "5"]
    assert season_name(7, 47.0) == "summer"
    assert season_name(7, -35.0) == "winter"
    assert season_name(7, -8.0) is None
    assert season_name(7, None) is None


def test_sensor_phrases_take_the_right_article() -> None:
    from rsgen.data.captions import indefinite_article

    assert [
        indefinite_article(x) for x in ("aerial image", "NAIP image", "Sentinel-2 image", "Landsat image")
    ] == [
        "an",
        "an",
        "a",
        "a",
    ]
