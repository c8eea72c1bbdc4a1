"""Number formats by name: the one table from a dtype name (``--dtype``, ``--amp``) to a ``torch.dtype``."""

from __future__ import annotations

import torch

from efficientdet.config import AmpMode, choices
from efficientdet.errors import ConfigError

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
"""Names accepted for an inference ``dtype`` (the CLI offers ``float32``, ``float16``, ``bfloat16``)."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from a dtype or its name (:data:`DTYPES`)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ConfigError(f"dtype {dtype} is not supported; use float32, float16 or bfloat16")
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; use float32, float16 or bfloat16")
    return DTYPES[dtype]


def amp_dtype(amp: AmpMode | str) -> torch.dtype | None:
    """The autocast dtype of a mixed-precision mode (``none`` -> ``None``, ``bf16``, ``fp16``)."""
    if amp not in choices(AmpMode):
        raise ConfigError(f"amp={amp!r}: choose none, bf16 or fp16")
    return None if amp == "none" else DTYPES[amp]
