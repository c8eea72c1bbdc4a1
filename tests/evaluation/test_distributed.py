"""Evaluators gather detections across torch.distributed processes (two CPU processes, gloo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from efficientdet.evaluation import create_evaluator
from tests.evaluation.synthetic import make_problem

KINDS = {"coco": {"backend": "pycocotools"}, "voc": {}, "openimages": {}}


def _problem():
    return make_problem(seed=7, num_images=20, group_of_rate=0.2, image_labels=True)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        problem = _problem()
        n = len(problem.dataset)
        # what DistributedSampler does: interleaved shards, the last one padded with a repeated image
        shard = list(range(rank, n, world)) + ([0] if rank == world - 1 else [])
        results = {}
        for kind, options in KINDS.items():
            ev = create_evaluator(kind, problem.dataset, **options)
            for start in range(0, len(shard), 4):
                idx = shard[start : start + 4]
                ev.update(idx, [problem.detections[i] for i in idx])
            results[kind] = ev.compute()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_metrics_gathered_across_two_processes(tmp_path):
    # fork: the children inherit the imported modules instead of importing torch again (CPU only, no CUDA)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork")
    problem = _problem()
    expected = {}
    for kind, options in KINDS.items():
        ev = create_evaluator(kind, problem.dataset, **options)
        ev.update(range(len(problem.dataset)), problem.detections)
        expected[kind] = ev.compute()
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == expected  # each process reports the metrics of all images, each counted once
