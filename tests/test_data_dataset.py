import json

import pytest
import torch
from data_fixtures import save_jpeg, textured

from rsgen.data.dataset import ImageCaptionDataset, collate_samples
from rsgen.errors import DataError
from rsgen.metadata import Metadata


@pytest.fixture
def manifest(tmp_path):
    recs = []
    for i in range(6):
        save_jpeg(tmp_path / "img" / f"{i}.jpg", textured(i, 48))
        recs.append(
            {
                "id": f"s/{i}",
                "path": f"img/{i}.jpg",
                "captions": [f"A {i}.", f"B {i}.", f"C {i}."],
                "metadata": {"gsd_m": 10.0, "lat": 47.0, "lon": -99.0},
                "split": "train" if i < 5 else "val",
                "source": "s",
                "label": "Forest",
            }
        )
    (tmp_path / "img" / "3.jpg").write_bytes(b"broken")
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def test_items_and_collate(manifest):
    ds = ImageCaptionDataset(manifest, split="train", image_size=32)
    assert len(ds) == 5
    item = ds[0]
    assert item["pixel_values"].shape == (3, 32, 32)
    assert item["pixel_values"].min() >= -1.0 and item["pixel_values"].max() <= 1.0
    assert isinstance(item["metadata"], Metadata)
    assert item["metadata"].gsd_m == pytest.approx(15.0)  # 48 px at 10 m shown as 32 px
    assert item["caption"] in ("A 0.", "B 0.", "C 0.") and item["label"] == "Forest" and item["source"] == "s"
    batch = collate_samples([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["index"].dtype == torch.long and len(batch["captions"]) == 4 and len(batch["metadata"]) == 4


def test_bad_sample_is_skipped_and_counted(manifest):
    ds = ImageCaptionDataset(manifest, split="train", image_size=32)
    item = ds[3]
    assert item["index"] == 4 and ds.skipped == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate_samples)
    assert next(iter(loader))["pixel_values"].shape == (5, 3, 32, 32)


def test_random_caption_per_epoch_and_fixed(manifest):
    ds = ImageCaptionDataset(manifest, split="train", image_size=32, seed=1)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        seen.add(ds[0]["caption"])
    assert len(seen) > 1
    again = ImageCaptionDataset(manifest, split="train", image_size=32, seed=1)
    again.set_epoch(11)
    assert again[0]["caption"] == ds[0]["caption"]
    fixed = ImageCaptionDataset(manifest, split="train", image_size=32, random_caption=False)
    assert fixed[0]["caption"] == "A 0."


def test_split_and_bad_arguments(manifest):
    assert len(ImageCaptionDataset(manifest, split="val")) == 1
    assert len(ImageCaptionDataset(manifest, split=None)) == 6
    assert (
        len(ImageCaptionDataset(manifest, split=None, image_size=64, allow_upsampling=False)) == 6
    )  # no sizes
    recs = [{**r, "size": [48, 48]} for r in ImageCaptionDataset(manifest, split=None).records]
    assert len(ImageCaptionDataset(recs, split=None, image_size=64, allow_upsampling=False)) == 0
    assert len(ImageCaptionDataset(recs, split=None, image_size=48, allow_upsampling=False)) == 6
    with pytest.raises(DataError, match="split"):
        ImageCaptionDataset(manifest, split="training")


def test_upsampled_images_keep_their_effective_gsd(manifest):
    """48 px at 10 m shown at 64 px holds 10 m detail: its GSD stays 10 m (not 7.5 m); shown at 32 px, 15 m."""
    up = ImageCaptionDataset(manifest, split="train", image_size=64)
    assert up[0]["pixel_values"].shape == (3, 64, 64)
    assert up[0]["metadata"].gsd_m == pytest.approx(10.0)
    assert ImageCaptionDataset(manifest, split="train", image_size=32)[0]["metadata"].gsd_m == pytest.approx(
        15.0
    )
    with pytest.raises(DataError, match="no such file"):
        ImageCaptionDataset(manifest.parent / "nope.jsonl")
