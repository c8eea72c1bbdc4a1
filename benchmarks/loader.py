"""Training-loader throughput: images per second through decode -> augment -> collate, ours vs effdet 0.4.1.

Writes ``--images`` 640x480 JPEGs (sample-dataset content) into a temporary folder, then, for each
``num_workers`` in ``--workers``, alternates ours and effdet's training loader (``--rounds`` times each,
interleaved so machine noise hits both alike) and reports the median images / s and the ratio.

Both produce the same thing: a ``uint8 [B, 3, S, S]`` batch plus targets, after a horizontal flip and the
random scale / crop / pad resize (ours: the official scale jitter; effdet: its RandomResizePad). effdet's
``PrefetchLoader`` needs CUDA, so the DataLoader its ``create_loader`` wraps is built and timed (normalisation happens on the device for
both). Steady state: the first batch of each pass (worker start-up) is not timed. ``torch`` runs one
intra-op thread in the main process, like PIL does.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/loader.py [--images 96 --batch-size 8 --size 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def make_images(folder: Path, count: int, seed: int = 0):
    """``count`` 640x480 JPEGs with objects; returns our DetectionDataset."""
    from efficientdet.data.records import DetectionDataset, ImageRecord
    from efficientdet.data.sample import SAMPLE_CLASSES, draw_image

    records = []
    for i in range(count):
        rng = np.random.Generator(np.random.PCG64([seed, i]))
        data, anns = draw_image(480, 640, rng, empty_prob=0.0)
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(data)
        boxes = [[x, y, x + w, y + h] for (x, y, w, h), _ in anns]
        records.append(ImageRecord(path, i, np.array(boxes, np.float32).reshape(-1, 4),
                                   np.array([k for _, k in anns], np.int64), size=(480, 640)))
    return DetectionDataset(records, SAMPLE_CLASSES, root=folder, format="coco")


class EffdetParser:
    """The parser interface effdet's dataset reads (image infos + yxyx boxes), over our records."""

    has_labels = True

    def __init__(self, dataset) -> None:
        self.records = dataset.records
        self.img_ids = [r.image_id for r in self.records]
        self.img_infos = [{"file_name": r.path.name, "width": r.size[1], "height": r.size[0]} for r in self.records]

    def get_ann_info(self, idx: int) -> dict:
        r = self.records[idx]
        return {"bbox": r.boxes[:, [1, 0, 3, 2]].copy(), "cls": r.labels.astype(np.int64) + 1}


def ours_loader(dataset, size: int, batch: int, workers: int, autoaugment: str | None):
    from efficientdet.config import AugmentConfig
    from efficientdet.data.loader import create_loader

    return create_loader(dataset, batch, True, size, num_workers=workers, seed=0,
                         augment=AugmentConfig(autoaugment=autoaugment))


def effdet_loader(dataset, folder: Path, size: int, batch: int, workers: int):
    """effdet's training DataLoader as its ``create_loader`` builds it, minus the CUDA-only PrefetchLoader wrapper."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.data.dataset import DetectionDatset
        from effdet.data.loader import DetectionFastCollate
        from effdet.data.transforms import transforms_coco_train

    ds = DetectionDatset(folder, parser=EffdetParser(dataset),
                         transform=transforms_coco_train((size, size), interpolation="bilinear", use_prefetcher=True))
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                       collate_fn=DetectionFastCollate())


def timed_pass(loader) -> float:
    """Images / s over one pass, not counting the first batch."""
    it = iter(loader)
    first = next(it)
    n = 0
    t0 = time.perf_counter()
    for batch in it:
        images = batch.images if hasattr(batch, "images") else batch[0]
        n += int(images.shape[0])
    dt = time.perf_counter() - t0
    del first
    return n / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=512, help="network input size")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--autoaugment", default=None, help="also apply this AutoAugment policy in ours (e.g. v0)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        dataset = make_images(folder, args.images)
        print(f"wrote {args.images} 640x480 JPEGs in {time.perf_counter() - t0:.1f} s; input {args.size}, "
              f"batch {args.batch_size}, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs")
        for workers in args.workers:
            ours = ours_loader(dataset, args.size, args.batch_size, workers, args.autoaugment)
            theirs = effdet_loader(dataset, folder, args.size, args.batch_size, workers)
            ours_ips, theirs_ips = [], []
            for _ in range(args.rounds):
                ours_ips.append(timed_pass(ours))
                theirs_ips.append(timed_pass(theirs))
            row = {"num_workers": workers, "ours_img_s": statistics.median(ours_ips),
                   "effdet_img_s": statistics.median(theirs_ips)}
            row["ratio"] = row["ours_img_s"] / row["effdet_img_s"]
            results.append(row)
            print(f"num_workers={workers}: ours {row['ours_img_s']:7.1f} img/s   effdet {row['effdet_img_s']:7.1f} "
                  f"img/s   ours/effdet {row['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
