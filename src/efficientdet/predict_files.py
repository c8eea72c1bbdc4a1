"""Detections of image and video files, written to a folder: what ``efficientdet predict`` runs.

:func:`predict_files` expands the sources (files, folders, globs), predicts images in batches and videos frame by
frame, and writes into ``output``:

- annotated copies (images in their own format, videos at their own frame rate), unless ``draw=False``;
- ``results.json``: COCO results (``image_id``, ``category_id`` (the model's dataset id of the class, else the
  label index), ``bbox`` as ``[x, y, w, h]``, ``score``);
- ``images.json``: the COCO image info the ids refer to (``images`` with ``id``, ``file_name``, ``height``,
  ``width``, and ``categories``);
- ``predictions.jsonl``: one line per image or video frame, with class names.

Image ids (:class:`ImageIds`): with ``annotations`` (a COCO json listing the images, e.g. the dataset they come
from or an ``image_info_test-dev2017.json``) each image gets the id of the entry whose ``file_name`` it ends
with, so ``COCO(annotations).loadRes("results.json")`` works and evaluates; without it, images and video frames
are numbered 1, 2, ... in the order they are read, and ``COCO("images.json").loadRes("results.json")`` loads.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efficientdet.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Detect = Callable[[list[Any]], list[Any]]
"""Detections of a list of ``[H, W, 3]`` uint8 arrays, one per array."""


@dataclass
class FilesReport:
    """What :func:`predict_files` did: counts (``images``, ``frames``, ``detections``, ``skipped``) and files."""

    output: Path
    counts: dict[str, int] = field(default_factory=dict)
    annotations: Path | None = None

    @property
    def results(self) -> Path:
        """The COCO results json."""
        return self.output / "results.json"

    @property
    def image_info(self) -> Path:
        """The COCO json the ids of :attr:`results` refer to: ``annotations`` when given, else ``images.json``."""
        return self.annotations if self.annotations is not None else self.output / "images.json"


def predict_files(sources: Sequence[str | os.PathLike[str]], model: Any = None, *,
                  output: str | os.PathLike[str] = "runs/predict", annotations: str | os.PathLike[str] | None = None,
                  tile: int | None = None, tile_overlap: float = 0.2, tile_full_image: bool = True,
                  draw: bool = True, progress: bool = True, **settings: Any) -> FilesReport:
    """Predict every image and video frame of ``sources`` and write the results into ``output`` (module docstring).

    Args:
        sources: image or video files, folders (their images and videos, sorted) or globs (``data/**/*.jpg``).
        model: a registered name, a weights file, an exported ``.onnx`` file, an :class:`EfficientDet` or a ready
            :class:`~efficientdet.predict.Predictor` (then give no ``settings``).
        output: the folder to write into (created).
        annotations: a COCO json listing these images; its image and category ids are used (see :class:`ImageIds`).
        tile: sliced inference on ``tile x tile`` pixel tiles, see :func:`efficientdet.predict.predict`.
        draw: write annotated copies of the images and videos.
        progress: show a progress bar on stderr.
        settings: :class:`~efficientdet.predict.Predictor` settings (``checkpoint=``, ``score_threshold=``,
            ``batch_size=``, ``device=``, ``dtype=``, ``backend=`` ...); the torch-only ones (``dtype``,
            ``backend``, ``optimize``, ``pretrained``) are not given to an ``.onnx`` file.

    Returns:
        a :class:`FilesReport`. Unreadable image files are skipped with a warning; :class:`DataError` when none
        could be read, or when an image is missing from ``annotations`` (before the model is loaded).
    """
    from tqdm import tqdm

    from efficientdet.video import VideoReader, is_video

    if tile is not None and tile < 1:
        raise ConfigError(f"--tile must be a positive number of pixels, got {tile}")
    files = expand_sources([str(s) for s in sources])
    ids = ImageIds(annotations)
    for path in files if annotations is not None else ():
        if not is_video(path):
            ids.lookup(path)  # every image is in the dataset: fail before loading the model
    predictor = _predictor(model, settings)

    def detect(arrays: list[Any]) -> list[Any]:
        from efficientdet import predict as predict_module

        return predict_module.predict(arrays, predictor, tile=tile, tile_overlap=tile_overlap,
                                      tile_full_image=tile_full_image)

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    total = len(images)
    for v in videos:
        with VideoReader(v) as reader:
            total += reader.info.frame_count
    names = list(predictor.label_names) if predictor.label_names is not None else None
    results = ResultsWriter(out, ids.category_ids(names) or dataset_category_ids(predictor), ids, names)
    with tqdm(total=total, unit="img", disable=not progress or None, file=sys.stderr) as bar:
        try:
            _predict_images(images, detect, results, predictor.batch_size, draw, bar)
            for path in videos:
                _predict_video(path, detect, results, predictor.batch_size, draw, bar)
        finally:
            results.close()
    c = results.counts
    if c["skipped"] and not c["images"] and not c["frames"]:
        names = ", ".join(str(p) for p in results.skipped[:5]) + (", ..." if len(results.skipped) > 5 else "")
        raise DataError(f"none of the {c['skipped']} files given could be read as images ({names}; see the warnings "
                        "above); re-export or remove the broken files ('efficientdet data check' lists them for a "
                        "dataset)")
    return FilesReport(out, dict(c), ids.annotations)


_TORCH_ONLY = ("dtype", "backend", "optimize", "pretrained", "channels_last", "compile")


def _predictor(model: Any, settings: dict[str, Any]) -> Any:
    """The :class:`Predictor` of ``model`` (an exported ``.onnx`` file, given as ``model`` or ``checkpoint=``, gets
    the settings that apply to it)."""
    from efficientdet.predict import Predictor

    if isinstance(model, Predictor):
        if settings:
            raise ConfigError(f"predict_files() got settings ({', '.join(settings)}) with a ready Predictor")
        return model
    checkpoint = settings.get("checkpoint")
    onnx = next((s for s in (checkpoint, model) if s is not None and str(s).endswith(".onnx")), None)
    if onnx is None:
        return Predictor(model, **settings)
    kept = {k: v for k, v in settings.items() if k not in _TORCH_ONLY and k != "checkpoint"}
    return Predictor.from_onnx(onnx, **kept)


def expand_sources(sources: list[str]) -> list[Path]:
    """Files named by the sources, in order: files as given, folders' images and videos (sorted), glob matches."""
    from efficientdet.data.images import IMAGE_EXTENSIONS
    from efficientdet.video import VIDEO_EXTENSIONS

    wanted = tuple(IMAGE_EXTENSIONS) + VIDEO_EXTENSIONS
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
        elif glob.has_magic(source):
            files += sorted(Path(p) for p in glob.glob(source, recursive=True)
                            if Path(p).is_file() and Path(p).suffix.lower() in wanted)
        else:
            raise DataError(f"source {source!r} does not exist; give image or video files, folders or globs")
    if not files:
        raise DataError(f"no images or videos found in {' '.join(sources)} (looked for {', '.join(wanted)})")
    return files


