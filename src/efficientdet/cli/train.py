"""``efficientdet train``: train or fine-tune a detector (single process, or many with torchrun)."""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_model_options, add_output_option
from efficientdet.config import RECIPES, AmpMode, choices


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a model on a dataset",
        description="Train a detector. Settings come from the defaults (--recipe), then --config YAML, "
        "then the flags below, then --set key=value (any TrainConfig field; model.<path>=value changes the model "
        "config). Multi-GPU / multi-process: torchrun --nproc-per-node N -m efficientdet train ...",
    )
    p.add_argument("--data", dest="train_data", help="training set: a COCO json, VOC/YOLO folder, CSV, ...")
    p.add_argument("--val-data", dest="val_data", help="validation set (COCO mAP after each epoch; other metrics: "
                                                       "--set eval_metric=voc07|voc|openimages)")
    p.add_argument("--format", dest="data_format", help="coco | voc | yolo | openimages | csv (default: detect)")
    p.add_argument("--split", dest="train_split", metavar="NAME",
                   help="part of --data to train on, for datasets with splits: a VOC image set (default train; e.g. "
                        "trainval), a YOLO data.yaml split, a COCO json in a folder; an error for a single file")
    p.add_argument("--val-split", dest="val_split", metavar="NAME", help="part of --val-data to validate on (default "
                                                                          "val)")
    add_model_options(p, "start from these weights (any checkpoint; the class head adapts)",
                      model_help="registered architecture to train (default tf_efficientdet_lite0; official names "
                                 "like efficientdet-lite0 work too); starts from ImageNet backbone weights unless "
                                 "--pretrained or --checkpoint",
                      pretrained_help="start from the published COCO weights of --model (the class layer is "
                                      "re-initialised for your classes)", pretrained_default=None)
    p.add_argument("--no-pretrained-backbone", dest="pretrained_backbone", action="store_false", default=None,
                   help="random backbone instead of ImageNet weights")
    p.add_argument("--image-size", type=int, nargs="+", help="input size: one value or H W")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per process and step")
    p.add_argument("--lr", type=float, help="learning rate (default: from the recipe)")
    p.add_argument("--recipe", choices=RECIPES,
                   help="settings left unset (lr, warm-up, EMA, BN momentum): finetune derives them from the run's "
                   "steps and batch, official is Google's 300-epoch COCO recipe; auto (default) picks finetune "
                   "unless the run is long and the dataset large")
    p.add_argument("--workers", type=int, help="data loader processes")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--amp", choices=choices(AmpMode))
    p.add_argument("--freeze", nargs="+", help="freeze parameters: backbone, backbone+fpn or name patterns")
    add_output_option(p, "run folder for checkpoints and logs (default runs/train)", metavar="DIR")
    p.add_argument("--resume", help="continue a run exactly from its last.pth")
    p.add_argument("--config", help="YAML file of TrainConfig settings")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings as YAML and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from efficientdet.config import train_config_from
    from efficientdet.engine.trainer import train

    size = None
    if args.image_size:
        size = (args.image_size[0], args.image_size[-1])
    cfg = train_config_from(
        args.config, args.sets, train_data=args.train_data, val_data=args.val_data, data_format=args.data_format,
        train_split=args.train_split, val_split=args.val_split, model=args.model, pretrained=args.pretrained,
        pretrained_backbone=args.pretrained_backbone, checkpoint=args.checkpoint, image_size=size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, recipe=args.recipe,
        workers=args.workers, device=args.device, amp=args.amp, freeze=args.freeze, output=args.output,
    )
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = train(cfg, resume=args.resume)
    if result.last_checkpoint is not None:
        print(f"\nlast checkpoint: {result.last_checkpoint}")
        if result.best_checkpoint is not None:
            print(f"best checkpoint: {result.best_checkpoint} (val mAP {result.best_metric:.4f})")
        if result.curves is not None:
            print(f"curves: {result.curves}")
        print(f"log: {result.output_dir / 'metrics.csv'}")
    return 0
