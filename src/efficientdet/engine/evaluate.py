"""Evaluation: run a model over a loader into an evaluator; ``validate`` is the command-line job."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from efficientdet.config import PostprocessConfig
from efficientdet.errors import ConfigError, DataError
from efficientdet.precision import amp_dtype


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Any, evaluator: Any, *, device: torch.device | str = "cpu",
             postprocess: PostprocessConfig | None = None, amp: str = "none", channels_last: bool = False,
             progress: bool = False) -> dict[str, float]:
    """Predict every batch of ``loader`` and feed ``evaluator``; returns ``evaluator.compute()``.

    Each batch (letterboxed canvases, as :class:`~efficientdet.data.transforms.Letterbox` makes them: the
    network input :class:`~efficientdet.predict.Predictor` makes of the same image) runs through a
    :class:`~efficientdet.pipeline.DetectionPipeline`, which maps the detections back to original-image
    pixels through each image's letterbox metadata. In a distributed run every process evaluates its shard
    and the evaluator gathers before computing.
    """
    from efficientdet.pipeline import DetectionPipeline, clip_sizes

    device = torch.device(device)
    config = model.config
    pipeline = DetectionPipeline(model, postprocess=postprocess, channels_last=channels_last,  # type: ignore[arg-type]
                                 autocast=amp_dtype(amp))
    was_training = model.training
    model.eval()
    evaluator.reset()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(loader), desc="validate", unit="batch", leave=False, dynamic_ncols=True, disable=None)
    evaluated = 0
    for batch in loader:
        if len(batch) == 0:
            continue
        evaluated += len(batch)
        padded = pipeline(batch.images.to(device, non_blocking=True), clip_sizes(batch.metas, device))
        dets = pipeline.detections(padded, batch.metas, config.label_names)
        evaluator.update(batch.indices, [d.to("cpu") for d in dets])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    skipped = getattr(loader, "skipped", None)
    if not evaluated and skipped:  # never score nothing
        raise DataError(f"none of the images could be read ({len(skipped)} skipped), e.g. {skipped[0][0]} "
                        f"({skipped[0][1]}); run 'efficientdet data check' on the dataset")
    return evaluator.compute()


@dataclass
class ValidationReport:
    """The outcome of :func:`validate`: metrics, the per-class table, and the files written."""

    metrics: dict[str, float]
    per_class_table: str = ""
    files: dict[str, Path] = field(default_factory=dict)


def validate(
    data: str | Path,
    *,
    model: str | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    data_format: str | None = None,
    split: str | None = None,
    metric: str = "coco",
    batch_size: int = 8,
    workers: int = 2,
    device: str = "auto",
    use_ema: bool | None = None,
    nms: str | None = None,
    mode: str | None = None,
    score_threshold: float | None = None,
    max_detections: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    amp: str = "none",
    output: str | Path | None = None,
    results_json: str | Path | None = None,
    pr_curves: bool = True,
    annotation_file: str | Path | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Evaluate a model on a dataset: COCO (``coco``), VOC 2007 11-point (``voc07``), VOC area (``voc``) or
    OpenImages (``openimages``) metrics; prints a summary and a per-class AP table.

    The model is ``model`` (a registered architecture, with its published weights if ``pretrained``) and/or
    ``checkpoint`` (a training checkpoint, EMA weights by default; ``use_ema=False`` for the raw weights); with
    neither weights, a ``random weights:`` warning is logged. ``nms`` / ``mode`` /
    ``score_threshold`` / ``max_detections`` override the post-processing (e.g. ``mode="global", nms="soft"``
    for the official evaluation). ``split``: the part of a dataset made of parts (VOC image set, YOLO split,
    ...; default ``val``); an error for a single annotation file. Writes COCO-results json (``results_json``,
    or ``output/results.json``) and PR curves (``output/pr_curves.png``) when ``output`` is given. For
    test-dev (no annotations) only the results json is written.
    """
    from efficientdet.data.check import require_usable
    from efficientdet.data.dataset import TorchDataset
    from efficientdet.data.loader import create_loader
    from efficientdet.data.parsers import load_dataset
    from efficientdet.data.transforms import eval_transforms
    from efficientdet.engine.distributed import init_distributed
    from efficientdet.evaluation import create_evaluator
    from efficientdet.factory import resolve_model

    if model is None and checkpoint is None:
        raise ConfigError("give a model name (--model) and/or a checkpoint (--checkpoint) to validate")
    dist = init_distributed(device)
    dataset = load_dataset(data, data_format, split=split, default_split="val")
    require_usable(dataset, data, "dataset", boxes=False)
    net = resolve_model(model, checkpoint, pretrained=pretrained, checkpoint_ema=use_ema, image_size=image_size,
                        device=dist.device).eval()
    pp = net.config.postprocess
    changes = {k: v for k, v in (("nms", nms), ("mode", mode), ("score_threshold", score_threshold),
                                 ("max_detections", max_detections)) if v is not None}
    pp = replace(pp, **changes)
    if net.config.num_classes != dataset.num_classes:
        raise ConfigError(f"the model predicts {net.config.num_classes} classes, the dataset {data} has "
                          f"{dataset.num_classes}; evaluate a model trained on this dataset")
    world = (dist.world_size, dist.rank) if dist.distributed else False
    pre = net.config.preprocess
    letterboxed = TorchDataset(dataset, net.config.image_size, eval_transforms(
        net.config.image_size, fill=pre.fill, mean=pre.mean, interpolation=pre.interpolation))
    loader = create_loader(letterboxed, batch_size, False, net.config.image_size, num_workers=workers,
                           distributed=world)
    has_gt = any(len(r.labels) for r in dataset.records)
    options: dict[str, Any] = {}
    if metric == "coco" and annotation_file is not None:
        options["annotation_file"] = annotation_file
    evaluator = create_evaluator(metric, dataset, **options)
    metrics = evaluate(net, loader, evaluator, device=dist.device, postprocess=pp, amp=amp,
                       progress=progress and dist.is_main)
    report = ValidationReport(metrics if has_gt else {})
    if not dist.is_main:
        return report
    report.per_class_table = evaluator.per_class_table() if has_gt else ""
    out_dir = Path(output) if output is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if metric == "coco":
        target = Path(results_json) if results_json is not None else (out_dir / "results.json" if out_dir else None)
        if target is not None:
            evaluator.write_results(target)
            report.files["results"] = target
        if pr_curves and out_dir is not None and has_gt:
            with contextlib.suppress(ConfigError):  # matplotlib missing: skip the plot, say so below
                report.files["pr_curves"] = evaluator.save_pr_curves(out_dir / "pr_curves.png")
    if out_dir is not None and has_gt:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        report.files["metrics"] = out_dir / "metrics.json"
    return report