def dataset_category_ids(predictor: Any) -> list[int] | None:
    """Dataset ids of the labels: the model's own, else COCO's for the 90 COCO classes, else ``None`` (id = label)."""
    from efficientdet.registry import COCO90_CATEGORY_IDS, COCO90_LABEL_NAMES

    if predictor.category_ids is not None:
        return list(predictor.category_ids)
    if predictor.label_names is not None and tuple(predictor.label_names) == COCO90_LABEL_NAMES:
        return list(COCO90_CATEGORY_IDS)
    return None


class ImageIds:
    """The COCO image ids of the predicted images: a dataset's (matched by ``file_name``) or 1, 2, ... in order."""

    def __init__(self, annotations: str | os.PathLike[str] | None = None) -> None:
        self.annotations = Path(annotations) if annotations is not None else None
        self.by_name: dict[str, list[tuple[str, int]]] = {}  # base name -> (file_name, id) of the dataset's images
        self.categories: list[dict[str, Any]] | None = None
        self.next_id = 1
        if self.annotations is not None:
            self._read(self.annotations)

    def _read(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise DataError(f"--annotations {path} does not exist; give the COCO json of these images") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"--annotations {path} is not readable JSON ({err}); give a COCO json") from err
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise DataError(f"--annotations {path} has no \"images\" list; give a COCO json (with images "
                            "entries holding id and file_name)")
        for n, entry in enumerate(images):
            if not (isinstance(entry, dict) and isinstance(entry.get("id"), int)
                    and isinstance(entry.get("file_name"), str)):
                raise DataError(f"--annotations {path}: images[{n}] needs an integer \"id\" and a \"file_name\"")
            name = entry["file_name"].replace("\\", "/")
            self.by_name.setdefault(name.rsplit("/", 1)[-1], []).append((name, entry["id"]))
            self.next_id = max(self.next_id, entry["id"] + 1)  # video frames get ids after the dataset's
        categories = data.get("categories")
        self.categories = categories if isinstance(categories, list) else None

    def category_ids(self, label_names: list[str] | None) -> list[int] | None:
        """The dataset's category id of each label, matched by name (``None`` unless every name is found)."""
        if self.categories is None or label_names is None:
            return None
        by_name = {c.get("name"): c.get("id") for c in self.categories if isinstance(c, dict)}
        ids = [by_name.get(name) for name in label_names]
        return ids if all(isinstance(i, int) for i in ids) else None  # type: ignore[return-value]

    def assign(self, source: Path) -> int:
        """The id of an image (a new running number for video frames and without ``--annotations``)."""
        from efficientdet.data.images import IMAGE_EXTENSIONS

        if self.annotations is None or source.suffix.lower() not in IMAGE_EXTENSIONS:
            self.next_id += 1
            return self.next_id - 1
        return self.lookup(source)

    def lookup(self, source: Path) -> int:
        """The dataset's id of an image file: the entry whose ``file_name`` the path ends with."""
        path = source.resolve().as_posix()
        matches = [(name, i) for name, i in self.by_name.get(source.name, []) if path.endswith("/" + name)]
        if len(matches) != 1:
            how = "is not listed" if not matches else f"matches {len(matches)} entries"
            raise DataError(f"image {source} {how} in --annotations {self.annotations} (matched by file_name); "
                            "predict that dataset's images, or leave out --annotations")
        return matches[0][1]


