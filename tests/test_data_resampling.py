"""The shared resampling rule: nodata handling, antialiasing, and that curation's GSD copies, the training dataset
and the GSD predictor's real references all produce the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import save_jpeg, textured

from rsgen.data.dataset import square_resize
from rsgen.data.images import load_image
from rsgen.data.resampling import (
    coarsen,
    coarsen_shown,
    coarsened_size,
    show_at,
    true_gsd_factor,
)
from rsgen.errors import DataError


def test_coarsen_keeps_nodata_out() -> None:
    rgb = np.full((64, 64, 3), 200, np.uint8)
    valid = np.ones((64, 64), bool)
    valid[:, :32] = False
    rgb[~valid] = 0
    out, v = coarsen(rgb, valid, 2.0)
    assert out.shape == (32, 32, 3)
    assert (out[v] == 200).all()  # nodata zeros did not darken valid pixels
    assert not v[:, :15].any() and v[:, 17:].all()
    assert true_gsd_factor(64, 64, 3.0) == pytest.approx(64 / 21)
    assert coarsened_size(64, 40, 4.0) == (16, 10)
    with pytest.raises(DataError, match="gsd_factor"):
        coarsen(rgb, valid, 0.0)


def test_coarsen_is_the_antialiased_triangle_filter_not_a_box() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    out, _ = coarsen(noise, np.ones((64, 64), bool), 4.0)
    x = torch.from_numpy(noise).permute(2, 0, 1)[None].float()  # (1, 3, 64, 64)
    torch_aa = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    box = F.avg_pool2d(x, 4)
    ours = torch.from_numpy(out).permute(2, 0, 1)[None].float()
    assert (ours - torch_aa).abs().max() <= 1.0  # the same filter as torch's antialiased bilinear
    # a wider filter than a box average: less aliased detail survives
    assert ours.std() < 0.8 * box.std()


def test_show_at_shrinks_with_the_coarsening_filter_and_enlarges_with_bicubic() -> None:
    from PIL import Image

    img = textured(1)  # (64, 64, 3)
    assert show_at(img, 64, 64) is img
    small = show_at(img, 32, 32)
    assert np.array_equal(small, np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BILINEAR)))
    big = show_at(small, 64, 64)
    assert np.array_equal(big, np.asarray(Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC)))


def test_dataset_gsd_copy_and_predictor_reference_are_the_same_pixels(tmp_path) -> None:
    """A curated 20 m copy as the training dataset shows it == the GSD predictor's real 20 m reference."""
    from rsgen.eval.gsd_predictor import RULE, degrade

    img = textured(5)  # (64, 64, 3) uint8, a 10 m image
    path = save_jpeg(tmp_path / "a.jpg", img)
    decoded = load_image(path).array  # what the JPEG holds
    copy = load_image(path, gsd_factor=2.0).array  # the curated copy: (32, 32, 3)
    shown, scale = square_resize(copy, 64)  # as the dataset shows it at 64 px
    assert scale < 1.0  # enlarged: its effective GSD stays the copy's
    assert np.array_equal(shown, coarsen_shown(decoded, 2.0))
    x = torch.from_numpy(decoded).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 64, 64)
    reference = (degrade(x, 2.0, RULE)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(reference, shown)


def test_sr_degradation_whatif_and_eval_references_follow_the_one_rule():
    """SR training inputs, what-if regridding and evaluation references shrink with the same triangle filter as
    curation's GSD copies (not a box or bicubic)."""
    import torch

    from rsgen.data.resampling import coarsen, show_tensor
    from rsgen.eval.reference_data import resize_rgb
    from rsgen.models.super_resolution import degrade

    rng = np.random.default_rng(0)
    rgb = (rng.random((64, 64, 3)) * 255).astype(np.uint8)  # noise: the filters differ most on it
    rule, _ = coarsen(rgb, np.ones((64, 64), bool), 4.0)  # (16, 16, 3)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255  # (1, 3, 64, 64)
    sr = (degrade(x, 4)[0].permute(1, 2, 0).numpy() * 255).round()
    box = (torch.nn.functional.avg_pool2d(x, 4)[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(sr - rule).mean() < 1.0 < np.abs(box - rule).mean()
    assert np.abs(resize_rgb(rgb, 16).astype(float) - rule).mean() < 1.0
    assert show_tensor(x, 64, 64) is x and show_tensor(x, 128, 128).shape == (1, 3, 128, 128)
