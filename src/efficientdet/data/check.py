"""Find what is wrong with a dataset before training on it (``efficientdet data check PATH``).

:func:`check_dataset` returns a :class:`CheckReport`: statistics (boxes and images per class, box size
and aspect histograms, images without boxes), and issues, each with its fix:

errors (exit code 1): unreadable / missing images, annotations that name unknown classes (with a hint
when the ids look shifted between 0- and 1-based), entries the parser could not use (each named by file and
entry: annotation id, line, XML object, key), duplicate image ids, non-finite boxes, a dataset with no image
or no box at all;

warnings (exit code 0 unless ``--strict``): boxes outside the image, zero or negative area, boxes that look
like ``yxyx`` or ``xywh`` read as ``xyxy`` or like corners written into COCO's ``xywh`` field, coordinates that
look normalised (0..1) but are read as pixels, classes without boxes (background slots, 1-based labels),
duplicate boxes, duplicate images, image sizes that differ from the annotation or cannot be read, YOLO label
files without an image, and low anchor coverage for the chosen model;

plus the anchor coverage of a model: the share of boxes whose best anchor has IoU >= 0.5 once the image
is letterboxed to the model's (or a given ``image_size``) input size (the official matching threshold), by
COCO size bucket.

:func:`require_usable` is the check training and evaluation run before starting: a dataset with no image,
no existing image file or (training) no usable box is refused with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from efficientdet.data.parsers._common import BACKGROUND_NAMES, ParseProblem
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

ERROR, WARNING, INFO = "error", "warning", "info"
MATCH_IOU = 0.5
"""An anchor 'covers' a box when their IoU reaches this (the official ``match_threshold``)."""
LOW_COVERAGE = 0.9
"""Anchor coverage below this is reported as a warning."""
SIZE_BINS = (0, 8, 16, 32, 64, 128, 256, 512, math.inf)
"""Histogram edges of box size ``sqrt(w * h)`` in pixels (32 and 96 are COCO's small / large limits)."""
ASPECT_BINS = (0, 1 / 4, 1 / 2, 1, 2, 4, math.inf)
"""Histogram edges of box aspect ``w / h``."""
DUPLICATE_BOX_IOU = 0.95
_OUTSIDE_TOLERANCE = 1.0  # pixels a box may stick out of the image before it is reported
_MAX_COVERAGE_BOXES = 20000
_log = logging.getLogger("efficientdet.data")


@dataclass
class Issue:
    """One kind of problem: ``count`` occurrences, the first few ``examples`` (``"file: detail"``), and the fix."""

    severity: str
    code: str
    message: str
    fix: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Statistics and issues of one dataset (see the module docstring)."""

    num_images: int
    num_boxes: int
    label_names: tuple[str, ...]
    boxes_per_class: list[int]
    images_per_class: list[int]
    images_without_boxes: int
    ignored_boxes: int
    size_histogram: list[tuple[str, int]]
    aspect_histogram: list[tuple[str, int]]
    issues: list[Issue] = field(default_factory=list)
    model: str | None = None
    input_size: tuple[int, int] | None = None
    anchor_coverage: float | None = None
    coverage_by_size: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    def issue(self, code: str) -> Issue | None:
        """The issue with ``code``, or ``None`` when the dataset does not have it."""
        return next((i for i in self.issues if i.code == code), None)

    def exit_code(self, strict: bool = False) -> int:
        """1 when there are errors (or warnings and ``strict``), else 0."""
        return int(bool(self.errors) or (strict and bool(self.warnings)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """A text report for the terminal."""
        lines = [f"{self.num_images} images, {self.num_boxes} boxes ({self.ignored_boxes} ignore/crowd/difficult), "
                 f"{len(self.label_names)} classes, {self.images_without_boxes} images without boxes", ""]
        width = max([len(n) for n in self.label_names] + [5])
        lines.append(f"{'class':{width}s} {'boxes':>8s} {'images':>8s}")
        for name, nb, ni in zip(self.label_names, self.boxes_per_class, self.images_per_class, strict=True):
            lines.append(f"{name:{width}s} {nb:8d} {ni:8d}")
        for title, hist in (("box size sqrt(w*h), pixels", self.size_histogram), ("box aspect w/h", self.aspect_histogram)):
            lines += ["", title]
            top = max([c for _, c in hist] + [1])
            for label, count in hist:
                lines.append(f"  {label:>12s} {count:8d} {'#' * round(40 * count / top)}")
        if self.anchor_coverage is not None:
            lines += ["", f"anchor coverage for {self.model} at {self.input_size[0]}x{self.input_size[1]} "  # type: ignore[index]
                      f"(best anchor IoU >= {MATCH_IOU}): {100 * self.anchor_coverage:.1f}%"]
            for bucket, (share, n) in self.coverage_by_size.items():
                lines.append(f"  {bucket:>8s} boxes: {100 * share:5.1f}% of {n}")
        lines.append("")
        if not self.issues:
            lines.append("no problems found")
        for i in sorted(self.issues, key=lambda i: (i.severity != ERROR, i.severity != WARNING)):
            lines.append(f"{i.severity.upper()} [{i.code}] {i.message} ({i.count})")
            for ex in i.examples:
                lines.append(f"    {ex}")
            lines.append(f"  fix: {i.fix}")
        return "\n".join(lines)


class _Issues:
    def __init__(self, max_examples: int) -> None:
        self.by_code: dict[str, Issue] = {}
        self.max_examples = max_examples

    def add(self, severity: str, code: str, message: str, fix: str, example: str | None = None, n: int = 1) -> None:
        issue = self.by_code.setdefault(code, Issue(severity, code, message, fix))
        issue.count += n
        if example is not None and len(issue.examples) < self.max_examples:
            issue.examples.append(example)


def _histogram(values: np.ndarray, edges: tuple[float, ...], fmt: str) -> list[tuple[str, int]]:
    counts, _ = np.histogram(values, bins=np.asarray(edges, dtype=np.float64))
    out = []
    for lo, hi, c in zip(edges[:-1], edges[1:], counts.tolist(), strict=True):
        out.append(((f"< {fmt.format(hi)}" if lo == 0 else f">= {fmt.format(lo)}" if math.isinf(hi)
                     else f"{fmt.format(lo)}-{fmt.format(hi)}"), int(c)))
    return out


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of xyxy boxes (numpy; the datasets' boxes are small per image)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _shift_hint(unknown: set[Any], known: set[Any]) -> str:
    ints_unknown = {u for u in unknown if isinstance(u, int)}
    ints_known = {k for k in known if isinstance(k, int)}
    if ints_unknown and len(ints_unknown) == len(unknown) and ints_known:
        if {u - 1 for u in ints_unknown} <= ints_known and min(ints_known) == 0:
            return (" The ids look 1-based while the classes are 0-based (the highest id is one past the last class): "
                    "subtract 1 from every class id in the labels.")
        if {u + 1 for u in ints_unknown} <= ints_known:
            return (" The ids look 0-based while the classes start at 1: add 1 to every class id in the annotations, "
                    "or number the categories from 0.")
    return ""


def _load(path: str | os.PathLike[str], format: str | None, split: str | None,
          problems: list[ParseProblem]) -> DetectionDataset:
    from efficientdet.data.parsers import load_dataset

    return load_dataset(path, format, split, problems=problems)


def _known_ids(dataset: DetectionDataset) -> set[Any]:
    names_are_ids = all(n.lstrip("-").isdigit() for n in dataset.label_names)
    if dataset.format == "voc" or (dataset.format == "csv" and not names_are_ids):
        return set(dataset.label_names)
    return set(dataset.category_ids)


def check_dataset(
    dataset: DetectionDataset | str | os.PathLike[str],
    model: Any = None,
    *,
    format: str | None = None,
    split: str | None = None,
    images: str = "decode",
    problems: list[ParseProblem] | None = None,
    max_examples: int = 5,
    image_size: int | tuple[int, int] | None = None,
) -> CheckReport:
    """Check a dataset (a parsed one, or a path read with :func:`~efficientdet.data.parsers.load_dataset`).

    Args:
        dataset: the records, or a dataset path (then parse problems are reported instead of raised).
        model: a registered model name or a :class:`~efficientdet.config.DetectorConfig`, for anchor coverage.
        format / split: passed to ``load_dataset`` when ``dataset`` is a path.
        images: ``decode`` (open every image fully: finds truncated files, hashes duplicates), ``header``
            (sizes only, fast), or ``none``.
        problems: parse problems collected by the caller's own ``load_dataset(..., problems=...)`` call.
        max_examples: examples listed per issue.
        image_size: input size ``(H, W)`` (or one int) for the anchor coverage; default the model's own. With no
            ``model``, the default training model (:class:`~efficientdet.config.TrainConfig`) is used.
    """
    if images not in ("decode", "header", "none"):
        raise DataError(f"images={images!r}: use 'decode', 'header' or 'none'")
    problems = list(problems or [])
    source_path = None
    if not isinstance(dataset, DetectionDataset):
        source_path = dataset
        dataset = _load(dataset, format, split, problems)
    issues = _Issues(max_examples)
    k = dataset.num_classes
    _report_parse_problems(dataset, problems, issues)

    sizes = _check_images(dataset, images, issues)
    all_boxes, all_labels, all_ignore, per_image_sizes = [], [], [], []
    box_counts = np.zeros(k, dtype=np.int64)
    image_counts = np.zeros(k, dtype=np.int64)
    empty = 0
    for rec, size in zip(dataset.records, sizes, strict=True):
        labels = rec.labels
        if not len(labels):
            empty += 1
        bad = (labels < 0) | (labels >= k)
        if bad.any():
            issues.add(ERROR, "unknown_class", "labels outside 0..K-1 (unknown classes)",
                       f"labels must index label_names (0..{k - 1}); fix the class list or the labels",
                       f"{rec.path}: labels {sorted(set(labels[bad].tolist()))}", int(bad.sum()))
        good = labels[~bad]
        box_counts += np.bincount(good, minlength=k)[:k]
        image_counts += np.bincount(np.unique(good), minlength=k)[:k]
        all_boxes.append(rec.boxes)
        all_labels.append(labels)
        all_ignore.append(rec.ignore)
        per_image_sizes.append(size)
        _check_boxes_of_image(rec.path, rec.boxes, labels, size, issues)

    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32)
    labels_all = np.concatenate(all_labels) if all_labels else np.zeros(0, np.int64)
    _check_box_formats(dataset, per_image_sizes, boxes, issues)
    _check_classes(dataset, box_counts, labels_all, issues)

    wh = (boxes[:, 2:] - boxes[:, :2]).astype(np.float64) if len(boxes) else np.zeros((0, 2))
    valid = (wh > 0).all(1) & np.isfinite(wh).all(1)
    report = CheckReport(
        num_images=len(dataset.records),
        num_boxes=int(len(boxes)),
        label_names=dataset.label_names,
        boxes_per_class=box_counts.tolist(),
        images_per_class=image_counts.tolist(),
        images_without_boxes=empty,
        ignored_boxes=int(sum(int(i.sum()) for i in all_ignore if i is not None)),
        size_histogram=_histogram(np.sqrt(wh[valid].prod(1)), SIZE_BINS, "{:g}"),
        aspect_histogram=_histogram(wh[valid, 0] / wh[valid, 1], ASPECT_BINS, "{:.3g}"),
    )
    source = str(source_path) if source_path is not None else None
    if not report.num_images:
        issues.add(ERROR, "no_images", "the dataset lists no images", "check the path, split and format: there "
                   "is nothing to train or evaluate on", source)
    elif not report.num_boxes:
        issues.add(ERROR, "no_boxes", "the dataset has no boxes at all", "check the annotation file (a test-dev image "
                   "list has none) and the split; training needs boxes", source)
    if model is not None or image_size is not None:
        _anchor_coverage(report, dataset, per_image_sizes, model, image_size, issues)
    report.issues = list(issues.by_code.values())
    return report


def require_usable(dataset: DetectionDataset, source: object, what: str = "training set", *,
                   boxes: bool = True) -> None:
    """Refuse, with the reason, a dataset that cannot be trained (``boxes=True``) or evaluated on.

    :class:`DataError` when it lists no image, when none of its image files exists (a wrong image folder), or
    (``boxes``) when no existing image has a usable box (finite, positive size, not ignore/crowd). Missing image
    files short of all are logged (the loader skips them). ``source`` names the dataset in the messages.
    """
    from efficientdet.data.dataset import valid_box_mask

    records = dataset.records
    if not records:
        raise DataError(f"the {what} {source} lists no images; check the path, the split and the format "
                        "(efficientdet data check PATH shows what is read)")
    present = [r for r in records if r.path.is_file()]
    if not present:
        raise DataError(f"none of the {len(records)} images of the {what} {source} exists (e.g. {records[0].path}); "
                        f"the image folder {dataset.root} is wrong or empty: fix the paths in the annotations or pass "
                        "the image folder (COCO: image_dir=)")
    if len(present) < len(records):
        missing = [str(r.path) for r in records if not r.path.is_file()]
        _log.warning("%d of %d images of the %s %s are missing and will be skipped, e.g. %s", len(missing),
                     len(records), what, source, ", ".join(missing[:3]))
    if boxes and not any(valid_box_mask(r.boxes[~r.ignore]).any() for r in present):  # type: ignore[operator]
        raise DataError(f"the {what} {source} has no usable box in its {len(present)} images (none at all, or only "
                        "empty, non-finite or crowd/difficult boxes); there is nothing to learn from. Run "
                        "'efficientdet data check' on it")


def _report_parse_problems(dataset: DetectionDataset, problems: list[ParseProblem], issues: _Issues) -> None:
    unknown: set[Any] = set()
    for p in problems:
        if p.kind == "unknown_class":
            unknown.update(p.ids)
    hint = _shift_hint(unknown, _known_ids(dataset)) if unknown else ""
    for p in problems:
        if p.kind == "unknown_class":
            issues.add(ERROR, "unknown_class", "annotations name classes that are not in the class list",
                       "add the classes to the class list, or fix the ids." + hint, f"{p.file}: {p.message}")
        elif p.kind == "missing_image":
            issues.add(ERROR, "unreadable_image", "images that are missing or cannot be decoded",
                       "restore or re-export these files, or remove their annotations", f"{p.file}: {p.message}")
        elif p.kind == "duplicate_id":
            issues.add(ERROR, "duplicate_image_id", "several images share one image id",
                       "give every image a unique id (annotations find their image by id)", f"{p.file}: {p.message}")
        elif p.kind == "bad_size":
            issues.add(WARNING, "bad_image_size", "image sizes in the annotation that cannot be read",
                       "fix or remove them (the size is read from the image file instead)", f"{p.file}: {p.message}")
        elif p.kind == "orphan_label":
            issues.add(WARNING, "label_without_image", "label files without an image",
                       "restore the images, or remove the label files (their boxes are not used)",
                       f"{p.file}: {p.message}")
        else:
            issues.add(ERROR, "bad_annotation", "annotation entries that cannot be used (each names the file and "
                       "the entry: annotation id, line, XML object, key)",
                       "fix or remove these entries as each message says; training and evaluation refuse the dataset "
                       "until they are fixed", f"{p.file}: {p.message}")


def _check_images(dataset: DetectionDataset, mode: str, issues: _Issues) -> list[tuple[int, int] | None]:
    """The size of every image (annotation size when the image cannot be read); reports unreadable files,
    size mismatches and duplicate files."""
    from efficientdet.data.images import image_size, open_image

    sizes: list[tuple[int, int] | None] = []
    hashes: dict[str, list[str]] = defaultdict(list)
    for rec in dataset.records:
        size = rec.size
        if mode != "none":
            try:
                if mode == "decode":
                    data = rec.path.read_bytes()
                    hashes[hashlib.sha1(data).hexdigest()].append(str(rec.path))
                    w, h = open_image(data, str(rec.path)).size
                    actual = (h, w)
                else:
                    actual = image_size(rec.path)
            except (DataError, OSError) as err:
                issues.add(ERROR, "unreadable_image", "images that are missing or cannot be decoded",
                           "restore or re-export these files, or remove them from the annotations",
                           f"{rec.path}: {err}")
            else:
                if size is not None and tuple(size) != actual:
                    swapped = tuple(size) == actual[::-1]
                    issues.add(WARNING, "size_mismatch", "image sizes that differ from the annotation",
                               "fix height/width in the annotation file; a swapped size usually means an EXIF-rotated "
                               "photo annotated before rotation: re-annotate on the upright image or strip the EXIF "
                               "orientation",
                               f"{rec.path}: annotation {size[0]}x{size[1]}, image {actual[0]}x{actual[1]}"
                               + (" (swapped: EXIF rotation?)" if swapped else ""))
                size = actual
        sizes.append(tuple(size) if size is not None else None)  # type: ignore[arg-type]
    for paths in hashes.values():
        if len(paths) > 1:
            issues.add(WARNING, "duplicate_images", "identical image files listed more than once",
                       "keep one copy (merge their annotations); duplicates across train/val leak the test set",
                       " == ".join(paths[:3]), len(paths) - 1)
    return sizes


def _check_boxes_of_image(path: Path, boxes: np.ndarray, labels: np.ndarray, size: tuple[int, int] | None,
                          issues: _Issues) -> None:
    if not len(boxes):
        return
    finite = np.isfinite(boxes).all(1)
    if not finite.all():
        issues.add(ERROR, "non_finite_box", "boxes with NaN or infinite coordinates",
                   "fix or remove these boxes", f"{path}: {int((~finite).sum())} boxes", int((~finite).sum()))
    b = boxes[finite]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    bad = (w <= 0) | (h <= 0)
    if bad.any():
        first = b[bad][0].tolist()
        issues.add(WARNING, "zero_area", "boxes with zero or negative width or height (x2 <= x1 or y2 <= y1)",
                   "remove degenerate boxes or fix their corner order; the loader drops them",
                   f"{path}: e.g. {[round(v, 2) for v in first]}", int(bad.sum()))
    if size is not None:
        ih, iw = size
        tol = _OUTSIDE_TOLERANCE
        out = (b[:, 0] < -tol) | (b[:, 1] < -tol) | (b[:, 2] > iw + tol) | (b[:, 3] > ih + tol)
        if out.any():
            first = b[out][0].tolist()
            issues.add(WARNING, "box_outside_image", "boxes reaching outside the image",
                       "clip them to the image (the loader clips, but large overflows usually mean a wrong image "
                       "size, box format or coordinate scale)",
                       f"{path} ({iw}x{ih}): e.g. {[round(v, 1) for v in first]}", int(out.sum()))
    # duplicates: same class, IoU >= DUPLICATE_BOX_IOU
    lab = labels[finite]
    for c in np.unique(lab):
        cb = b[lab == c]
        if len(cb) < 2:
            continue
        iou = np.triu(_pairwise_iou(cb, cb), 1)
        dup = int((iou >= DUPLICATE_BOX_IOU).any(0).sum())
        if dup:
            issues.add(WARNING, "duplicate_boxes", f"boxes annotated twice (same class, IoU >= {DUPLICATE_BOX_IOU})",
                       "remove the duplicates: they double the object's weight in training and count as false "
                       "negatives in evaluation", f"{path}: {dup} duplicate(s) of class {int(c)}", dup)


def _check_box_formats(dataset: DetectionDataset, sizes: list[tuple[int, int] | None], boxes: np.ndarray,
                       issues: _Issues) -> None:
    """Dataset-wide signs of a wrong box convention: normalised coordinates, xywh, yxyx."""
    finite = boxes[np.isfinite(boxes).all(1)] if len(boxes) else boxes
    if not len(finite):
        return
    known = [s for s in sizes if s is not None]
    if known and float(np.abs(finite).max()) <= 1.5 and min(min(s) for s in known) > 16:
        issues.add(WARNING, "normalized_coordinates", "all box coordinates are within 0..1.5: they look normalised "
                   "(fractions of the image size) but are read as pixels",
                   "multiply x by the image width and y by the height (YOLO and OpenImages files are normalised: read "
                   "them with format='yolo' / 'openimages')", n=len(finite))
        return
    # xywh read as xyxy: many "x2 < x1" boxes that become valid, in-image boxes as (x, y, w, h)
    rows = []
    for rec, size in zip(dataset.records, sizes, strict=True):
        if size is not None and len(rec.boxes):
            b = rec.boxes[np.isfinite(rec.boxes).all(1)]
            rows.append(np.concatenate([b, np.broadcast_to(np.asarray(size, np.float32)[None, ::-1], (len(b), 2))], 1))
    if not rows:
        return
    arr = np.concatenate(rows).astype(np.float64)  # x1 y1 x2 y2 W H
    x1, y1, x2, y2, iw, ih = arr.T
    n = len(arr)
    inverted = (x2 <= x1) | (y2 <= y1)
    as_xywh_ok = (x2 > 0) & (y2 > 0) & (x1 >= -1) & (y1 >= -1) & (x1 + x2 <= iw + 1) & (y1 + y2 <= ih + 1)
    # normal xyxy data rarely fits as xywh: a box in the right half would end beyond the image
    if inverted.any() and inverted.mean() >= 0.05 and as_xywh_ok.mean() >= 0.95:
        issues.add(WARNING, "looks_like_xywh", f"{100 * inverted.mean():.0f}% of the boxes have x2 <= x1 or y2 <= y1, "
                   "but all fit the image as (x, y, width, height): the boxes look like xywh read as xyxy",
                   "convert with x2 = x + w, y2 = y + h (COCO json 'bbox' is xywh and is converted by format='coco')",
                   n=int(inverted.sum()))
    if dataset.format == "coco":
        _check_coco_xyxy(x1, y1, x2, y2, iw, ih, issues)
    # yxyx read as xyxy: boxes outside the image that fit once x and y are swapped (non-square images)
    outside = (x2 > iw + _OUTSIDE_TOLERANCE) | (y2 > ih + _OUTSIDE_TOLERANCE)
    swapped_fit = (y2 <= iw + _OUTSIDE_TOLERANCE) & (x2 <= ih + _OUTSIDE_TOLERANCE) & (x1 >= -1) & (y1 >= -1)
    fits = outside & swapped_fit
    if fits.sum() >= max(2, 0.05 * n) and fits.sum() >= 0.8 * outside.sum():
        issues.add(WARNING, "looks_like_yxyx", f"{int(outside.sum())} boxes reach outside the image but fit once x "
                   "and y are swapped: the boxes look like (y1, x1, y2, x2) read as (x1, y1, x2, y2)",
                   "reorder the coordinates to x1, y1, x2, y2 (TensorFlow / the official EfficientDet use yxyx)",
                   n=int(fits.sum()))


def _check_coco_xyxy(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, iw: np.ndarray, ih: np.ndarray,
                     issues: _Issues) -> None:
    """COCO ``bbox`` holding ``[x1, y1, x2, y2]`` instead of ``[x, y, width, height]``: read as xywh, such boxes end
    at ``x1 + x2`` (often outside the image), while the fields themselves are corners inside it (``w > x``,
    ``h > y`` for every box, which real xywh data seldom has)."""
    w_field, h_field = x2 - x1, y2 - y1  # the bbox's 3rd and 4th values as written
    tol = _OUTSIDE_TOLERANCE
    outside = (x2 > iw + tol) | (y2 > ih + tol)
    as_corners = (w_field > x1) & (h_field > y1) & (w_field <= iw + tol) & (h_field <= ih + tol)
    if outside.any() and as_corners.mean() >= 0.95 and as_corners[outside].all():
        issues.add(WARNING, "looks_like_xyxy_in_coco", f"{int(outside.sum())} boxes reach outside the image, and "
                   "every bbox fits the image when its values are read as corners: the COCO 'bbox' fields look "
                   "like [x1, y1, x2, y2] written where COCO expects [x, y, width, height]",
                   "write bbox as [x1, y1, x2 - x1, y2 - y1] (COCO's xywh); the tool that wrote the file used xyxy",
                   n=int(outside.sum()))


def _check_classes(dataset: DetectionDataset, box_counts: np.ndarray, labels: np.ndarray, issues: _Issues) -> None:
    k = dataset.num_classes
    unused = [i for i in range(k) if box_counts[i] == 0]
    if not unused or not len(labels):
        return
    for i in unused:
        name = dataset.label_names[i]
        if name.lower() in BACKGROUND_NAMES:
            issues.add(WARNING, "background_class", "a background class with no boxes",
                       "remove it from the class list: EfficientDet has no background slot (the classifier is "
                       "sigmoid per class), so it only wastes an output",
                       f"label {i} ({name!r}, dataset id {dataset.category_ids[i]})")
    in_range = labels[(labels >= 0) & (labels < k)]
    if 0 in unused and len(in_range) and (labels == k).any():
        issues.add(WARNING, "one_based_labels", "label 0 is never used while labels reach K (one past the last "
                   "class): the labels look 1-based",
                   "subtract 1 from every label (labels run 0..K-1, no background slot)", n=int((labels == k).sum()))
    rest = [i for i in unused if dataset.label_names[i].lower() not in BACKGROUND_NAMES]
    if rest:
        names = ", ".join(f"{i}:{dataset.label_names[i]}" for i in rest[:10])
        issues.add(WARNING, "empty_class", "classes without any box", "check the class list and the label ids "
                   "(0- vs 1-based?); a class never seen in training is never predicted", names, len(rest))


def _anchor_coverage(report: CheckReport, dataset: DetectionDataset, sizes: list[tuple[int, int] | None],
                     model: Any, image_size: int | tuple[int, int] | None, issues: _Issues) -> None:
    import torch
    from torchvision.ops import box_iou

    from efficientdet.config import DetectorConfig, TrainModelConfig
    from efficientdet.data.preprocess import letterbox_scale
    from efficientdet.factory import model_config
    from efficientdet.modeling.anchors import generate_anchors

    cfg = model_config(model if model is not None else TrainModelConfig.model)
    name = model.name if isinstance(model, DetectorConfig) else str(model or TrainModelConfig.model)
    size = cfg.preprocess.image_size if image_size is None else image_size
    input_size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise DataError(f"image size {size!r}: give one positive int or (height, width)")
    anchors = generate_anchors(cfg.anchors, input_size)  # type: ignore[arg-type]
    scaled = []
    for rec, size in zip(dataset.records, sizes, strict=True):
        if size is None or not len(rec.boxes):
            continue
        keep = ~rec.ignore & np.isfinite(rec.boxes).all(1)  # type: ignore[operator]
        b = rec.boxes[keep]
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        scale, _ = letterbox_scale(size, input_size)  # type: ignore[arg-type]
        scaled.append(b.astype(np.float64) * scale)
    report.model, report.input_size = name, input_size  # type: ignore[assignment]
    if not scaled:
        return
    boxes = np.concatenate(scaled)
    if len(boxes) > _MAX_COVERAGE_BOXES:  # an even sample keeps the check fast on large datasets
        boxes = boxes[np.linspace(0, len(boxes) - 1, _MAX_COVERAGE_BOXES).astype(np.int64)]
    best = []
    for chunk in torch.from_numpy(boxes.astype(np.float32)).split(256):
        best.append(box_iou(chunk, anchors).max(1).values)
    best_iou = torch.cat(best).numpy()
    covered = best_iou >= MATCH_IOU
    report.anchor_coverage = float(covered.mean())
    side = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))
    for bucket, lo, hi in (("small", 0, 32), ("medium", 32, 96), ("large", 96, math.inf)):
        sel = (side >= lo) & (side < hi)
        if sel.any():
            report.coverage_by_size[bucket] = (float(covered[sel].mean()), int(sel.sum()))
    if report.anchor_coverage < LOW_COVERAGE:
        smallest = float(anchors[:, 2:].sub(anchors[:, :2]).prod(1).sqrt().min())
        tiny = float((side[~covered] < smallest / 2).mean()) if (~covered).any() else 0.0
        ratios = Counter(np.round(np.log2((boxes[~covered, 2] - boxes[~covered, 0]) /
                                          (boxes[~covered, 3] - boxes[~covered, 1]))).astype(int).tolist())
        shape = ", ".join(f"w/h~{2.0 ** r:g}: {c}" for r, c in ratios.most_common(3))
        issues.add(WARNING, "low_anchor_coverage",
                   f"only {100 * report.anchor_coverage:.1f}% of the boxes have an anchor with IoU >= {MATCH_IOU} at "
                   f"{input_size[0]}x{input_size[1]}; uncovered boxes are never positives in training",
                   f"{100 * tiny:.0f}% of the uncovered boxes are under half the smallest anchor ({smallest:.0f} px): "
                   "use a larger input size or a smaller anchor_scale; for unusual shapes add aspect ratios "
                   f"(uncovered shapes: {shape})", n=int((~covered).sum()))


__all__ = ["Issue", "CheckReport", "check_dataset", "require_usable", "MATCH_IOU", "LOW_COVERAGE", "SIZE_BINS", "ASPECT_BINS"]
