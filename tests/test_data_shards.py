import tarfile

import numpy as np
import pytest
import torch
from data_fixtures import save_jpeg, textured, write_geotiff

from rsgen.data.shards import ShardDataset, ShardWriter, iter_shards, shard_key, write_shards


def _records(tmp_path, n=7):
    recs = []
    for i in range(n):
        p = save_jpeg(tmp_path / "img" / f"{i}.jpg", textured(i))
        recs.append(
            {
                "id": f"src/img.{i}",
                "path": str(p),
                "window": None,
                "bands": None,
                "captions": [f"Caption {i}.", f"Other {i}."],
                "metadata": {"gsd_m": 10.0, "date": "2019-07"},
                "split": "train" if i < 5 else "val",
                "source": "src",
                "label": "Forest",
                "false_color": False,
                "gsd_factor": 1.0,
                "conditions": None,
            }
        )
    tif = write_geotiff(tmp_path / "s.tif", textured(99, 64).transpose(2, 0, 1).copy())
    recs.append(
        {
            **recs[0],
            "id": "src/win",
            "path": str(tif),
            "window": [16, 16, 32, 32],
            "gsd_factor": 2.0,
            "metadata": {"gsd_m": 20.0},
        }
    )
    return recs


def test_shard_round_trip(tmp_path):
    recs = _records(tmp_path)
    paths = write_shards(recs, tmp_path / "shards", max_samples=3)
    names = sorted(p.name for p in paths)
    assert names == ["train-000000.tar", "train-000001.tar", "val-000000.tar"]  # 6 train (3 + 3), 2 val
    assert not list((tmp_path / "shards").glob("*.tmp"))
    out = list(iter_shards(sorted(paths)))
    assert len(out) == len(recs)
    by_id = {s["record"]["id"]: s for s in out}
    for r in recs:
        s = by_id[r["id"]]
        assert s["__key__"] == shard_key(r["id"]) and "." not in s["__key__"]
        assert s["record"]["captions"] == r["captions"]
    assert by_id["src/win"]["image"].shape == (16, 16, 3)  # window 32 px averaged down by 2
    # PNG is lossless: the shard holds exactly the pixels the loader produced
    from rsgen.data.images import load_image

    assert np.array_equal(by_id["src/img.3"]["image"], load_image(recs[3]["path"]).array)


def test_shard_reader_survives_truncation_and_junk(tmp_path):
    paths = write_shards(_records(tmp_path), tmp_path / "shards", max_samples=100)
    train = next(p for p in paths if p.name.startswith("train"))
    data = train.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    got = list(iter_shards([cut]))
    assert 0 < len(got) < 6
    junk = tmp_path / "junk.tar"
    with ShardWriter(tmp_path / "j", 10) as w:
        w.write("a", {"png": b"garbage", "json": b"{}"})
        w.write("b", {"json": b"{}"})
    junk = w.paths[0]
    assert list(iter_shards([junk, tmp_path / "missing.tar"])) == []
    with tarfile.open(junk) as t:
        assert sorted(t.getnames()) == ["a.json", "a.png", "b.json"]


def test_webdataset_library_reads_our_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    paths = write_shards(_records(tmp_path, 3), tmp_path / "shards")
    keys = [s["__key__"] for s in wds.WebDataset([str(p) for p in paths], shardshuffle=False)]
    assert len(keys) == 4


def test_shard_dataset_items(tmp_path):
    paths = write_shards(_records(tmp_path), tmp_path / "shards", max_samples=2)
    ds = ShardDataset(paths, image_size=32)
    items = list(ds)
    assert len(items) == 8
    assert items[0]["pixel_values"].shape == (3, 32, 32) and items[0]["pixel_values"].dtype == torch.float32
    win = next(i for i in items if i["metadata"].gsd_m and i["metadata"].gsd_m < 20)  # 16 px @ 20 m -> 32 px
    assert win["metadata"].gsd_m == pytest.approx(10.0)
    loader = torch.utils.data.DataLoader(ShardDataset(paths, image_size=32), batch_size=None, num_workers=2)
    assert len(list(loader)) == 8  # shards divided among workers, each sample once
