"""Shared test helpers for the model/training tests: a tiny in-memory dataset with the items of
``rsgen.data.dataset.ImageCaptionDataset`` (fake images), tiny configs, and the one-thread autouse fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from rsgen.metadata import Metadata
from rsgen.training.config import TrainConfig, load_train_config


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test of a module that imports this runs on one torch thread: the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CAPTIONS = ["a forest", "a river through farmland", "a residential area", "a highway", "a lake", "farmland"]


class FakeImageCaptionDataset(torch.utils.data.Dataset):
    """``n`` smooth random images (3, S, S) in [-1, 1] with captions and (partly missing) metadata."""

    def __init__(self, n: int = 16, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand((n, 3, size // 8, size // 8), generator=g) * 2 - 1
        self.images = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear").clamp(-1, 1)
        self.metas = []
        for i in range(n):
            kinds = i % 4
            if kinds == 0:
                self.metas.append(
                    Metadata(gsd_m=10.0, lat=47.0 + i, lon=8.0, date="2019-07-04", cloud_cover=0.1)
                )
            elif kinds == 1:
                self.metas.append(Metadata(gsd_m=0.5))  # partial
            elif kinds == 2:
                self.metas.append(Metadata())  # nothing known
            else:
                self.metas.append(Metadata(date="2010", off_nadir_deg=10.0))
        self.records = [
            {"id": f"fake{i}", "captions": [CAPTIONS[i % len(CAPTIONS)], "an image"]} for i in range(n)
        ]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "pixel_values": self.images[i],
            "caption": self.records[i]["captions"][0],
            "metadata": self.metas[i],
            "index": i,
            "source": "fake",
            "label": None,
        }


def tiny_config(tmp_path, mode: str = "base", **overrides: Any) -> TrainConfig:
    items = [f"output_dir={tmp_path}", f"mode={mode}"] + [f"{k}={v}" for k, v in overrides.items()]
    return load_train_config("tiny", items)
