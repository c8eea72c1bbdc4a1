"""Property tests: mutated annotation files of every format give either a dataset or the project's own errors.

Each test starts from a valid file of one format and changes it the way real files go wrong: a value of another
type (text, null, a list, a bool), an extreme number (NaN, infinity, 1e308, huge integers), a missing key or
element, a truncated file. Reading it with ``load_dataset`` (strictly, and collecting problems) and checking it
with ``check_dataset`` must then either work or raise an :class:`~efficientdet.errors.EfficientDetError`
subclass, never a raw ``ValueError`` / ``TypeError`` / ``KeyError`` / ``JSONDecodeError``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from efficientdet.data.check import check_dataset
from efficientdet.data.parsers import load_dataset
from efficientdet.errors import EfficientDetError
from tests.corpus.make_corpus import (
    OI_HEADER,
    coco_content,
    voc_xml,
    write_coco,
    write_csv,
    write_openimages,
    write_voc,
    write_yolo,
)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 1e-320, 2**63, math.nan, math.inf]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
cell_text = st.one_of(st.text(max_size=10), numbers.map(str), st.sampled_from(["", " ", "nan", "-inf", "1e999",
                                                                               "0x10", "1,5", "٣", "None"]))


def loads_or_own_error(path: Path, fmt: str | None = None, **kwargs: Any) -> None:
    """Strict read, read with a problem list, and a check: each works or raises only an EfficientDetError."""
    for run in (lambda: load_dataset(path, fmt, **kwargs),
                lambda: load_dataset(path, fmt, problems=[], **kwargs),
                lambda: check_dataset(path, format=fmt, images="header", split=kwargs.get("split"))):
        try:
            run()
        except EfficientDetError:
            pass


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return {
        "coco": write_coco(root / "coco").parent,
        "voc": write_voc(root / "voc"),
        "yolo": write_yolo(root / "yolo").parent,
        "csv": write_csv(root / "csv").parent,
        "openimages": write_openimages(root / "oi"),
    }


def _truncate(text: str, data: st.DataObject) -> str:
    return text[: data.draw(st.integers(0, len(text)), label="cut at")]


# --- COCO ------------------------------------------------------------------------------------------------------


@st.composite
def mutated_coco(draw: st.DrawFn) -> str:
    content = coco_content(3)
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories", "top"]))
        if section == "top":
            key = draw(st.sampled_from(["images", "annotations", "categories", "info"]))
            if draw(st.booleans()):
                content.pop(key, None)
            else:
                content[key] = draw(json_values)
            continue
        entries = content.get(section)
        if not isinstance(entries, list) or not entries:
            continue
        i = draw(st.integers(0, len(entries) - 1))
        entry = entries[i]
        if not isinstance(entry, dict) or draw(st.integers(0, 9)) == 0:
            entries[i] = draw(json_values)
            continue
        key = draw(st.sampled_from(sorted(entry) + ["extra"]))
        action = draw(st.sampled_from(["delete", "replace", "bbox_value"]))
        if action == "delete":
            entry.pop(key, None)
        elif action == "bbox_value" and isinstance(entry.get("bbox"), list):
            entry["bbox"][draw(st.integers(0, 3))] = draw(scalars)
        else:
            entry[key] = draw(json_values)
    text = json.dumps(content, allow_nan=True)
    if draw(st.integers(0, 5)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@SETTINGS
@given(text=mutated_coco())
def test_coco_mutations(folders: dict[str, Path], text: str) -> None:
    path = folders["coco"] / "annotations.json"
    path.write_text(text)
    loads_or_own_error(path)


# --- VOC -------------------------------------------------------------------------------------------------------

VOC_TAGS = ["filename", "size", "width", "height", "object", "name", "bndbox", "xmin", "ymin", "xmax", "ymax",
            "difficult"]


@st.composite
def mutated_voc(draw: st.DrawFn) -> str:
    text = voc_xml("dog", filename="img1.jpg")
    for _ in range(draw(st.integers(1, 3))):
        tag = draw(st.sampled_from(VOC_TAGS))
        start, end = text.find(f"<{tag}>"), text.find(f"</{tag}>")
        if start < 0 or end < 0:
            continue
        action = draw(st.sampled_from(["text", "delete", "unclose"]))
        if action == "text":
            value = draw(cell_text).replace("<", "").replace("&", "")
            text = text[: start + len(tag) + 2] + value + text[end:]
        elif action == "delete":
            text = text[:start] + text[end + len(tag) + 3:]
        else:
            text = text[:end] + text[end + len(tag) + 3:]
    if draw(st.integers(0, 5)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@SETTINGS
@given(text=mutated_voc())
def test_voc_mutations(folders: dict[str, Path], text: str) -> None:
    (folders["voc"] / "Annotations" / "img1.xml").write_text(text)
    loads_or_own_error(folders["voc"], "voc", split="train")


# --- YOLO ------------------------------------------------------------------------------------------------------


@SETTINGS
@given(cells=st.lists(cell_text, min_size=0, max_size=8), names=json_values, data=st.data())
def test_yolo_mutations(folders: dict[str, Path], cells: list[str], names: Any, data: st.DataObject) -> None:
    import yaml

    root = folders["yolo"]
    line = " ".join(c.replace("\n", " ") for c in cells)
    (root / "labels" / "train" / "img1.txt").write_text(line + "\n")
    spec = {"path": ".", "train": "images/train", "val": "images/train", "names": ["cat", "dog"]}
    if data.draw(st.booleans(), label="mutate yaml"):
        key = data.draw(st.sampled_from(["names", "train", "path", "nc"]), label="key")
        spec[key] = names
    text = yaml.safe_dump(spec)
    if data.draw(st.integers(0, 5), label="truncate?") == 0:
        text = _truncate(text, data)
    (root / "data.yaml").write_text(text)
    loads_or_own_error(root / "data.yaml", split="train")


# --- CSV and OpenImages ----------------------------------------------------------------------------------------


def _mutated_csv(rows: list[list[str]], row: int, col: int, value: str, data: st.DataObject) -> str:
    """``rows`` as CSV text with cell ``(row, col)`` replaced by ``value`` (a column past the end: one cell of
    that row dropped), sometimes truncated."""
    cells = rows[row]
    if col < len(cells):
        cells[col] = value.replace(",", ";").replace("\n", " ").replace("\r", " ")
    else:
        del cells[data.draw(st.integers(0, len(cells) - 1), label="drop column")]
    text = "\n".join(",".join(r) for r in rows) + "\n"
    if data.draw(st.integers(0, 5), label="truncate?") == 0:
        text = _truncate(text, data)
    return text


@SETTINGS
@given(row=st.integers(0, 3), col=st.integers(0, 6), value=cell_text, data=st.data())
def test_csv_mutations(folders: dict[str, Path], row: int, col: int, value: str, data: st.DataObject) -> None:
    rows = [["image", "xmin", "ymin", "xmax", "ymax", "label"]] + [
        [f"img{i}.jpg", "8", "6", "38", "26", ("cat", "dog")[i % 2]] for i in range(3)]
    (folders["csv"] / "boxes.csv").write_text(_mutated_csv(rows, row, col, value, data))
    loads_or_own_error(folders["csv"] / "boxes.csv", "csv")


@SETTINGS
@given(row=st.integers(0, 3), col=st.integers(0, 9), value=cell_text, data=st.data())
def test_openimages_mutations(folders: dict[str, Path], row: int, col: int, value: str, data: st.DataObject) -> None:
    rows = [OI_HEADER.split(",")] + [f"img{i},human,/m/{('cat', 'dog')[i % 2]},1,0.1,0.5,0.1,0.5,0".split(",")
                                     for i in range(3)]
    (folders["openimages"] / "train-annotations-bbox.csv").write_text(_mutated_csv(rows, row, col, value, data))
    loads_or_own_error(folders["openimages"], "openimages")
