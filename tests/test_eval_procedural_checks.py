"""The procedural checks read the rules back from the generator's own images, and tell control from none."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rsgen.data.procedural import LEAF_AUTUMN, LEAF_GREEN, SNOW, SceneParams, generate_scene
from rsgen.errors import DataError
from rsgen.eval import procedural_checks as pc
from rsgen.metadata import Metadata


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(None, seed=1000 + i, size=64) for i in range(60)]


def test_checks_recover_the_rules_with_masks(scenes):
    res = pc.score_rules([s.image for s in scenes], [s.metadata for s in scenes], [s.masks for s in scenes])
    assert res["synthetic"] is True and res["n_images"] == 60
    assert res["cloud_fraction_mae"] < 0.03
    assert res["snow_cover_mae"] < 0.02
    assert res["greenness_mae"] < 0.03
    assert res["autumn_mae"] < 0.08
    assert res["n_shadow_length_rel"] >= 12 and res["shadow_length_rel_mae"] < 0.3
    assert res["shadow_direction_accuracy"] >= 0.9
    assert res["n_object_scale_log2"] >= 12 and res["object_scale_log2_mae"] < 0.2


def test_checks_without_masks_and_against_shuffled_metadata(scenes):
    images, metas = [s.image for s in scenes], [s.metadata for s in scenes]
    both = pc.score_rules_with_reference(images, metas)
    asked, shuffled = both["asked"], both["shuffled"]
    assert asked["cloud_fraction_mae"] < 0.03
    assert asked["snow_cover_mae"] < 0.1
    assert asked["greenness_mae"] < 0.15
    assert math.isnan(asked["shadow_length_px_mae"])  # needs a building mask
    for rule in ("cloud_fraction_mae", "snow_cover_mae", "greenness_mae"):
        assert shuffled[rule] > 2 * asked[rule], rule
    with_masks = pc.score_rules_with_reference(images, metas, [s.masks for s in scenes])
    assert with_masks["shuffled"]["shadow_length_rel_mae"] > 2 * with_masks["asked"]["shadow_length_rel_mae"]
    assert with_masks["shuffled"]["object_scale_log2_mae"] > 3 * with_masks["asked"]["object_scale_log2_mae"]


def test_pixel_classes_on_constructed_images():
    def flat(rgb):
        return np.tile(np.asarray(rgb, np.uint8), (16, 16, 1))

    assert pc.measure_cloud_fraction(flat((252, 251, 253))) == 1.0
    assert pc.measure_cloud_fraction(flat(SNOW)) == 0.0
    assert pc.measure_snow_fraction(flat(SNOW)) == 1.0
    assert pc.measure_snow_fraction(flat((np.asarray(SNOW) * 0.75).round())) == 1.0  # in cloud shadow
    assert pc.measure_snow_fraction(flat((80, 80, 85))) == 0.0  # road
    assert pc.measure_leaf_colour(flat(LEAF_GREEN))["greenness"] == pytest.approx(1.0, abs=0.02)
    assert pc.measure_leaf_colour(flat(LEAF_AUTUMN))["autumn"] == pytest.approx(1.0, abs=0.02)
    assert pc.water_mask(flat((30, 55, 75))).all()
    # A float image in [-1, 1] (a model's output) reads the same as its uint8 version.
    img = flat(LEAF_GREEN)
    as_float = img.astype(np.float32) / 127.5 - 1.0
    assert pc.measure_leaf_colour(as_float)["greenness"] == pytest.approx(
        pc.measure_leaf_colour(img)["greenness"], abs=0.01
    )


@pytest.mark.parametrize("direction,length", [("north", 7), ("south", 4)])
def test_shadow_measurement_on_a_constructed_case(direction, length):
    img = np.full((40, 40, 3), 120, np.uint8)
    buildings = np.zeros((40, 40), bool)
    buildings[15:22, 12:24] = True
    img[buildings] = (150, 75, 60)
    if direction == "north":
        img[15 - length : 15, 12:24] = 50
    else:
        img[22 : 22 + length, 12:24] = 50
    est = pc.measure_shadow(img, buildings)
    assert est.direction == direction and est.length_px == length
    assert pc.measure_object_scale(img, buildings) == pytest.approx(math.sqrt(7 * 12))


def test_shadow_of_the_generator_recovered_at_45n():
    params = SceneParams(scene_weights=(1.0, 0.0, 0.0))
    lengths = {}
    for date in ("2020-12-21", "2020-06-21"):
        s = generate_scene(
            Metadata(gsd_m=1.0, lat=45.0, lon=0.0, date=date, cloud_cover=0.0), seed=7, params=params
        )
        est = pc.measure_shadow(s.image, s.masks["buildings"])
        assert est.direction == "north"
        assert est.length_px == pytest.approx(s.rules["shadow_length_px"], abs=1.5, rel=0.15)
        lengths[date] = est.length_px
    assert lengths["2020-12-21"] > 4 * lengths["2020-06-21"]


def test_shuffled_metadata_is_a_derangement():
    metas = [Metadata(gsd_m=float(i + 1)) for i in range(7)]
    out = pc.shuffled_metadata(metas, seed=3)
    assert sorted(m.gsd_m for m in out) == [m.gsd_m for m in metas]
    assert all(a is not b for a, b in zip(out, metas, strict=True))


def test_bad_input():
    with pytest.raises(DataError, match="2 images but 1 metadata"):
        pc.score_rules([np.zeros((8, 8, 3), np.uint8)] * 2, [Metadata()])
    with pytest.raises(DataError, match="does not match"):
        pc.measure_shadow(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4), bool))
