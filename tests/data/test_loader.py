"""Loader: broken images never stop an epoch and never cost a good image; batches are reproducible."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet.config import AugmentConfig
from efficientdet.data.dataset import TorchDataset
from efficientdet.data.images import image_size, read_image
from efficientdet.data.loader import DetectionSampler, create_loader
from efficientdet.data.parsers import load_dataset
from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import DataError

from .conftest import write_image

BOX = [[2.0, 3.0, 20.0, 30.0]]


def _record(path: Path, i: int) -> ImageRecord:
    return ImageRecord(path, i, np.array(BOX, np.float32), np.array([0]))


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[DetectionDataset, set[int], dict[str, Path]]:
    """Good, convertible and broken images; returns the dataset, the indices that must load, and named paths."""
    d = tmp_path_factory.mktemp("messy")
    files: dict[str, Path] = {}
    for i in range(4):
        files[f"good{i}"] = d / f"good{i}.jpg"
        write_image(files[f"good{i}"], (40, 60), seed=i)
    files["gray"] = d / "gray.png"
    write_image(files["gray"], (40, 60), mode="L")
    files["rgba"] = d / "rgba.png"
    write_image(files["rgba"], (40, 60), mode="RGBA")
    files["palette"] = d / "palette.gif"
    write_image(files["palette"], (40, 60), mode="P")
    files["cmyk"] = d / "cmyk.jpg"
    write_image(files["cmyk"], (40, 60), mode="CMYK")
    files["u16"] = d / "u16.png"
    Image.fromarray(np.full((40, 60), 65535, np.uint16)).save(files["u16"])
    files["exif"] = d / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(files["exif"], exif=exif)
    files["corrupt"] = d / "corrupt.jpg"
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    files["truncated"] = d / "truncated.png"
    write_image(d / "full.png", (64, 64), fmt="PNG")
    data = (d / "full.png").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["missing"] = d / "missing.jpg"
    names = list(files)
    records = [_record(files[n], i) for i, n in enumerate(names)]
    ds = DetectionDataset(records, ("thing",))
    good = {i for i, n in enumerate(names) if n not in ("corrupt", "truncated", "missing")}
    return ds, good, files


def test_image_conversions(messy_folder) -> None:
    _, _, files = messy_folder
    for name in ("gray", "rgba", "palette", "cmyk", "u16", "exif"):
        arr = read_image(files[name])
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
    assert read_image(files["u16"]).min() == 255  # 16-bit full scale -> 8-bit full scale
    assert read_image(files["exif"]).shape == (60, 40, 3)  # EXIF rotation applied
    assert image_size(files["exif"]) == (60, 40)  # the header size agrees with the decoded one
    for name in ("corrupt", "truncated", "missing"):
        with pytest.raises(DataError, match=files[name].name):
            read_image(files[name])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_broken_images_are_skipped_and_counted(messy_folder, num_workers: int, caplog) -> None:
    ds, good, files = messy_folder
    loader = create_loader(ds, batch_size=3, train=False, image_size=(32, 32), num_workers=num_workers)
    with caplog.at_level(logging.WARNING, logger="efficientdet"):
        seen = [i for batch in loader for i in batch.indices.tolist()]
        again = [i for batch in loader for i in batch.indices.tolist()]  # a second epoch: no new messages
    assert sorted(seen) == sorted(good) and sorted(again) == sorted(good)  # no good image lost
    skipped = sorted(Path(p).name for p, _ in loader.skipped)
    assert skipped == ["corrupt.jpg", "missing.jpg", "truncated.png"]
    messages = [r.getMessage() for r in caplog.records if "skipping image" in r.getMessage()]
    assert len(messages) == 3 and all(any(n in m for m in messages) for n in skipped)


def test_strict_raises_naming_the_file(messy_folder) -> None:
    ds, _, files = messy_folder
    broken = DetectionDataset([_record(files["good0"], 0), _record(files["truncated"], 1)], ("thing",))
    loader = create_loader(broken, batch_size=2, train=False, image_size=32, strict=True)
    with pytest.raises(DataError, match="truncated.png"):
        list(loader)


def test_items_targets_and_meta(sample_root: Path) -> None:
    ds = load_dataset(sample_root / "val")
    item = TorchDataset(ds, (64, 96))[0]
    rec = ds.records[0]
    # evaluation items are Predictor's float letterbox (0..255, not rounded to uint8): validate scores the
    # pixels Predictor sees (issue 19; tests/test_pipeline.py checks the detections are the same)
    assert item.image.shape == (3, 64, 96) and item.image.dtype == torch.float32
    assert 0 <= float(item.image.min()) and float(item.image.max()) <= 255
    scale = min(64 / rec.size[0], 96 / rec.size[1])
    assert item.meta.scale == pytest.approx(scale, rel=1e-6) and item.meta.orig_size == rec.size
    torch.testing.assert_close(item.targets.boxes, torch.from_numpy(rec.boxes) * scale, atol=0.6, rtol=0)
    assert item.targets.labels.tolist() == rec.labels.tolist()


def _epoch(loader, epoch: int, start_batch: int = 0) -> list[tuple[list[int], float]]:
    loader.set_epoch(epoch, start_batch)
    return [(b.indices.tolist(), float(b.images.float().sum()) + sum(float(t.boxes.sum()) for t in b.targets))
            for b in loader]


def test_same_seed_and_epoch_give_the_same_batches(sample_root: Path) -> None:
    ds = load_dataset(sample_root / "train")
    kwargs = dict(batch_size=4, train=True, image_size=64, seed=5, augment=AugmentConfig(mosaic=0.5, autoaugment="v0"))
    inline = create_loader(ds, num_workers=0, **kwargs)
    workers = create_loader(ds, num_workers=2, **kwargs)
    first = _epoch(inline, 3)
    assert first == _epoch(workers, 3)  # any number of workers
    assert first == _epoch(inline, 3)  # repeatable
    assert first != _epoch(inline, 4)  # another epoch: another order and augmentation
    assert _epoch(inline, 3, start_batch=1) == first[1:]  # resuming inside an epoch
    assert len(first) == len(ds) // 4  # train drops the last partial batch


def test_distributed_shards_cover_the_dataset() -> None:
    shards = [DetectionSampler(10, shuffle=True, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    parts = [[i for i, _ in s] for s in shards]
    assert [len(p) for p in parts] == [4, 4, 4] == [len(s) for s in shards]
    assert set().union(*map(set, parts)) == set(range(10))
    with pytest.raises(DataError, match="rank"):
        DetectionSampler(10, shuffle=False, num_replicas=2, rank=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs an accelerator")
def test_pinned_batches(sample_root: Path) -> None:
    ds = load_dataset(sample_root / "val")
    batch = next(iter(create_loader(ds, 2, False, 64, pin_memory=True, num_workers=1)))
    assert batch.images.is_pinned() and batch.targets[0].boxes.is_pinned()
    on_gpu = batch.to("cuda")
    assert on_gpu.images.is_cuda and on_gpu.targets[0].labels.is_cuda
