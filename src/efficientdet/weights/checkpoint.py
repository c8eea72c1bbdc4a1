"""Model weights from any checkpoint this library reads, with the config when the file carries one.

Accepted files (all loaded without unpickling arbitrary objects):

- training checkpoints of this library (``last.pth``, ``best.pth``: ``torch.save`` of plain containers,
  with ``config``, ``model`` and ``ema`` entries);
- cleaned inference weights (``.safetensors`` with the config as JSON metadata, or ``.pth``);
- effdet checkpoints and plain state dicts (``state_dict`` / ``state_dict_ema`` / ``model`` wrappers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from efficientdet.config import DetectorConfig
from efficientdet.errors import WeightsError

WEIGHTS_FORMAT = "efficientdet.weights"


@dataclass
class ModelCheckpoint:
    """Weights read from a file, plus what the file says about the model."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: DetectorConfig | None = None
    used_ema: bool = False

    @property
    def num_classes(self) -> int | None:
        """The class count of the weights: from the config, else from the class-prediction bias."""
        if self.config is not None:
            return self.config.num_classes
        for key in ("class_head.predict.pw.bias", "class_head.predict.bias",
                    "class_net.predict.conv_pw.bias", "class_net.predict.conv.bias"):
            if key in self.state_dict:
                box = next((v for k, v in self.state_dict.items() if k.startswith(("box_head.predict", "box_net.predict"))
                            and k.endswith("bias")), None)
                anchors = box.shape[0] // 4 if box is not None else 9
                return int(self.state_dict[key].shape[0]) // anchors
        return None

    @property
    def label_names(self) -> tuple[str, ...] | None:
        return self.config.label_names if self.config is not None else None

    def load_into(self, model: torch.nn.Module) -> None:
        from efficientdet.factory import load_weights

        load_weights(model, self.state_dict, source=f"weights in {self.path}")


def read_model_checkpoint(path: str | Path, *, use_ema: bool | None = None) -> ModelCheckpoint:
    """Read model weights from ``path``; ``use_ema``: True requires EMA weights, False refuses them, None prefers them."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; check the path")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise WeightsError(f"cannot read {path} safely: {err}. Only files holding tensors and plain containers load; "
                           "re-save foreign checkpoints as a state dict (or safetensors)") from err
    if not isinstance(data, dict):
        raise WeightsError(f"{path} holds a {type(data).__name__}, not a state dict or checkpoint")
    config = _config_from(data.get("config"))
    for ema_key, raw_key in (("ema", "model"), ("state_dict_ema", "state_dict"), ("model_ema", "model")):
        ema = data.get(ema_key) if isinstance(data.get(ema_key), dict) and data.get(ema_key) else None
        raw = data.get(raw_key) if isinstance(data.get(raw_key), dict) else None
        if ema is None and raw is None:
            continue
        if use_ema is True and ema is None:
            raise WeightsError(f"{path} has no EMA weights; drop the EMA option to use its raw weights")
        if ema is not None and use_ema is not False:
            return ModelCheckpoint(path, _strip_module(ema), config, used_ema=True)
        if raw is None:
            raise WeightsError(f"{path} holds only EMA weights; allow EMA to load them")
        return ModelCheckpoint(path, _strip_module(raw), config)
    if all(isinstance(v, torch.Tensor) for v in data.values()):
        if use_ema is True:
            raise WeightsError(f"{path} is a plain state dict without EMA weights")
        return ModelCheckpoint(path, _strip_module(data), config)
    raise WeightsError(f"{path} is neither a state dict nor a known checkpoint layout (keys: {list(data)[:6]})")


def _read_safetensors(path: Path) -> ModelCheckpoint:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    config = _config_from(json.loads(meta["config"])) if "config" in meta else None
    return ModelCheckpoint(path, state, config, used_ema=meta.get("ema") == "true")


def _config_from(data: Any) -> DetectorConfig | None:
    if not isinstance(data, dict):
        return None
    return DetectorConfig.from_dict(data)


def _strip_module(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Drop DDP/compile prefixes (``module.``, ``_orig_mod.``) and non-tensor entries."""
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def save_inference_weights(state_dict: dict[str, torch.Tensor], config: DetectorConfig, path: str | Path, *,
                           ema: bool = False) -> Path:
    """Write ``.safetensors`` weights with the config as metadata, atomically (temp file + rename)."""
    import os
    import tempfile

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": WEIGHTS_FORMAT, "config": json.dumps(config.to_dict()), "ema": "true" if ema else "false"}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
