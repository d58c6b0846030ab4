"""Class judges: the multi-head network, its training, its per-head batch-norm statistics and its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import save_jpeg, textured

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.eval.class_judge_data import aid_is_held_out, list_judge_images, load_judge_set
from rsgen.eval.class_judge_training import (
    ClassJudgeTrainConfig,
    JudgeSetConfig,
    JudgeTrainingSet,
    augment,
    judge_accuracies,
    train_class_judges,
)
from rsgen.eval.class_judges import (
    ClassJudge,
    ClassJudgeNet,
    load_class_judge,
    load_class_judges,
    save_class_judges,
)

LABEL_SETS = [
    {"name": "a", "classes": ["red", "blue"], "input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
    {"name": "b", "classes": ["x", "y", "z"], "input_size": 24, "mean": [0.4] * 3, "std": [0.2] * 3},
]


def colour_set(name: str, n: int, size: int, seed: int) -> JudgeTrainingSet:
    """Images whose class is their dominant colour channel (red or blue), with texture."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 80, (n, 3, size, size), generator=g, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 0 if c == 0 else 2] += 150
    return JudgeTrainingSet(name, ("red", "blue"), images, labels)


def tiny_config(**kw) -> ClassJudgeTrainConfig:
    base = dict(
        sets={
            "a": JudgeSetConfig(input_size=32, batch_size=16),
            "b": JudgeSetConfig(input_size=24, batch_size=16),
        },
        steps=40,
        lr=0.05,
        mixup_alpha=0.0,
        bn_recalibration_images=64,
        log_every=1000,
    )
    base.update(kw)
    return ClassJudgeTrainConfig(**base)


def test_training_learns_each_head_and_keeps_its_own_batch_norm_statistics() -> None:
    a = colour_set("a", 96, 32, seed=0)
    b = colour_set("b", 96, 40, seed=1)
    b.images = (b.images // 3).to(torch.uint8)  # a darker domain: its batch-norm statistics must differ
    net, summary = train_class_judges([a, b], tiny_config(), "cpu")
    assert summary["steps"] == 40 and set(summary["epochs"]) == {"a", "b"}
    scores = judge_accuracies(net, [colour_set("a", 64, 32, seed=5), colour_set("b", 64, 40, seed=6)])
    assert scores["a"]["accuracy"] >= 0.9
    mean_a = net.bn_a_0_mean.clone()
    mean_b = net.bn_b_0_mean.clone()
    assert not torch.allclose(mean_a, mean_b)
    net.use_head("b")
    first_bn = [m for m in net.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert torch.equal(first_bn.running_mean, mean_b)
    net.use_head("a")
    assert torch.equal(first_bn.running_mean, mean_a)


def test_save_and_load_round_trip_gives_the_same_predictions(tmp_path: Path) -> None:
    net = ClassJudgeNet(label_sets=LABEL_SETS, real_accuracy={"a": 0.9}).eval()
    images = torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8)
    # weights are stored in half precision: round them the same way before comparing
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    before = ClassJudge(net, "a").logits(images)
    save_class_judges(net, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob(".*.tmp"))
    judge = load_class_judge("a", tmp_path)
    assert judge.real_accuracy == 0.9 and judge.classes == ("red", "blue")
    torch.testing.assert_close(judge.logits(images), before, atol=2e-2, rtol=1e-2)
    assert load_class_judge("b", tmp_path).real_accuracy is None


def test_bad_judge_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="class judges not found"):
        load_class_judges(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no label set 'c'"):
        ClassJudge(ClassJudgeNet(label_sets=LABEL_SETS), "c")
    with pytest.raises(ConfigError, match="backbone"):
        ClassJudgeNet(label_sets=LABEL_SETS, backbone="vgg")
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        ClassJudge(ClassJudgeNet(label_sets=LABEL_SETS), "a").predict(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ConfigError, match="labels outside"):
        JudgeTrainingSet("a", ("x",), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="no entry under 'sets'"):
        train_class_judges([colour_set("c", 8, 16, 0)], tiny_config(), "cpu")
    save_class_judges(ClassJudgeNet(label_sets=LABEL_SETS), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"label_sets": LABEL_SETS[:1]}))
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        load_class_judges(tmp_path)


