import numpy as np
import pytest
from data_fixtures import save_jpeg, textured, write_geotiff

from rsgen.data.images import SampleError, load_image


def test_jpeg_roundtrip_and_window(tmp_path):
    arr = textured(1)
    p = save_jpeg(tmp_path / "a.jpg", arr)
    img = load_image(p)
    assert img.array.shape == (64, 64, 3) and img.array.dtype == np.uint8
    assert np.abs(img.array.astype(int) - arr).mean() < 8
    win = load_image(p, window=[8, 4, 32, 16])
    assert win.array.shape == (16, 32, 3)


def test_corrupt_jpeg_is_a_corrupt_sample(tmp_path):
    p = save_jpeg(tmp_path / "a.jpg", textured(2))
    data = p.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    for name in ("trunc.jpg", "junk.jpg"):
        with pytest.raises(SampleError) as e:
            load_image(tmp_path / name)
        assert e.value.reason == "corrupt"
    with pytest.raises(SampleError) as e:
        load_image(tmp_path / "missing.jpg")
    assert e.value.reason == "missing"


def test_truncated_tiff_is_a_corrupt_sample(tmp_path):
    p = write_geotiff(
        tmp_path / "t.tif", np.random.default_rng(0).integers(0, 255, (3, 128, 128), dtype=np.uint8)
    )
    data = p.read_bytes()
    (tmp_path / "trunc.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(SampleError) as e:
        load_image(tmp_path / "trunc.tif")
    assert e.value.reason == "corrupt"


def test_band_selection_nodata_and_stretch(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(100, 4000, (4, 32, 32)).astype(np.uint16)  # R, G, B, NIR
    arr[:, :8, :] = 0
    p = write_geotiff(tmp_path / "rgbn.tif", arr, nodata=0)
    img = load_image(p, bands=[1, 2, 3])
    assert img.array.shape == (32, 32, 3) and img.array.dtype == np.uint8
    assert img.source_dtype == "uint16" and img.source_channels == 4
    assert img.valid_fraction == pytest.approx(24 / 32)
    assert (img.array[:8] == 0).all() and img.array[8:].std() > 10
    nir = load_image(p, bands=[4])
    assert (nir.array[:, :, 0] == nir.array[:, :, 1]).all()  # one band -> grey
    with pytest.raises(SampleError) as e:
        load_image(p, bands=[5])
    assert e.value.reason == "bad_bands"


def test_gsd_factor_load(tmp_path):
    p = save_jpeg(tmp_path / "a.jpg", textured(3))
    img = load_image(p, gsd_factor=2.0)
    assert img.array.shape == (32, 32, 3) and img.source_size == (64, 64)


def test_an_image_above_the_pixel_limit_is_skipped_before_decoding(tmp_path, monkeypatch):
    import dataclasses

    from PIL import Image

    import rsgen.safety as safety

    monkeypatch.setattr(safety, "LIMITS", dataclasses.replace(safety.LIMITS, max_input_pixels=40 * 40))
    png = save_jpeg(tmp_path / "big.jpg", textured(0, size=64))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(SampleError) as e:
        load_image(png)
    assert e.value.reason == "too_large" and "input limit" in str(e.value) and not decoded
    monkeypatch.undo()
    monkeypatch.setattr(safety, "LIMITS", dataclasses.replace(safety.LIMITS, max_input_pixels=40 * 40))
    tif = write_geotiff(tmp_path / "big.tif", np.zeros((3, 64, 64), dtype=np.uint8))
    with pytest.raises(SampleError, match="input limit"):
        load_image(tif)
    assert load_image(tif, window=(0, 0, 32, 32)).array.shape[:2] == (32, 32)  # a small window of it is fine
