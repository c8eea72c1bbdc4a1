"""Downloading weight files into a local cache, with a sha256 check.

Cache folder: ``$EFFICIENTDET_CACHE`` when set, else ``~/.cache/efficientdet``. A file is stored under its
file name (the last part of the URL unless ``filename=`` says otherwise), so a file copied there by hand
is used without touching the network: on a machine without internet access, fetch the file elsewhere and
copy it into the cache folder (or pass its path to ``checkpoint_path=`` / ``--checkpoint``).

Hash check: ``sha256`` is the full hex digest or a hex prefix of it. When it is not given, the prefix
embedded in the file name the way torch.hub and timm releases name their files is used
(``tf_efficientdet_d0_34-f153e0cf.pth``: the file's sha256 starts with ``f153e0cf``); a file name without
one is not checked. A download goes to a temporary file in the cache folder and is renamed to its final
name only after the hash matched, so a failed or corrupt download leaves nothing behind.

Cached files are not re-hashed on every use: after a file has been hashed, a marker ``<name>.sha256``
beside it records its digest, size and modification time. While size and modification time still match,
the recorded digest is trusted; otherwise (or without a marker, e.g. for a file copied in by hand) the
file is hashed once more and the marker rewritten.

Network use: one attempt per file through ``urllib``, no retry loop. A failed DNS lookup or a refused
connection fails at once; ``timeout`` bounds each connect and each read.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from efficientdet.errors import ConfigError, WeightsError
from efficientdet.weights.io import file_sha256

CACHE_ENV = "EFFICIENTDET_CACHE"
"""Environment variable naming the cache folder."""
DEFAULT_CACHE_DIR = Path("~/.cache/efficientdet")
"""Cache folder used when ``$EFFICIENTDET_CACHE`` is not set (``~`` is expanded)."""
DEFAULT_TIMEOUT = 15.0
"""Seconds allowed for connecting and for each read of a download."""
HF_ENDPOINT_ENV = "HF_ENDPOINT"
"""Environment variable for a Hugging Face mirror, the one ``huggingface_hub`` reads too."""
HF_ENDPOINT = "https://huggingface.co"
HF_SAFETENSORS_NAME = "model.safetensors"
HF_PYTORCH_NAME = "pytorch_model.bin"
MARKER_SUFFIX = ".sha256"

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^-]+$")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_CHUNK = 1 << 20


class _NotFound(WeightsError):
    """The server answered 404: the caller may try another location."""


def default_cache_dir() -> Path:
    """``$EFFICIENTDET_CACHE`` if set, else ``~/.cache/efficientdet`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR.expanduser()


def hash_prefix_from_filename(name: str) -> str | None:
    """The sha256 hex prefix in a torch.hub-style file name, or ``None`` when it has none.

    ``tf_efficientdet_d0_34-f153e0cf.pth`` -> ``"f153e0cf"``; ``model.safetensors`` -> ``None``. ``name`` may
    be a path or URL; only its last part is read. The prefix is 8 to 64 lowercase hex digits after the last
    ``-`` and before the extension.
    """
    match = _HASH_IN_NAME.search(_basename(name))
    return match.group(1) if match else None


def download(url: str, *, sha256: str | None = None, cache_dir: str | Path | None = None,
             filename: str | None = None, timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> Path:
    """Return the local path of the file at ``url``, downloading it into the cache unless it is there.

    ``sha256``: the expected full hex digest or a hex prefix of it (at least 8 digits); when ``None``, the
    prefix in the file name (see :func:`hash_prefix_from_filename`), if any, is checked. ``cache_dir``:
    defaults to :func:`default_cache_dir`. ``filename``: the name in the cache (default: the URL's last
    part). ``timeout``: seconds per connect/read. ``progress``: show a tqdm bar on stderr.

    Raises :class:`WeightsError` when the file cannot be fetched (the message names the URL and how to
    provide the file offline) or its hash does not match (nothing is kept).
    """
    return _download(url, sha256, cache_dir, filename, timeout, progress, _offline_hint)


def _download(url: str, sha256: str | None, cache_dir: str | Path | None, filename: str | None, timeout: float,
              progress: bool, hint: Callable[[Path], str]) -> Path:
    """:func:`download`, with ``hint(cache path)`` telling how to provide the file when fetching fails."""
    name = filename if filename is not None else _basename(url)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"cannot derive a cache file name from {url!r} (got {name!r}); pass filename='name.pth'")
    expected = _expected_hash(sha256, name)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = folder / name
    if dest.is_file():
        _check_cached(dest, expected, url)
        return dest
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as err:
        raise WeightsError(f"cannot write to the weights cache {folder}: {err}. Set ${CACHE_ENV} to a writable "
                           "folder or pass cache_dir=") from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            digest = _fetch(url, f, timeout=timeout, progress=progress, desc=name, hint=hint(dest))
        if expected is not None and not digest.startswith(expected):
            raise WeightsError(
                f"the file downloaded from {url} has sha256 {digest}, but {expected} was expected, so it was not "
                "kept. The download may have been corrupted (try again) or the file on the server has changed. "
                "If you trust the file, download it yourself and pass its path (checkpoint_path= / --checkpoint)."
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest, digest)
    return dest


@dataclass(frozen=True)
class WeightSource:
    """One place timm's pretrained weights can come from: the URL and the file name used in the cache."""

    url: str
    filename: str


def timm_weight_sources(model_name: str, *, hf_endpoint: str | None = None) -> list[WeightSource]:
    """Where timm would fetch the ImageNet weights of ``model_name`` (``arch`` or ``arch.tag``), in order.

    From timm's pretrained config: with an ``hf_hub_id`` (``repo[@revision]``), the Hugging Face resolve URLs
    ``{endpoint}/{repo}/resolve/{revision or main}/model.safetensors`` then ``.../pytorch_model.bin`` (timm
    tries the safetensors file first), or ``hf_hub_filename`` when the config names one; then the config's
    ``url`` (a URL, or a ``(URL, file name)`` pair), if any. ``hf_endpoint`` defaults to ``$HF_ENDPOINT``,
    else ``https://huggingface.co``. Hugging Face files are cached as ``{repo with / as --}--{file}`` (the
    same file name sits in every repo).
    """
    from timm.models import get_pretrained_cfg, is_model, split_model_name_tag

    arch, _ = split_model_name_tag(model_name)
    if not is_model(arch):
        raise ConfigError(f"unknown timm model {model_name!r}; see timm.list_models()")
    try:
        cfg = get_pretrained_cfg(model_name, allow_unregistered=False)
    except RuntimeError as err:
        raise ConfigError(f"timm has no pretrained weights named {model_name!r} ({err}); see "
                          f"timm.list_pretrained('{arch}*')") from err
    if cfg is None:
        raise ConfigError(f"timm has no pretrained weights named {model_name!r}")
    sources = []
    if cfg.hf_hub_id:
        endpoint = (hf_endpoint or os.environ.get(HF_ENDPOINT_ENV) or HF_ENDPOINT).rstrip("/")
        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else [HF_SAFETENSORS_NAME, HF_PYTORCH_NAME]
        for file in files:
            url = f"{endpoint}/{repo}/resolve/{urllib.parse.quote(revision or 'main', safe='')}/{file}"
            cached = f"{repo.replace('/', '--')}{'@' + revision if revision else ''}--{file}"
            sources.append(WeightSource(url, cached))
    if cfg.url:  # a URL, or (URL, file name)
        url, file = cfg.url if isinstance(cfg.url, tuple) else (cfg.url, _basename(cfg.url))
        sources.append(WeightSource(url, file))
    if not sources:
        raise WeightsError(f"timm's config for {model_name!r} names no download location for its weights")
    return sources


def timm_backbone_weights(model_name: str, *, cache_dir: str | Path | None = None, hf_endpoint: str | None = None,
                          timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> Path:
    """Fetch (or find in the cache) the ImageNet weights timm would load for ``model_name``; return the path.

    Tries the locations of :func:`timm_weight_sources` in order: a file already in the cache under any of
    their names is used at once; otherwise each is downloaded with :func:`download` (hash-checked when the
    name carries a prefix), moving on only when the server answers 404. ``hf_endpoint``: a Hugging Face
    mirror (or a test server). Unlike ``timm.create_model(pretrained=True)``, an offline machine gets an
    immediate :class:`WeightsError` naming the file to provide instead of a series of retries.
    """
    sources = timm_weight_sources(model_name, hf_endpoint=hf_endpoint)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    choices = "\n".join(f"  {folder / s.filename}  (from {s.url})" for s in sources)

    def hint(_: Path) -> str:
        return (f"Without internet access, get the ImageNet weights of timm's {model_name!r} on another machine "
                f"and copy them into the weights cache (${CACHE_ENV}) as any one of:\n{choices}")

    cached = [s for s in sources if (folder / s.filename).is_file()]
    candidates = cached[:1] or sources
    for source in candidates[:-1]:
        try:
            return _download(source.url, None, folder, source.filename, timeout, progress, hint)
        except _NotFound:
            continue
    last = candidates[-1]
    return _download(last.url, None, folder, last.filename, timeout, progress, hint)


def _basename(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def _expected_hash(sha256: str | None, name: str) -> str | None:
    if sha256 is None:
        return hash_prefix_from_filename(name)
    value = sha256.strip().lower()
    if not _HEX.fullmatch(value):
        raise ConfigError(f"sha256={sha256!r} is not a sha256 hex digest or a prefix of one (8 to 64 hex digits)")
    return value


def _marker(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _write_marker(path: Path, digest: str) -> None:
    stat = path.stat()
    try:
        _marker(path).write_text(f"{digest} {stat.st_size} {stat.st_mtime_ns}\n")
    except OSError:
        pass  # a read-only cache still works; the file is hashed on each use


def _cached_digest(path: Path) -> str:
    """The file's sha256, from its marker while size and mtime are unchanged, else hashed (and marked)."""
    stat = path.stat()
    try:
        digest, size, mtime = _marker(path).read_text().split()
        if int(size) == stat.st_size and int(mtime) == stat.st_mtime_ns:
            return digest
    except (OSError, ValueError):
        pass
    digest = file_sha256(path)
    _write_marker(path, digest)
    return digest


def _check_cached(path: Path, expected: str | None, url: str) -> None:
    if expected is None:
        return
    digest = _cached_digest(path)
    if not digest.startswith(expected):
        raise WeightsError(f"the cached file {path} has sha256 {digest}, but {expected} was expected for {url}. "
                           "Delete it to download it again, or replace it with the right file.")


def _fetch(url: str, out: BinaryIO, *, timeout: float, progress: bool, desc: str, hint: str) -> str:
    """Stream ``url`` into the open file ``out``; return its sha256 hex digest. Errors end with ``hint``."""
    from tqdm import tqdm

    from efficientdet import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"efficientdet/{__version__}"})
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                      disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        kind = _NotFound if err.code == 404 else WeightsError
        raise kind(f"cannot download {url}: the server answered HTTP {err.code} {err.reason}. "
                   f"{hint}") from err
    except urllib.error.URLError as err:
        raise WeightsError(f"cannot download {url}: {err.reason}. {hint}") from err
    except (OSError, HTTPException) as err:  # timeouts, resets, truncated responses
        raise WeightsError(f"cannot download {url}: {err!r}. {hint}") from err
    if total is not None and size != total:
        raise WeightsError(f"cannot download {url}: got {size} of {total} bytes. {hint}")
    return digest.hexdigest()


def _offline_hint(dest: Path) -> str:
    return (f"Without internet access, get the file on another machine and either pass its path "
            f"(checkpoint_path= in Python, --checkpoint on the command line) or copy it to {dest} "
            f"(the weights cache; set ${CACHE_ENV} to use another folder).")