class ResultsWriter:
    """Writes one JSON line per image / frame as it comes and collects the COCO rows and image info."""

    def __init__(self, out: Path, category_ids: list[int] | None, ids: ImageIds,
                 label_names: list[str] | None) -> None:
        self.out, self.category_ids, self.ids = out, category_ids, ids
        self.lines = open(out / "predictions.jsonl", "w", encoding="utf-8")  # closed by close()
        self.coco: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []
        self.label_names = label_names
        self.counts = {"images": 0, "frames": 0, "detections": 0, "skipped": 0}
        self.used_names: set[str] = set()
        self.skipped: list[Path] = []  # image files that could not be read

    def add(self, det: Any, source: Path, size: tuple[int, int], frame: int | None = None) -> None:
        image_id = self.ids.assign(source)
        self.coco += det.to_coco(image_id, self.category_ids)
        info: dict[str, Any] = {"id": image_id, "file_name": str(source), "height": size[0], "width": size[1]}
        row: dict[str, Any] = {"source": str(source)}
        if frame is not None:
            row["frame"] = info["frame"] = frame
        self.images.append(info)
        row.update({"image_id": image_id, "height": size[0], "width": size[1], "detections": [
            {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label, "name": name}
            for box, score, label, name in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(),
                                               det.names, strict=True)
        ]})
        self.lines.write(json.dumps(row) + "\n")
        self.counts["images" if frame is None else "frames"] += 1
        self.counts["detections"] += len(det)

    def output_path(self, source: Path) -> Path:
        """``out / source.name``, made unique (``name_1.jpg``) when two sources share a name."""
        name, n = source.name, 1
        while name in self.used_names:
            name = f"{source.stem}_{n}{source.suffix}"
            n += 1
        self.used_names.add(name)
        return self.out / name

    def _categories(self) -> list[dict[str, Any]]:
        if self.ids.categories is not None:
            return self.ids.categories
        ids = {row["category_id"] for row in self.coco} | set(self.category_ids or ())
        names = dict(zip(self.category_ids or range(len(self.label_names or ())), self.label_names or (), strict=False))
        return [{"id": i, "name": names.get(i, str(i))} for i in sorted(ids)]

    def close(self) -> None:
        self.lines.close()
        with open(self.out / "results.json", "w", encoding="utf-8") as f:
            json.dump(self.coco, f)
        with open(self.out / "images.json", "w", encoding="utf-8") as f:
            json.dump({"images": self.images, "annotations": [], "categories": self._categories()}, f)


def _predict_images(images: list[Path], detect: Detect, results: ResultsWriter, batch_size: int, draw: bool,
                    bar: Any) -> None:
    import numpy as np

    from efficientdet.data.images import open_image
    from efficientdet.visualize import draw_detections

    for start in range(0, len(images), batch_size):
        chunk = images[start: start + batch_size]
        arrays, kept = [], []
        for path in chunk:
            try:
                arrays.append(np.asarray(open_image(path)))
                kept.append(path)
            except DataError as err:  # one broken file does not stop a large run
                log.warning("skipped %s", err)
                results.counts["skipped"] += 1
                results.skipped.append(path)
        for path, array, det in zip(kept, arrays, detect(arrays) if arrays else [], strict=True):
            results.add(det, path, array.shape[:2])
            if draw:
                _save_image(draw_detections(array, det), results.output_path(path))
        bar.update(len(chunk))


def _predict_video(path: Path, detect: Detect, results: ResultsWriter, batch_size: int, draw: bool,
                   bar: Any) -> None:
    from efficientdet.video import VideoReader, VideoWriter
    from efficientdet.visualize import draw_detections

    with VideoReader(path) as reader, contextlib.ExitStack() as stack:
        writer = None
        if draw:
            writer = stack.enter_context(VideoWriter(results.output_path(path), reader.info.fps, reader.info.size))
        frames = iter(reader)
        number = 0
        while chunk := list(itertools.islice(frames, batch_size)):
            for frame, det in zip(chunk, detect(chunk), strict=True):
                results.add(det, path, frame.shape[:2], frame=number)
                if writer is not None:
                    writer.write(draw_detections(frame, det))
                number += 1
            bar.update(len(chunk))


def _save_image(image: Any, path: Path) -> None:
    """Save in the source's format (JPEG at quality 95)."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path)


__all__ = ["predict_files", "FilesReport", "ImageIds", "ResultsWriter", "expand_sources", "dataset_category_ids"]
