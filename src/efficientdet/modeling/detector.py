"""The EfficientDet network: backbone -> feature pyramid -> shared class and box heads."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from efficientdet.config import DetectorConfig
from efficientdet.errors import ConfigError
from efficientdet.modeling.backbone import create_backbone
from efficientdet.modeling.fpn import FeaturePyramid
from efficientdet.modeling.heads import Head, prior_bias
from efficientdet.modeling.layers import init_fpn_
from efficientdet.structures import HeadOutputs


class EfficientDet(nn.Module):
    """EfficientDet (Tan, Pang, Le, CVPR 2020) for any input size.

    ``forward(images [B, 3, H, W] float, normalised) -> HeadOutputs(cls_logits [B, N, K], box_deltas [B, N, 4])``
    where ``N`` is the number of anchors for ``(H, W)`` (:meth:`anchors` gives them, xyxy input pixels).
    ``forward`` changes nothing: not its input, its modules or its config.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        a = config.anchors
        if a.min_level < 2 or a.max_level > 8 or a.min_level > a.max_level:
            raise ConfigError(f"pyramid levels {a.min_level}..{a.max_level} are not supported; use levels within 2..8")
        self.backbone, channels = create_backbone(config.backbone, a.min_level, a.max_level)
        self.fpn = FeaturePyramid(config.fpn, channels, a.min_level, a.max_level)
        init_fpn_(self.fpn)
        self.class_head = self._make_class_head(config.num_classes)
        self.box_head = Head(config.head, **self._head_kwargs(), num_outputs=4)
        self._anchor_generator: Any = None

    def _head_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(channels=c.fpn.channels, num_levels=c.num_levels, num_anchors=c.anchors.num_anchors,
                    act=c.head.act or c.fpn.act, norm=c.head.norm or c.fpn.norm)

    def _make_class_head(self, num_classes: int) -> Head:
        return Head(self.config.head, **self._head_kwargs(), num_outputs=num_classes,
                    prior_bias=prior_bias(self.config.head.prior_prob))

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, images: torch.Tensor) -> HeadOutputs:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        feats = self.backbone(images)  # C_min .. C_5
        feats = self.fpn(feats)  # P_min .. P_max, fpn channels each
        return HeadOutputs(self.class_head(feats), self.box_head(feats))

    def anchors(self, image_size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
        """Anchors ``[N, 4]`` (xyxy, input pixels) for an input of ``image_size`` (H, W), cached per size."""
        if self._anchor_generator is None:
            from efficientdet.modeling.anchors import AnchorGenerator

            self._anchor_generator = AnchorGenerator(self.config.anchors)
        if device is None:
            device = next(self.parameters()).device
        return self._anchor_generator(tuple(int(s) for s in image_size), torch.device(device))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations during backward (backbone blocks, pyramid cells, head levels) to save memory."""
        if hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(enable)
        self.fpn.grad_checkpointing = enable
        self.class_head.grad_checkpointing = enable
        self.box_head.grad_checkpointing = enable

    def reset_classes(self, num_classes: int, label_names: tuple[str, ...] | None = None,
                      category_ids: tuple[int, ...] | None = None) -> None:
        """Re-initialise the class-prediction layer for ``num_classes`` classes (prior-probability bias).

        The shared repeat convs and norms of the class head keep their weights.
        """
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        from dataclasses import replace

        old = self.class_head.predict_bias()
        self.config = replace(self.config, num_classes=num_classes, label_names=label_names,
                              category_ids=category_ids)
        self.class_head.reset_outputs(num_classes, prior_bias(self.config.head.prior_prob))
        self.class_head.predict.to(device=old.device, dtype=old.dtype)
