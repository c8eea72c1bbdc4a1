"""``efficientdet data``: check a dataset, write the built-in sample dataset, convert between formats."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check, convert or generate detection datasets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = data_sub.add_parser("check", help="report statistics and mistakes of a dataset before training")
    c.add_argument("path", help="annotation file (COCO .json, YOLO data.yaml, .csv) or dataset folder")
    c.add_argument("--format", choices=("coco", "voc", "yolo", "openimages", "csv"), help="default: detected")
    c.add_argument("--split", help="COCO json / VOC image set / YOLO split to read (e.g. val2017, trainval, val)")
    c.add_argument("--model", help="model name for the anchor coverage check (e.g. tf_efficientdet_lite0)")
    c.add_argument("--image-size", type=int, nargs="+", metavar="SIZE",
                   help="input size (one value or H W) for the anchor coverage; default the model's own (the model "
                   "defaults to the training default, tf_efficientdet_lite0)")
    c.add_argument("--images", choices=("decode", "header", "none"), default="decode",
                   help="decode every image (finds truncated files and duplicates; default), read headers only, or skip")
    c.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=run_check)

    s = data_sub.add_parser("sample", help="write the built-in procedural sample dataset (COCO format)")
    s.add_argument("dir", help="output folder (train/ and val/ with images/ and annotations.json)")
    s.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    s.add_argument("--train", type=int, default=400, help="training images (default 400)")
    s.add_argument("--val", type=int, default=80, help="validation images (default 80)")
    s.add_argument("--size", type=int, default=384, help="longest image side, at most (default 384)")
    s.set_defaults(func=run_sample)

    v = data_sub.add_parser("convert", help="convert a dataset to another format")
    v.add_argument("src", help="dataset to read (any supported format)")
    v.add_argument("dst", help="output: a .json / .csv file for coco / csv, a folder otherwise")
    v.add_argument("--to", required=True, choices=("coco", "voc", "yolo", "openimages", "csv"), dest="to_format")
    v.add_argument("--format", choices=("coco", "voc", "yolo", "openimages", "csv"), help="input format (default: detected)")
    v.add_argument("--split", help="split to read; also the VOC image set / YOLO split written (default train)")
    v.add_argument("--images", choices=("copy", "symlink", "none"), default="copy",
                   help="for voc / yolo / openimages output: copy images (default), symlink them, or leave them")
    v.set_defaults(func=run_convert)


def run_check(args: argparse.Namespace) -> int:
    from efficientdet.data.check import check_dataset

    size = (args.image_size[0], args.image_size[-1]) if args.image_size else None
    report = check_dataset(args.path, args.model, format=args.format, split=args.split, images=args.images,
                           image_size=size)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print(report.render())
    return report.exit_code(args.strict)


def run_sample(args: argparse.Namespace) -> int:
    from efficientdet.data.sample import make_sample_dataset

    paths = make_sample_dataset(args.dir, seed=args.seed, train=args.train, val=args.val, size=args.size)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from efficientdet.data.parsers import load_dataset, save_dataset

    dataset = load_dataset(args.src, args.format, default_split=args.split)  # a file has no splits to pick
    kwargs = {"images": args.images} if args.to_format in ("voc", "yolo", "openimages") else {}
    out = save_dataset(dataset, args.dst, args.to_format, split=args.split or "train", **kwargs)
    print(f"wrote {len(dataset)} images, {sum(len(r.labels) for r in dataset.records)} boxes as {args.to_format}: {out}")
    return 0
