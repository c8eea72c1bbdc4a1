"""``efficientdet predict``: detect objects in images, folders, globs and videos.

Runs :func:`efficientdet.predict_files.predict_files` (what it writes and how images get their ids: that
module's docstring) and prints a summary.
"""

from __future__ import annotations

import argparse
import os

from efficientdet.cli.options import add_model_options, add_output_option
from efficientdet.config import PRECISIONS, NmsMethod, choices

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
    p.add_argument("--dtype", choices=PRECISIONS, default="float32")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="inference engine; onnxruntime exports the model once first (tens of seconds; cached for "
                        "later runs) and is the fastest on CPUs (an .onnx --checkpoint always runs with onnxruntime)")
    p.add_argument("--no-optimize", action="store_true",
                   help="torch backend: run the model as built, without folding BatchNorm into the convs")
    p.add_argument("--max-detections", type=int, help="per image (default: the model's, 100)")
    p.add_argument("--nms", choices=choices(NmsMethod), help="NMS method (default: the model's)")
    p.add_argument("--tile", type=int, metavar="PX", help="sliced inference on PX x PX tiles (small objects in large "
                                                          "images)")
    p.add_argument("--tile-overlap", type=float, default=0.2, help="overlap of neighbouring tiles (default 0.2)")
    p.add_argument("--no-tile-full", action="store_true", help="with --tile: skip the whole-image pass")
    p.add_argument("--no-images", action="store_true", help="write only the JSON files, no annotated copies")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efficientdet.predict_files import predict_files

    report = predict_files(
        args.sources, args.model, checkpoint=args.checkpoint, pretrained=args.pretrained, output=args.output,
        annotations=args.annotations, tile=args.tile, tile_overlap=args.tile_overlap,
        tile_full_image=not args.no_tile_full, draw=not args.no_images, progress=not args.no_progress,
        score_threshold=args.score_threshold, classes=args.classes, max_detections=args.max_detections, nms=args.nms,
        batch_size=args.batch_size, device=args.device, dtype=args.dtype, backend=args.backend,
        optimize=False if args.no_optimize else None, spinning=False,
    )
    c, out = report.counts, report.output
    print(f"{c['images']} images, {c['frames']} video frames, {c['detections']} detections "
          f"(score > {args.score_threshold}) -> {out}{os.sep}"
          + (f"; skipped {c['skipped']} unreadable files" if c["skipped"] else ""))
    print(f"  {report.results}: COCO results (image ids of {report.image_info}); "
          f"{out / 'predictions.jsonl'}: one line per image / frame")
    return 0
