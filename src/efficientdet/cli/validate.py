"""``efficientdet validate``: evaluate a model on a dataset (COCO, VOC or OpenImages metrics)."""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_model_options, add_output_option
from efficientdet.config import AmpMode, NmsMethod, PostprocessMode, choices


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="evaluate a model: COCO summary, per-class AP, results json, PR curves")
    p.add_argument("data", help="dataset: COCO json, VOC/YOLO folder, OpenImages csv, ...")
    add_model_options(p, "weights to evaluate (training checkpoint: EMA weights unless --raw)")
    p.add_argument("--raw", action="store_true", help="evaluate the raw weights of a training checkpoint, not the EMA")
    p.add_argument("--format", dest="data_format", help="dataset format (default: detect)")
    p.add_argument("--split", help="part to evaluate, for datasets with splits: VOC image set, YOLO data.yaml split, "
                                   "COCO json of a folder (default val)")
    p.add_argument("--metric", default="coco", choices=["coco", "voc07", "voc", "openimages"])
    p.add_argument("--mode", choices=choices(PostprocessMode), help="post-processing: effdet top-k or official global")
    p.add_argument("--nms", choices=choices(NmsMethod), help="hard or Gaussian soft NMS")
    p.add_argument("--score-threshold", type=float)
    p.add_argument("--max-detections", type=int)
    p.add_argument("--image-size", type=int, nargs="+")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none", choices=choices(AmpMode))
    add_output_option(p, "folder for results.json, metrics.json and pr_curves.png", metavar="DIR")
    p.add_argument("--results-json", help="where to write COCO results (e.g. for a test-dev submission)")
    p.add_argument("--annotation-file", help="COCO instances json for the official areas (small/medium/large)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from efficientdet.engine.evaluate import validate

    size = (args.image_size[0], args.image_size[-1]) if args.image_size else None
    report = validate(
        args.data, model=args.model, checkpoint=args.checkpoint, pretrained=args.pretrained,
        data_format=args.data_format, split=args.split, metric=args.metric, batch_size=args.batch_size,
        workers=args.workers, device=args.device, use_ema=False if args.raw else None, nms=args.nms,
        mode=args.mode, score_threshold=args.score_threshold, max_detections=args.max_detections, image_size=size,
        amp=args.amp, output=args.output, results_json=args.results_json, annotation_file=args.annotation_file,
    )
    if report.metrics:
        print(json.dumps({k: round(v, 4) for k, v in report.metrics.items()}))
        print(report.per_class_table)
    for kind, path in report.files.items():
        print(f"{kind}: {path}")
    return 0
