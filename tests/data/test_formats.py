"""The dataset-format registry: a toy format added through :func:`register_dataset_format` works end to end.

The toy format is a ``boxes.toy`` text file, one box per line: ``<image> <class> <cx> <cy> <w> <h>`` in
pixels (a centre-size layout, so the reader really converts to xyxy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from efficientdet.cli.main import main
from efficientdet.data.check import check_dataset
from efficientdet.data.parsers import (
    dataset_formats,
    detect_format,
    get_dataset_format,
    has_splits,
    load_dataset,
    register_dataset_format,
    save_dataset,
    unregister_dataset_format,
)
from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import DataError
from tests.data.conftest import write_image


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix == ".toy" else None
    return path / "boxes.toy" if (path / "boxes.toy").is_file() else None


def _load(target: Path, split: str | None, *, problems, **kwargs) -> DetectionDataset:
    if target.is_dir():
        target = target / "boxes.toy"
    rows = [line.split() for line in target.read_text().splitlines() if line.strip()]
    names = tuple(sorted({r[1] for r in rows}))
    by_image: dict[str, list[list[str]]] = {}
    for r in rows:
        by_image.setdefault(r[0], []).append(r)
    records = []
    for i, (image, boxes) in enumerate(sorted(by_image.items())):
        cxcywh = np.array([[float(v) for v in b[2:6]] for b in boxes], dtype=np.float32)
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        records.append(ImageRecord(target.parent / image, i, xyxy, [names.index(b[1]) for b in boxes]))
    return DetectionDataset(records, names, root=target.parent, format="toy")


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    lines = []
    for rec in dataset.records:
        for (x1, y1, x2, y2), label in zip(rec.boxes.tolist(), rec.labels.tolist()):
            lines.append(f"{rec.path.name} {dataset.label_names[label]} {(x1 + x2) / 2} {(y1 + y2) / 2} "
                         f"{x2 - x1} {y2 - y1}")
    (path / "boxes.toy").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def toy_format():
    register_dataset_format("toy", detect=_detect, load=_load, save=_save, description="a boxes.toy file")
    yield "toy"
    unregister_dataset_format("toy")


def _toy_dataset(folder: Path) -> Path:
    write_image(folder / "a.png", (40, 60), seed=1)
    write_image(folder / "b.png", (50, 30), seed=2)
    (folder / "boxes.toy").write_text("a.png cat 20 10 10 8\na.png dog 40 30 20 10\nb.png cat 15 25 10 30\n")
    return folder


def test_toy_format_is_detected_loaded_checked_and_written(tmp_path: Path, toy_format: str, capsys) -> None:
    folder = _toy_dataset(tmp_path / "toy")
    assert toy_format in dataset_formats()
    assert detect_format(folder) == ("toy", folder / "boxes.toy")
    assert detect_format(folder / "boxes.toy") == ("toy", folder / "boxes.toy")
    assert not has_splits(folder / "boxes.toy")

    ds = load_dataset(folder)  # detected
    assert ds.format == "toy" and ds.label_names == ("cat", "dog")
    np.testing.assert_allclose(ds.records[0].boxes, [[15, 6, 25, 14], [30, 25, 50, 35]])
    np.testing.assert_array_equal(ds.records[0].labels, [0, 1])
    assert load_dataset(folder, format="toy").records[1].path == folder / "b.png"  # asked by name

    report = check_dataset(folder, images="header")  # what `data check` runs
    assert report.num_images == 2 and report.num_boxes == 3 and report.errors == []
    assert main(["data", "check", str(folder), "--images", "header"]) == 0
    assert "2 images" in capsys.readouterr().out

    # converts to and from the built-in formats through the same registry
    coco = save_dataset(ds, tmp_path / "coco.json", "coco")
    back = save_dataset(load_dataset(coco), tmp_path / "again", "toy")
    again = load_dataset(back)
    assert again.label_names == ds.label_names
    for a, b in zip(ds.records, again.records, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_registry_errors_name_the_format(tmp_path: Path, toy_format: str) -> None:
    with pytest.raises(DataError, match="already registered"):
        register_dataset_format("toy", detect=_detect, load=_load)
    with pytest.raises(DataError, match="Did you mean: toy"):
        get_dataset_format("tyo")
    folder = _toy_dataset(tmp_path / "toy")
    # a file that another format claims is refused with the format to use
    with pytest.raises(DataError, match=r"looks like a boxes.toy file \(toy format\).*--format toy"):
        load_dataset(folder / "boxes.toy", format="coco")
    register_dataset_format("readonly", detect=lambda p, s: None, load=_load)
    try:
        with pytest.raises(DataError, match="can be read but not written"):
            save_dataset(load_dataset(folder), tmp_path / "out", "readonly")
    finally:
        unregister_dataset_format("readonly")


def test_builtin_formats_come_from_the_registry() -> None:
    assert set(dataset_formats()) >= {"coco", "voc", "yolo", "openimages", "csv"}
    # markers first (yolo data.yaml, VOC folders, OpenImages csv), loose .json / .csv last
    order = dataset_formats()
    assert order.index("yolo") < order.index("voc") < order.index("openimages") < order.index("coco") < order.index("csv")