def test_augment_gives_views_of_the_requested_size_in_range() -> None:
    images = torch.randint(0, 255, (6, 3, 40, 40), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = augment(images, 24, tiny_config(), g)
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = augment(images, 24, tiny_config(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)  # seeded
    other = augment(images, 24, tiny_config(), torch.Generator().manual_seed(1))
    assert not torch.allclose(out, other)


def fake_datasets(root: Path) -> Path:
    """EuroSAT, UC Merced and AID in their shipped layouts, 3 images per class, one corrupt EuroSAT file."""
    rows = ["path,label"]
    for split in ("train", "val"):
        rows = ["path,label"]
        for c, cls in enumerate(("Forest", "River")):
            for i in range(3):
                rel = f"{split}/{cls}/{cls}_{i}.jpg"
                save_jpeg(root / "eurosat-rgb" / rel, textured(100 * c + i + (50 if split == "val" else 0)))
                rows.append(f"{rel},{cls}")
        (root / "eurosat-rgb" / f"{split}.csv").write_text("\n".join(rows) + "\n")
    (root / "eurosat-rgb" / "train/Forest/Forest_0.jpg").write_bytes(b"not a jpeg")
    for split in ("train", "val"):
        items = []
        for c, cls in enumerate(("beach", "forest")):
            for i in range(2):
                rel = f"images/{cls}/{cls}{split}{i}.jpg"
                save_jpeg(root / "ucm" / rel, textured(7 * c + i, size=80))
                items.append({"path": rel, "label": cls, "captions": ["a caption"] * 5})
        (root / "ucm" / f"{split}.json").write_text(json.dumps(items))
    aid = root / "aid-rsicd"
    caps, extra = [], ["path,label"]
    for cls in ("Airport", "Beach"):
        for i in range(6):
            rel = f"images/{cls}/{cls.lower()}_{i}.jpg"
            save_jpeg(aid / rel, textured(i, size=50))
            (
                caps.append({"path": rel, "label": cls, "captions": ["x"] * 5})
                if i < 2
                else extra.append(f"{rel},{cls}")
            )
    (aid / "captions_val.json").write_text(json.dumps(caps))
    (aid / "labels_extra.csv").write_text("\n".join(extra) + "\n")
    return root


def test_real_layouts_are_read_and_a_corrupt_file_is_skipped_and_counted(tmp_path: Path) -> None:
    root = fake_datasets(tmp_path)
    eurosat, skipped = load_judge_set("eurosat", root, "train", 64)
    assert skipped == 1 and eurosat.images.shape == (5, 3, 64, 64) and eurosat.classes == ("Forest", "River")
    ucm, skipped = load_judge_set("ucm", root, "val", 32)
    assert skipped == 0 and ucm.images.shape == (4, 3, 32, 32)
    # AID: every fifth image of each class (file-name order) is held out, the rest train; no overlap
    train = {p for p, _ in list_judge_images("aid", root, "train")}
    val = {p for p, _ in list_judge_images("aid", root, "val")}
    assert len(val) == 4 and len(train) == 8 and not train & val
    assert [aid_is_held_out(i) for i in range(6)] == [True, False, False, False, False, True]
    with pytest.raises(Exception, match="unknown label set"):
        list_judge_images("sydney", root, "train")
    assert np.unique(ucm.labels.numpy()).tolist() == [0, 1]


def test_shipped_judges_carry_their_real_accuracy() -> None:
    from rsgen.eval.class_judges import DEFAULT_CLASS_JUDGES_DIR

    if not (DEFAULT_CLASS_JUDGES_DIR / "model.safetensors").is_file():
        pytest.skip("shipped class judges not present")
    net = load_class_judges()
    assert set(net.label_sets) == {"eurosat", "ucm", "aid"}
    for name, n_classes in (("eurosat", 10), ("ucm", 21), ("aid", 30)):
        judge = ClassJudge(net, name)
        assert len(judge.classes) == n_classes
        assert judge.real_accuracy is not None and judge.real_accuracy > 0.85
