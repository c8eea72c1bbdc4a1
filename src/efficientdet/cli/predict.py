"""``efficientdet predict``: detect objects in images, folders, globs and videos.

Writes into ``--output``: annotated copies (images in their own format, videos at their own frame rate),
``results.json`` (COCO results: ``image_id``, ``category_id`` (the model's dataset id of the class, else
the label index), ``bbox`` as ``[x, y, w, h]``, ``score``), ``images.json`` (the COCO image info the ids refer
to: ``images`` with ``id``, ``file_name``, ``height``, ``width``, and ``categories``) and ``predictions.jsonl``
(one line per image or video frame, with class names).

Image ids: with ``--annotations ann.json`` (a COCO json listing the images, e.g. the dataset they come from or
an ``image_info_test-dev2017.json``) each image gets the id of the entry whose ``file_name`` it ends with, so
``COCO("ann.json").loadRes("results.json")`` works and evaluates; without it, images and video frames are
numbered 1, 2, ... in the order they are read, and ``COCO("images.json").loadRes("results.json")`` loads.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

from efficientdet.cli.options import add_model_options, add_output_option

SCORE_THRESHOLD = 0.25
"""Default ``--score-threshold`` (pass 0.001 for COCO evaluation)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images, folders, globs and videos",
                       description="Detect objects and write annotated copies plus COCO json / JSON lines results.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image or video files, folders (their images and videos) or globs ('data/**/*.jpg')")
    add_model_options(p, "weights file (.safetensors / .pth; from convert, training or effdet) or an exported .onnx "
                         "file (run with onnxruntime)")
    add_output_option(p, "output folder (default runs/predict)", default="runs/predict", metavar="DIR")
    p.add_argument("--annotations", metavar="JSON",
                   help="COCO json listing these images (their dataset): results.json uses its image and category "
                        "ids, so pycocotools loads it against that file (default: ids 1, 2, ... in images.json)")
    p.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD,
                   help=f"keep detections above this score (default {SCORE_THRESHOLD}; 0.001 for COCO evaluation)")
    p.add_argument("--classes", nargs="+", metavar="CLASS", help="only these classes (names or indices)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="inference engine; onnxruntime exports the model once first (tens of seconds; cached for "
                        "later runs) and is the fastest on CPUs (an .onnx --checkpoint always runs with onnxruntime)")
    p.add_argument("--no-optimize", action="store_true",
                   help="torch backend: run the model as built, without folding BatchNorm into the convs")
    p.add_argument("--max-detections", type=int, help="per image (default: the model's, 100)")
    p.add_argument("--nms", choices=("hard", "soft"), help="NMS method (default: the model's)")
    p.add_argument("--tile", type=int, metavar="PX", help="sliced inference on PX x PX tiles (small objects in large "
                                                          "images)")
    p.add_argument("--tile-overlap", type=float, default=0.2, help="overlap of neighbouring tiles (default 0.2)")
    p.add_argument("--no-tile-full", action="store_true", help="with --tile: skip the whole-image pass")
    p.add_argument("--no-images", action="store_true", help="write only the JSON files, no annotated copies")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _expand(sources: list[str]) -> list[Path]:
    """Files named by the sources, in order: files as given, folders' images and videos (sorted), glob matches."""
    from efficientdet.data.images import IMAGE_EXTENSIONS
    from efficientdet.errors import DataError
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


def _category_ids(predictor: Any) -> list[int] | None:
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
        from efficientdet.errors import DataError

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
        if self.annotations is None or source.suffix.lower() not in _image_extensions():
            self.next_id += 1
            return self.next_id - 1
        return self.lookup(source)

    def lookup(self, source: Path) -> int:
        """The dataset's id of an image file: the entry whose ``file_name`` the path ends with."""
        from efficientdet.errors import DataError

        path = source.resolve().as_posix()
        matches = [(name, i) for name, i in self.by_name.get(source.name, []) if path.endswith("/" + name)]
        if len(matches) != 1:
            how = "is not listed" if not matches else f"matches {len(matches)} entries"
            raise DataError(f"image {source} {how} in --annotations {self.annotations} (matched by file_name); "
                            "predict that dataset's images, or leave out --annotations")
        return matches[0][1]


def _image_extensions() -> tuple[str, ...]:
    from efficientdet.data.images import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


class _Results:
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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from efficientdet.errors import ConfigError, DataError
    from efficientdet.predict import Predictor, predict
    from efficientdet.video import VideoReader, is_video

    if args.model is None and args.checkpoint is None:
        raise ConfigError("give --model NAME or --checkpoint FILE (see `efficientdet models` for names)")
    if args.tile is not None and args.tile < 1:
        raise ConfigError(f"--tile must be a positive number of pixels, got {args.tile}")
    files = _expand(args.sources)
    ids = ImageIds(args.annotations)
    for path in files if args.annotations is not None else ():
        if not is_video(path):
            ids.lookup(path)  # every image is in the dataset: fail before loading the model
    settings = dict(score_threshold=args.score_threshold, classes=args.classes, max_detections=args.max_detections,
                    nms=args.nms, batch_size=args.batch_size, device=args.device)
    if args.checkpoint is not None and str(args.checkpoint).endswith(".onnx"):
        predictor = Predictor.from_onnx(args.checkpoint, **settings)
    else:
        predictor = Predictor(args.model, checkpoint=args.checkpoint, dtype=args.dtype, backend=args.backend,
                              optimize=False if args.no_optimize else None, pretrained=args.pretrained,
                              **settings)

    def detect(arrays: list[Any]) -> list[Any]:
        return predict(arrays, predictor, tile=args.tile, tile_overlap=args.tile_overlap,
                       tile_full_image=not args.no_tile_full)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    total = len(images)
    for v in videos:
        with VideoReader(v) as reader:
            total += reader.info.frame_count
    names = list(predictor.label_names) if predictor.label_names is not None else None
    results = _Results(out, ids.category_ids(names) or _category_ids(predictor), ids, names)
    with tqdm(total=total, unit="img", disable=args.no_progress or None, file=sys.stderr) as bar:
        try:
            _predict_images(images, detect, results, args, bar)
            for path in videos:
                _predict_video(path, detect, results, args, bar)
        finally:
            results.close()
    c = results.counts
    if c["skipped"] and not c["images"] and not c["frames"]:
        raise DataError(f"none of the {c['skipped']} files given could be read as images (see the warnings above); "
                        "re-export or remove the broken files ('efficientdet data check' lists them for a dataset)")
    print(f"{c['images']} images, {c['frames']} video frames, {c['detections']} detections "
          f"(score > {args.score_threshold}) -> {out}{os.sep}"
          + (f"; skipped {c['skipped']} unreadable files" if c["skipped"] else ""))
    against = args.annotations if args.annotations is not None else out / "images.json"
    print(f"  {out / 'results.json'}: COCO results (image ids of {against}); "
          f"{out / 'predictions.jsonl'}: one line per image / frame")
    return 0


def _predict_images(images: list[Path], detect: Any, results: _Results, args: argparse.Namespace, bar: Any) -> None:
    import numpy as np

    from efficientdet.data.images import open_image
    from efficientdet.errors import DataError
    from efficientdet.visualize import draw_detections

    for start in range(0, len(images), args.batch_size):
        chunk = images[start: start + args.batch_size]
        arrays, kept = [], []
        for path in chunk:
            try:
                arrays.append(np.asarray(open_image(path)))
                kept.append(path)
            except DataError as err:  # one broken file does not stop a large run
                print(f"warning: skipped {err}", file=sys.stderr)
                results.counts["skipped"] += 1
        for path, array, det in zip(kept, arrays, detect(arrays) if arrays else [], strict=True):
            results.add(det, path, array.shape[:2])
            if not args.no_images:
                _save_image(draw_detections(array, det), results.output_path(path))
        bar.update(len(chunk))


def _predict_video(path: Path, detect: Any, results: _Results, args: argparse.Namespace, bar: Any) -> None:
    from efficientdet.video import VideoReader, VideoWriter
    from efficientdet.visualize import draw_detections

    with VideoReader(path) as reader, contextlib.ExitStack() as stack:
        writer = None
        if not args.no_images:
            writer = stack.enter_context(VideoWriter(results.output_path(path), reader.info.fps, reader.info.size))
        frames = iter(reader)
        number = 0
        while chunk := list(itertools.islice(frames, args.batch_size)):
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
