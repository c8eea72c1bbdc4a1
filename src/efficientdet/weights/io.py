"""Reading and writing weight files safely.

Reading never unpickles arbitrary objects: ``.safetensors`` files are read by the ``safetensors``
package, every other file by ``torch.load(weights_only=True)``, which accepts tensors and plain
containers only (plus ``argparse.Namespace``, for timm/effdet training checkpoints) and refuses
any other pickled object (a pickle that would run code on load raises
:class:`~efficientdet.errors.WeightsError` instead).

Writing goes to a temporary file in the destination folder which is then renamed over the target
(``os.replace``), so a crash leaves either the old file or the complete new one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from efficientdet.errors import WeightsError

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
"""Suffixes :func:`save_state_dict` writes with ``torch.save``; :func:`load_state_dict` reads any suffix."""

EMA_KEYS = ("state_dict_ema", "model_ema", "ema")
"""Checkpoint entries holding EMA weights: timm/effdet train scripts, other trainers, this library."""
RAW_KEYS = ("state_dict", "model")
"""Checkpoint entries holding the trained (non-EMA) weights."""
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes added by ``DistributedDataParallel``/``DataParallel`` and ``torch.compile``."""

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The full sha256 hex digest (64 lowercase characters) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(path: str | Path, *, use_ema: bool | None = None) -> dict[str, torch.Tensor]:
    """Read the model weights stored in ``path`` onto the CPU, without unpickling arbitrary objects.

    Accepts a plain state dict, or a checkpoint that wraps one under ``state_dict`` / ``model`` with
    EMA weights under ``state_dict_ema`` / ``model_ema`` / ``ema``. ``use_ema``: ``None`` takes the EMA
    weights when the file has them, else the raw ones; ``True`` requires EMA weights; ``False`` takes the
    raw weights. A ``.safetensors`` file counts as EMA weights when its metadata says ``ema: "true"``.
    Prefixes shared by every key (``module.`` from DDP, ``_orig_mod.`` from ``torch.compile``) are removed,
    and entries that are not tensors (step counters, configs) are dropped.

    Raises :class:`WeightsError` for a missing or unreadable file, a refused pickle, a layout without
    tensors, or EMA weights asked for but absent.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    if path.suffix == SAFETENSORS_SUFFIX:
        state = _load_safetensors(path)
        is_ema = read_metadata(path).get("ema") == "true"
        if use_ema is True and not is_ema:
            raise WeightsError(f"{path} holds plain weights, not EMA weights; load it without use_ema=True")
        if use_ema is False and is_ema:
            raise WeightsError(f"{path} holds only EMA weights; load it without use_ema=False")
        return _unwrap_prefixes(state)
    return state_dict_from(load_checkpoint_data(path), use_ema=use_ema, path=path)


def load_checkpoint_data(path: str | Path) -> Mapping[str, Any]:
    """The whole dictionary of a ``torch.save`` checkpoint, loaded safely (see :func:`load_state_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; check the path")
    data = _torch_load(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path} holds a {type(data).__name__}, not a state dict or a checkpoint dictionary")
    return data


def state_dict_from(data: Mapping[str, Any], *, use_ema: bool | None = None, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The weights inside a loaded checkpoint dictionary, chosen by ``use_ema`` as :func:`load_state_dict` does."""
    path = Path(path)
    return _unwrap_prefixes(_tensors_only(_select_weights(data, use_ema, path), path))


def has_ema_weights(data: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint dictionary carries EMA weights."""
    return any(_usable(data.get(k)) for k in EMA_KEYS)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a weights file written by :func:`save_state_dict` (``{}`` when it has none)."""
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return dict(f.metadata() or {})
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"cannot read {path} as safetensors: {err}") from err
    data = _torch_load(path)
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, Mapping) else {}


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``state_dict`` to ``path`` atomically and return ``path``.

    ``.safetensors`` is written with the ``safetensors`` package (``metadata``: string keys and values, kept
    in the file header). ``.pth`` / ``.pt`` / ``.bin`` is written with ``torch.save``: the plain state dict, or
    ``{"state_dict": ..., "metadata": ...}`` when metadata is given (both read back by
    :func:`load_state_dict`). Tensors are saved detached, contiguous and on the CPU; tensors sharing storage
    (tied weights) are copied, as safetensors requires.
    """
    path = Path(path)
    if path.suffix not in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES):
        raise WeightsError(f"cannot save weights as {path}: use a {SAFETENSORS_SUFFIX} (recommended) or "
                           f"{'/'.join(TORCH_SUFFIXES)} file name")
    meta = dict(metadata or {})
    bad_meta = [k for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad_meta:
        raise WeightsError(f"metadata for {path} must map strings to strings; convert {bad_meta} with str() or json")
    tensors = _plain_tensors(state_dict, path)

    def write(f: BinaryIO) -> None:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import save

            f.write(save(tensors, metadata=meta or None))
        else:
            torch.save({"state_dict": tensors, "metadata": meta} if meta else tensors, f)

    return atomic_write(path, write)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash at any moment leaves either the old file or the complete new one, never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"cannot read {path} as safetensors: {err}. The file may be truncated; "
                           "download or export it again") from err


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` that also accepts ``argparse.Namespace``.

    Training checkpoints of timm and effdet store the command-line arguments as a Namespace; it is a plain
    attribute holder, and its values still pass through the restricted unpickler. A file that cannot be read
    raises :class:`WeightsError` saying what is wrong with it (:func:`describe_unreadable`).
    """
    foreign = sniff_weights_file(path)
    if foreign is not None:
        raise WeightsError(f"{path} is {foreign}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols, not the user's concern
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - refused pickles and corrupt files both end here
        raise WeightsError(describe_unreadable(path, err)) from err


_REFUSED = re.compile(r"GLOBAL ([\w.]+)")


def describe_unreadable(path: Path, err: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` failed on, and what to do.

    Never repeats torch's own text, which suggests ``weights_only=False`` (unpickling that can run code).
    """
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        refused = _REFUSED.search(text)
        what = f"a pickled Python object ({refused.group(1)})" if refused else "pickled data other than tensors"
        return (f"{path} holds {what}, which is refused: only tensors and plain containers are loaded, because "
                "unpickling arbitrary objects can run code. If you made the file yourself, load it in your own code "
                "and re-save its state dict with efficientdet.weights.io.save_state_dict(state_dict, "
                "'weights.safetensors')")
    if isinstance(err, EOFError) or any(k in text for k in ("central directory", "PytorchStreamReader", "EOF",
                                                          "truncated", "unexpected end")):
        return (f"{path} is truncated or corrupt ({type(err).__name__}: {text.split('.')[0] or 'unexpected end'}); "
                "the save or download did not finish: save or download it again")
    return (f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}"
            f"{': ' + text.splitlines()[0][:120] if text else ''}); it may be corrupt or another kind of file. "
            "Give a .pth / .safetensors file written by torch.save or this library")


