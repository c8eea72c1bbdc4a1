"""Convert effdet (rwightman/efficientdet-pytorch) state dicts to this library's layout.

The two layouts differ only in module names; every tensor keeps its shape. The mapping:

==============================================================  ===========================================
effdet                                                          efficientdet
==============================================================  ===========================================
``backbone.*``                                                  ``backbone.*`` (both are timm)
``fpn.resample.{L}.conv.conv.*`` / ``.conv.bn.*``               ``fpn.extra.{L - backbone levels}.conv.*`` / ``.norm.*``
``fpn.cell.{r}.fnode.{n}.combine.resample.{offset}.conv.conv``  ``fpn.cells.{r}.nodes.{n}.resample.{j}.conv`` (j: position of offset)
``fpn.cell.{r}.fnode.{n}.combine.edge_weights``                 ``fpn.cells.{r}.nodes.{n}.weight``
``fpn.cell.{r}.fnode.{n}.after_combine.conv.conv_dw|conv_pw``   ``fpn.cells.{r}.nodes.{n}.conv.dw|pw``
``fpn.cell.{r}.fnode.{n}.after_combine.conv.bn``                ``fpn.cells.{r}.nodes.{n}.norm``
``{class,box}_net.conv_rep.{i}.conv_dw|conv_pw|conv``           ``{class,box}_head.convs.{i}.dw|pw|(plain)``
``{class,box}_net.bn_rep.{i}.{level}.bn`` (or ``.{level}.{i}``)  ``{class,box}_head.norms.{level}.{i}``
``{class,box}_net.predict.conv_dw|conv_pw|conv``                ``{class,box}_head.predict.dw|pw|(plain)``
==============================================================  ===========================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from efficientdet.errors import WeightsError

_CONV_PARTS = {"conv_dw": "dw.", "conv_pw": "pw.", "conv": ""}


def is_effdet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys follow effdet's layout (``class_net.`` / ``fpn.cell.``)."""
    return any(k.startswith(("class_net.", "box_net.", "fpn.cell.")) for k in state_dict)


def _conv_suffix(part: str, rest: str) -> str:
    return _CONV_PARTS[part] + rest


def _rename(key: str, node_inputs: list[tuple[int, ...]], num_backbone_levels: int) -> str:
    if key.startswith("backbone."):
        return key
    m = re.fullmatch(r"fpn\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)", key)
    if m:
        idx = int(m.group(1)) - num_backbone_levels
        return f"fpn.extra.{idx}.{'conv' if m.group(2) == 'conv' else 'norm'}.{m.group(3)}"
    m = re.fullmatch(r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.(.+)", key)
    if m:
        r, n, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        base = f"fpn.cells.{r}.nodes.{n}."
        m2 = re.fullmatch(r"combine\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)", rest)
        if m2:
            j = node_inputs[n].index(int(m2.group(1)))
            return f"{base}resample.{j}.{'conv' if m2.group(2) == 'conv' else 'norm'}.{m2.group(3)}"
        if rest == "combine.edge_weights":
            return base + "weight"
        m2 = re.fullmatch(r"after_combine\.conv\.(conv_dw|conv_pw|conv)\.(.+)", rest)
        if m2:
            return base + "conv." + _conv_suffix(m2.group(1), m2.group(2))
        m2 = re.fullmatch(r"after_combine\.conv\.bn\.(.+)", rest)
        if m2:
            return base + "norm." + m2.group(1)
    m = re.fullmatch(r"(class|box)_net\.(.+)", key)
    if m:
        head = f"{m.group(1)}_head."
        rest = m.group(2)
        m2 = re.fullmatch(r"(conv_rep\.(\d+)|predict)\.(conv_dw|conv_pw|conv)\.(.+)", rest)
        if m2:
            where = f"convs.{m2.group(2)}." if m2.group(2) is not None else "predict."
            return head + where + _conv_suffix(m2.group(3), m2.group(4))
        m2 = re.fullmatch(r"bn_rep\.(\d+)\.(\d+)\.bn\.(.+)", rest)  # repeat-first layout
        if m2:
            return f"{head}norms.{m2.group(2)}.{m2.group(1)}.{m2.group(3)}"
        m2 = re.fullmatch(r"bn_rep\.(\d+)\.(\d+)\.(.+)", rest)  # level-first layout
        if m2:
            return f"{head}norms.{m2.group(1)}.{m2.group(2)}.{m2.group(3)}"
    raise WeightsError(f"effdet state-dict key {key!r} has no counterpart in this library; is it an effdet "
                       "EfficientDet checkpoint (not a DetBenchTrain wrapper with extra modules)?")


def convert_effdet_state_dict(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename an effdet ``state_dict`` onto ``model`` (an :class:`~efficientdet.modeling.EfficientDet`).

    ``model`` supplies the topology (which input offset each resample belongs to) and the expected shapes;
    every key must map, every shape must match, and every model key must be covered.
    """
    state_dict = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state_dict.items()}
    fpn = model.fpn
    node_inputs = [node.inputs for node in fpn.cells[0].nodes] if len(fpn.cells) else []
    num_backbone_levels = model.config.num_levels - len(fpn.extra)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = _rename(key, node_inputs, num_backbone_levels)
        if new not in target:
            raise WeightsError(f"effdet key {key!r} maps to {new!r}, which {model.config.name!r} does not have; "
                               "the checkpoint belongs to a different architecture (check the model name)")
        if tuple(target[new].shape) != tuple(value.shape):
            raise WeightsError(f"shape mismatch for {key!r} -> {new!r}: checkpoint {tuple(value.shape)}, model "
                               f"{tuple(target[new].shape)}; pass num_classes= matching the checkpoint")
        out[new] = value
    missing = [k for k in target if k not in out]
    if missing:
        raise WeightsError(f"the effdet checkpoint lacks {len(missing)} tensors of {model.config.name!r}, e.g. "
                           f"{missing[:3]}; it belongs to a different architecture")
    return out
