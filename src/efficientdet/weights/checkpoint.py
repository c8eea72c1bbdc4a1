"""Model weights from any checkpoint this library reads, with the config when the file carries one.

Accepted files (all loaded without unpickling arbitrary objects):

- training checkpoints of this library (``last.pth``, ``best.pth``: ``torch.save`` of plain containers,
  with ``config``, ``model`` and ``ema`` entries);
- cleaned inference weights (``.safetensors`` with the config as JSON metadata, or ``.pth``);
- effdet checkpoints and plain state dicts (``state_dict`` / ``state_dict_ema`` / ``model`` wrappers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from efficientdet.config import DetectorConfig
from efficientdet.errors import ConfigError, WeightsError

WEIGHTS_FORMAT = "efficientdet.weights"


@dataclass
class ModelCheckpoint:
    """Weights read from a file, plus what the file says about the model."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: DetectorConfig | None = None
    used_ema: bool = False
    has_ema: bool = False

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

    @property
    def category_ids(self) -> tuple[int, ...] | None:
        return self.config.category_ids if self.config is not None else None

    def load_into(self, model: torch.nn.Module) -> None:
        load_weights(model, self.state_dict, source=f"weights in {self.path}")


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
    """Load a state dict in this library's or effdet's layout into ``model`` (strict; clear errors)."""
    from efficientdet.weights.effdet import convert_effdet_state_dict, is_effdet_state_dict

    if is_effdet_state_dict(state_dict):
        state_dict = convert_effdet_state_dict(state_dict, model)
    target = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(target[k].shape)) for k, v in state_dict.items()
             if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if wrong:
        k, got, want = wrong[0]
        raise WeightsError(f"{source} do not fit {model.config.name!r}: {len(wrong)} tensors have other shapes, e.g. "
                           f"{k} {got} vs {want}; check the model name and num_classes")
    result = model.load_state_dict(dict(state_dict), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{source} do not fit {model.config.name!r}: {len(result.missing_keys)} missing tensors (e.g. "
            f"{result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]}); "
            "check that the model name and num_classes match the checkpoint"
        )


def read_model_checkpoint(path: str | Path, *, use_ema: bool | None = None) -> ModelCheckpoint:
    """Read model weights from ``path``; ``use_ema``: True requires EMA weights, False refuses them, None prefers them."""
    from efficientdet.weights.io import has_ema_weights, load_checkpoint_data, read_metadata, state_dict_from

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; check the path")
    if path.suffix == ".safetensors":
        from efficientdet.weights.io import load_state_dict

        meta = read_metadata(path)
        config = _config_from(_json_config(meta["config"], path), path) if "config" in meta else None
        used = meta.get("ema") == "true"
        return ModelCheckpoint(path, load_state_dict(path, use_ema=use_ema), config, used_ema=used, has_ema=used)
    data = load_checkpoint_data(path)
    state = state_dict_from(data, use_ema=use_ema, path=path)
    has_ema = has_ema_weights(data)
    return ModelCheckpoint(path, state, _config_from(data.get("config"), path), used_ema=has_ema and use_ema is not False,
                           has_ema=has_ema)


def _json_config(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise WeightsError(f"the model config stored in {path} is not valid JSON ({err}); the file was damaged or "
                           "edited: export it again, or load its weights into a model you build with --model") from err


def _config_from(data: Any, path: Path) -> DetectorConfig | None:
    """The :class:`DetectorConfig` a file records (``None`` when it records none); :class:`WeightsError` naming the
    file when the record is not a valid config (wrong types or values, unknown keys)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise WeightsError(f"the model config stored in {path} is a {type(data).__name__}, not a mapping; the file "
                           "was damaged or edited")
    try:
        return DetectorConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError) as err:
        # from_dict builds the frozen dataclasses; a mistyped value fails inside their checks
        raise WeightsError(f"the model config stored in {path} is not valid ({type(err).__name__}: {err}); the file "
                           "was damaged, edited or written by an incompatible version. Export it again, or give "
                           "--model NAME to build the model and load only the weights") from err


def save_inference_weights(state_dict: dict[str, torch.Tensor], config: DetectorConfig, path: str | Path, *,
                           ema: bool = False) -> Path:
    """Write weights with the config as metadata (``.safetensors`` recommended), atomically."""
    from efficientdet.weights.io import save_state_dict

    meta = {"format": WEIGHTS_FORMAT, "config": json.dumps(config.to_dict()), "ema": "true" if ema else "false"}
    return save_state_dict(state_dict, path, metadata=meta)
