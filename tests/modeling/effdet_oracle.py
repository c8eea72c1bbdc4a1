"""Helpers to run effdet 0.4.1 as a test oracle (pretrained weights off, no network)."""

from __future__ import annotations

import os
import warnings

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def effdet_model(name: str, image_size: tuple[int, int], **kwargs):
    """effdet's model of ``name`` built for ``image_size`` (effdet bakes the size into the model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet import create_model

        return create_model(name, pretrained=False, pretrained_backbone=False, image_size=image_size, **kwargs)


@torch.no_grad()
def calibrate_bn(model: torch.nn.Module, image_size: tuple[int, int], seed: int = 0, batch: int = 8,
                 iterations: int = 2) -> None:
    """Give every BN layer non-trivial statistics measured on random inputs, so activations stay of order 1.

    Random fusion weights (some negative) and biases are drawn too, so each part of the layout matters.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("edge_weights"):
            p.copy_(torch.rand(p.shape, generator=g) * 1.8 - 0.3)
        elif name.endswith("bias") and "predict" not in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif name.endswith("bn.weight") or ".bn" in name and name.endswith("weight"):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for _ in range(iterations):
        model(torch.randn(batch, 3, *image_size, generator=g))
    model.eval()


def flatten_effdet(outputs: list[torch.Tensor], num_outputs: int) -> torch.Tensor:
    """effdet's per-level ``[B, A*K, H, W]`` outputs -> ``[B, N, K]`` in anchor order."""
    b = outputs[0].shape[0]
    return torch.cat([o.permute(0, 2, 3, 1).reshape(b, -1, num_outputs) for o in outputs], dim=1)