def sniff_weights_file(path: Path) -> str | None:
    """``None`` when ``path`` may be a ``torch.save`` file, else what it looks like instead (for messages):
    empty, JSON, safetensors under another name, ONNX, HDF5 (Keras), a TensorFlow checkpoint, text."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as err:
        return f"not readable ({err.strerror or err})"
    if size == 0:
        return "empty (0 bytes): the save or download was interrupted; save or download it again"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip format, legacy pickle
        return None
    hint = "not a PyTorch checkpoint; give the .pth / .safetensors weights"
    if len(head) > 9 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < size:
        return f"a safetensors file with a {path.suffix or 'missing'} suffix; rename it to {path.stem}.safetensors"
    if head.startswith(b"\x89HDF"):
        return f"an HDF5 (Keras) file, {hint}"
    if path.suffix.lower() == ".onnx" or b"onnx" in head.lower() or b"pytorch" in head.lower()[:32]:
        return f"an ONNX model (what export writes), {hint} it was exported from"
    if path.suffix == ".index" or ".data-0" in path.name:
        return f"part of a TensorFlow checkpoint: convert it with 'efficientdet convert tf' first; {hint}"
    if head.lstrip()[:1] in (b"{", b"["):
        return f"JSON text, {hint}"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"a text file, {hint}"
    return None


def _usable(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def _select_weights(data: Mapping, use_ema: bool | None, path: Path) -> Mapping:
    """Pick the state dict inside a checkpoint dictionary following ``use_ema`` (see load_state_dict)."""
    ema = next((data[k] for k in EMA_KEYS if _usable(data.get(k))), None)
    raw = next((data[k] for k in RAW_KEYS if _usable(data.get(k))), None)
    if ema is None and raw is None:
        if use_ema is True:
            raise WeightsError(f"{path} is a plain state dict without EMA weights; load it without use_ema=True")
        return data
    if use_ema is True and ema is None:
        raise WeightsError(f"{path} has no EMA weights (none of {EMA_KEYS}); load it without use_ema=True")
    if use_ema is False and raw is None:
        raise WeightsError(f"{path} holds only EMA weights (no {RAW_KEYS}); load it without use_ema=False")
    chosen = ema if ema is not None and use_ema is not False else raw
    return chosen if chosen is not None else data


def _tensors_only(state: Mapping, path: Path) -> dict[str, torch.Tensor]:
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors where weights were expected (top-level keys: "
                           f"{list(state)[:8]}); it is not a state dict or a known checkpoint layout")
    return tensors


def _unwrap_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``_orig_mod.`` when every key carries it (repeatedly: DDP around a compiled model)."""
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None or not state:
            return state
        state = {k[len(prefix):]: v for k, v in state.items()}


def _plain_tensors(state_dict: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; a tensor whose storage another entry already uses is cloned."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"cannot save {path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                               "pass model.state_dict() or put non-tensor values into metadata")
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen and tensor.numel() > 0:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[str(key)] = tensor
    return out
