"""Read TensorFlow V2 checkpoints (tensor bundles) with numpy alone, so converting weights needs no TensorFlow.

A V2 checkpoint with prefix ``P`` (the official releases: ``efficientdet-d0/model``) consists of

- ``P.index``: a LevelDB-style sorted table. Under the empty key it holds a ``BundleHeaderProto``
  (num_shards, endianness, version); every other key is a tensor name mapped to a ``BundleEntryProto``
  (dtype, shape, shard_id, offset, size, masked CRC-32C of the bytes, slices);
- ``P.data-SSSSS-of-NNNNN``: the raw tensor bytes of shard ``S`` (C order, in the writer's byte order).

Table layout (tensorflow/core/lib/io): data blocks, a meta-index block, an index block whose values are the
``(offset, size)`` handles of the data blocks, then a 48-byte footer (two varint handles, zero padding, an
8-byte magic number). Every block is followed by a compression byte and the masked CRC-32C of the block plus
that byte. A block holds entries ``varint shared, varint unshared, varint value_len, key[shared:], value``
(a key repeats ``shared`` leading bytes of the previous key, except at the restart points), then the
uint32 restart offsets and their count.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import numpy as np

from efficientdet.errors import WeightsError

__all__ = ["list_tf_checkpoint", "read_tf_checkpoint"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression byte + masked CRC-32C
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1  # readable by TF's table code, but TF writes bundle indexes uncompressed
CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reflected
CRC_MASK_DELTA = 0xA282EAD8
BUNDLE_VERSION = 1  # the bundle format version this reader implements (TF's kTensorBundleVersion)
DAMAGED = "the file is damaged or truncated; re-download or re-extract the checkpoint"

# TF DataType enum (tensorflow/core/framework/types.proto): code -> (name, numpy dtype of the stored bytes).
# A dtype of None cannot be read; string, variant and resource entries are not weights and are skipped.
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "f4"), 2: ("float64", "f8"), 3: ("int32", "i4"), 4: ("uint8", "u1"), 5: ("int16", "i2"),
    6: ("int8", "i1"), 7: ("string", None), 8: ("complex64", "c8"), 9: ("int64", "i8"), 10: ("bool", "?"),
    11: ("qint8", None), 12: ("quint8", None), 13: ("qint32", None), 14: ("bfloat16", "u2"),
    15: ("qint16", None), 16: ("quint16", None), 17: ("uint16", "u2"), 18: ("complex128", "c16"),
    19: ("float16", "f2"), 20: ("resource", None), 21: ("variant", None), 22: ("uint32", "u4"),
    23: ("uint64", "u8"),
}
_NOT_WEIGHTS = frozenset({"string", "variant", "resource"})
_CRC_CHUNK = 64  # bytes per lane of the vectorised CRC
_CRC_BATCH = 64 << 20  # bytes checksummed per pass, to bound temporary memory


class _Corrupt(Exception):
    """A problem in the index; :func:`_read_index` re-raises it as WeightsError naming the file."""

    def __init__(self, reason: str, hint: str = DAMAGED) -> None:
        super().__init__(f"{reason}; {hint}")


@dataclass(frozen=True)
class _Entry:
    """One ``BundleEntryProto``: where a tensor's bytes lie and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int  # masked CRC-32C, as stored
    sliced: bool


def read_tf_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Read every tensor of a TF V2 checkpoint into numpy, verifying each tensor's CRC-32C.

    ``path``: the checkpoint directory (its ``checkpoint`` state file names the prefix), the prefix
    (``.../model``), the ``.index`` file, or a release ``.tar.gz`` / ``.tgz`` holding one of those.
    Returns ``{name: array}`` in name order, with the stored shape and dtype, except that bfloat16 becomes
    float32 and big-endian data native order. String and variant entries (not weights) are skipped.
    Raises :class:`WeightsError` for missing or damaged files, partitioned variables and unreadable dtypes.
    """
    with _checkpoint_prefix(path) as prefix:
        num_shards, big_endian, entries = _read_index(prefix)
        tensors = [e for e in entries if _dtype_name(e.dtype) not in _NOT_WEIGHTS]
        for entry in tensors:
            _check_layout(entry, prefix)
        arrays: dict[str, np.ndarray] = {}
        for shard in sorted({e.shard for e in tensors}):
            group = [e for e in tensors if e.shard == shard]
            file = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
            raws = _read_shard(file, group, num_shards)
            for entry, raw, crc in zip(group, raws, _crc32c(raws), strict=True):
                if _mask(int(crc)) != entry.crc:
                    raise WeightsError(f"checksum mismatch for tensor {entry.name!r} in {file}: {DAMAGED}")
                arrays[entry.name] = _to_numpy(raw, entry, big_endian)
        return {e.name: arrays[e.name] for e in tensors}


def list_tf_checkpoint(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype name, shape)}`` of every entry of a TF V2 checkpoint, read from the index only.

    ``path`` as in :func:`read_tf_checkpoint`. Dtype names are TF's (``"float32"``, ``"bfloat16"``,
    ``"string"``, ...); shapes are tuples, ``()`` for scalars.
    """
    with _checkpoint_prefix(path) as prefix:
        _, _, entries = _read_index(prefix)
    return {e.name: (_dtype_name(e.dtype), e.shape) for e in entries}


def _dtype_name(code: int) -> str:
    return _DTYPES.get(code, (f"DataType {code}", None))[0]


# ----------------------------------------------------------------------------------------------- locating


@contextmanager
def _checkpoint_prefix(path: str | Path) -> Iterator[Path]:
    """Yield the checkpoint prefix that ``path`` designates; a tarball is extracted to a temporary dir."""
    path = Path(path).expanduser()
    if path.is_dir():
        yield _prefix_in_dir(path)
    elif path.is_file() and path.suffix == ".index":
        yield path.with_suffix("")
    elif path.with_name(path.name + ".index").is_file():
        yield path
    elif path.is_file():
        with tempfile.TemporaryDirectory(prefix="efficientdet-tf-") as tmp:
            yield _prefix_in_dir(_extract_tarball(path, Path(tmp)))
    else:
        raise WeightsError(f"no TF checkpoint at {path}: pass the checkpoint directory, its prefix "
                           "(e.g. efficientdet-d0/model, next to model.index), the .index file or the .tar.gz")


def _prefix_in_dir(directory: Path) -> Path:
    """The prefix named by ``directory/checkpoint`` (relative to ``directory`` unless absolute), else the
    prefix of the directory's only ``.index`` file."""
    state = directory / "checkpoint"
    if state.is_file():
        text = state.read_text(encoding="utf-8", errors="replace")
        match = re.search(r'^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.MULTILINE)
        if match is None:
            raise WeightsError(f"{state} has no model_checkpoint_path line; pass the checkpoint prefix instead "
                               f"(e.g. {directory / 'model'})")
        # text-format escapes (\" \\ \ooo octal UTF-8 bytes) -> str
        recorded = Path(match.group(1).encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8"))
        prefix = directory / recorded  # an absolute ``recorded`` replaces ``directory``
        if not prefix.with_name(prefix.name + ".index").is_file():
            prefix = directory / recorded.name  # written on another machine, moved here with its files
        return prefix
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) != 1:
        raise WeightsError(f"{directory} has no 'checkpoint' state file and {len(indexes)} .index files; "
                           "pass the prefix of the checkpoint to read (the .index path without '.index')")
    return indexes[0].with_suffix("")


def _extract_tarball(archive: Path, dest: Path) -> Path:
    """Extract the regular files of tarball ``archive`` under ``dest``; return the one folder with a ``.index``.

    Member names that are absolute or contain ``..`` are refused; links and device files are not extracted.
    """
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise WeightsError(f"{archive} holds an unsafe path {member.name!r}; refusing to extract it. "
                                       "Use the official release archive.")
                if not member.isfile():
                    continue
                target = dest.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise WeightsError(f"cannot extract {archive}: not a tar archive, or a damaged one ({type(err).__name__}); "
                           "pass an official checkpoint .tar.gz (re-download it if damaged), or the checkpoint "
                           "folder, prefix or .index file") from None
    directories = sorted({index.parent for index in dest.rglob("*.index")})
    if len(directories) != 1:
        raise WeightsError(f"{archive} should hold one TF checkpoint (a folder with model.index); found "
                           f"{len(directories)} folders with .index files")
    return directories[0]


# ------------------------------------------------------------------------------------------- index parsing


def _read_index(prefix: Path) -> tuple[int, bool, list[_Entry]]:
    """Parse ``prefix.index``: (num_shards, big_endian, entries in name order)."""
    index = prefix.with_name(prefix.name + ".index")
    try:
        data = index.read_bytes()
    except OSError as err:
        raise WeightsError(f"cannot read the TF checkpoint index {index} ({err.strerror or err}); pass the checkpoint "
                           "directory, its prefix, the .index file or the .tar.gz") from None
    try:
        items = _table_items(data)
        key, value = next(items, (None, b""))
        if key != b"":
            raise _Corrupt("the first entry is not the bundle header")
        num_shards, big_endian = _parse_header(value)
        entries = [_parse_entry(key.decode("utf-8", "replace"), value) for key, value in items]
    except _Corrupt as err:
        raise WeightsError(f"cannot read the TF checkpoint index {index}: {err}") from None
    for entry in entries:
        if entry.sliced:
            raise WeightsError(f"{index}: variable {entry.name!r} is partitioned (saved in slices), which is not "
                               "supported; restore it in TensorFlow and save it unpartitioned")
        if not 0 <= entry.shard < num_shards:
            raise WeightsError(f"{index}: tensor {entry.name!r} is in shard {entry.shard} of {num_shards}; {DAMAGED}")
    return num_shards, big_endian, entries


def _table_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield the (key, value) pairs of a TF/LevelDB table held in ``data``, in key order."""
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise _Corrupt("no table footer at the end (bad magic number)")
    footer = data[-FOOTER_SIZE:]
    _, pos = _block_handle(footer, 0)  # the meta-index block: TF stores nothing there
    index_handle, _ = _block_handle(footer, pos)
    (index_block,) = _read_blocks(data, [index_handle])
    handles = [_block_handle(value, 0)[0] for _, value in _block_items(index_block)]
    for block in _read_blocks(data, handles):
        yield from _block_items(block)


def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _read_blocks(data: bytes, handles: Sequence[tuple[int, int]]) -> list[bytes]:
    """The contents of the blocks at ``handles``, after checking their trailers (CRC, compression byte)."""
    for offset, size in handles:
        if offset + size + BLOCK_TRAILER_SIZE > len(data) - FOOTER_SIZE:
            raise _Corrupt(f"the block at byte {offset} runs past the end of the file")
    trailed = [np.frombuffer(data, np.uint8, size + 1, offset) for offset, size in handles]
    blocks = []
    for (offset, size), crc in zip(handles, _crc32c(trailed), strict=True):
        end = offset + size
        if _mask(int(crc)) != int.from_bytes(data[end + 1:end + BLOCK_TRAILER_SIZE], "little"):
            raise _Corrupt(f"checksum mismatch in the block at byte {offset}")
        if data[end] == SNAPPY_COMPRESSION:
            raise _Corrupt(f"the block at byte {offset} is snappy-compressed",
                           "TensorFlow writes checkpoint indexes uncompressed; re-save the checkpoint with TF")
        if data[end] != NO_COMPRESSION:
            raise _Corrupt(f"unknown compression type {data[end]} of the block at byte {offset}")
        blocks.append(data[offset:offset + size])
    return blocks


def _block_items(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield the (key, value) pairs of one table block, undoing the key prefix compression."""
    num_restarts = int.from_bytes(block[-4:], "little") if len(block) >= 4 else 0
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or limit < 0:
        raise _Corrupt("a block has a bad restart array")
    restarts = set(np.frombuffer(block, "<u4", num_restarts, limit).tolist())
    pos, key = 0, b""
    while pos < limit:
        start = pos
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or (shared and start in restarts) or pos + unshared + value_len > limit:
            raise _Corrupt(f"bad entry at byte {start} of a block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the base-128 varint at ``buf[pos]``: (value, position after it)."""
    value = shift = 0
    while pos < len(buf) and shift < 70:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
    raise _Corrupt("a varint is cut off or too long")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a serialized protobuf message: int for varint and fixed-width
    fields (unsigned), bytes for length-delimited ones (strings, sub-messages, packed repeated fields)."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):  # fixed64, fixed32
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise _Corrupt(f"unexpected protobuf wire type {wire}")
        if pos > len(buf):
            raise _Corrupt("a protobuf message is cut off")
        yield tag >> 3, value


def _int_fields(buf: bytes) -> dict[int, int]:
    """The last value of each integer field of a message (proto3 scalar semantics)."""
    return {field: value for field, value in _proto_fields(buf) if isinstance(value, int)}


def _parse_header(value: bytes) -> tuple[int, bool]:
    """BundleHeaderProto {1: num_shards, 2: endianness (0 little, 1 big), 3: VersionDef} -> (shards, big)."""
    header = _int_fields(value)
    version = b"".join(v for field, v in _proto_fields(value) if field == 3 and isinstance(v, bytes))
    if _int_fields(version).get(2, 0) > BUNDLE_VERSION:  # VersionDef {1: producer, 2: min_consumer}
        raise _Corrupt(f"it needs a reader of bundle format version > {BUNDLE_VERSION}",
                       "convert it with the TensorFlow that wrote it")
    return header.get(1, 0), header.get(2, 0) == 1


def _parse_entry(name: str, value: bytes) -> _Entry:
    """BundleEntryProto {1: dtype, 2: TensorShapeProto, 3: shard_id, 4: offset, 5: size, 6: crc32c (fixed32),
    7: slices} -> _Entry. TensorShapeProto {2: repeated Dim {1: size}, 3: unknown_rank}."""
    fields = _int_fields(value)
    shape: list[int] = []
    for field, shape_proto in _proto_fields(value):
        if field != 2 or not isinstance(shape_proto, bytes):
            continue
        for dim_field, dim in _proto_fields(shape_proto):
            size = _int_fields(dim).get(1, 0) if isinstance(dim, bytes) else 0
            if (dim_field == 3 and dim) or size >= 1 << 63:  # unknown rank, or a negative (unknown) size
                raise _Corrupt(f"tensor {name!r} has no definite shape")
            if dim_field == 2:
                shape.append(size)
    sliced = any(field == 7 for field, _ in _proto_fields(value))
    return _Entry(name, fields.get(1, 0), tuple(shape), fields.get(3, 0), fields.get(4, 0), fields.get(5, 0),
                  fields.get(6, 0), sliced)


# ------------------------------------------------------------------------------------------- tensor data


def _check_layout(entry: _Entry, prefix: Path) -> None:
    """Raise WeightsError unless ``entry`` has a readable dtype and ``size`` matches its shape."""
    name, stored = _dtype_name(entry.dtype), _DTYPES.get(entry.dtype, ("", None))[1]
    if stored is None:
        raise WeightsError(f"{prefix}.index: tensor {entry.name!r} has dtype {name}, which this reader does not "
                           "support; cast it in TensorFlow (e.g. to float32) and save again")
    if entry.size != np.dtype(stored).itemsize * math.prod(entry.shape):
        raise WeightsError(f"{prefix}.index: tensor {entry.name!r} ({name}{list(entry.shape)}) has {entry.size} "
                           f"bytes; {DAMAGED}")


def _read_shard(file: Path, entries: Sequence[_Entry], num_shards: int) -> list[np.ndarray]:
    """The stored bytes of ``entries`` (uint8 [size] each, freshly allocated so views are aligned)."""
    raws = []
    try:
        with open(file, "rb") as f:
            for entry in entries:
                raw = np.empty(entry.size, np.uint8)
                f.seek(entry.offset)
                if f.readinto(raw.data) != entry.size:
                    raise WeightsError(f"{file} ends before tensor {entry.name!r} (bytes {entry.offset}.."
                                       f"{entry.offset + entry.size}); {DAMAGED}")
                raws.append(raw)
    except FileNotFoundError:
        raise WeightsError(f"data file {file} is missing: a TF checkpoint needs its .index and all {num_shards} "
                           ".data-*-of-* files side by side") from None
    return raws


def _to_numpy(raw: np.ndarray, entry: _Entry, big_endian: bool) -> np.ndarray:
    """View the checked bytes as the entry's dtype and shape; bfloat16 -> float32, native byte order."""
    name, stored = _DTYPES[entry.dtype]
    dtype = np.dtype(stored).newbyteorder(">" if big_endian else "<")
    array = raw.view(dtype).reshape(entry.shape)
    if name == "bfloat16":  # the upper half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(dtype.newbyteorder("="), copy=False)


# ------------------------------------------------------------------------------------------------ CRC-32C


def _mask(crc: int) -> int:
    """The masked form in which TF stores CRCs: rotated right by 15 bits, plus a constant (mod 2**32)."""
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


@cache
def _zero_runs() -> np.ndarray:
    """Tables (uint32 [48, 4, 256]) advancing a raw CRC-32C state over ``2**k`` zero bytes.

    Without its initial and final inversion, CRC is linear over GF(2): the state after ``2**k`` zero bytes
    is a linear map of the state before, held as ``zeros[k][j][v]`` = its image of the state ``v << 8*j``.
    """
    byte = np.arange(256, dtype=np.uint32)  # the classic byte table: state v advanced over one zero byte
    for _ in range(8):
        byte = np.where(byte & 1, (byte >> 1) ^ np.uint32(CRC32C_POLY), byte >> 1)
    basis = np.arange(256, dtype=np.uint32) << (8 * np.arange(4, dtype=np.uint32))[:, None]
    zeros = [byte[basis & 0xFF] ^ (basis >> 8)]
    for _ in range(47):
        zeros.append(_advance(zeros[-1], zeros[-1]))
    return np.stack(zeros)


def _advance(zeros: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Apply one zero-run map (tables [4, 256]) to raw CRC states (uint32, any shape)."""
    return (zeros[0][states & 0xFF] ^ zeros[1][(states >> 8) & 0xFF] ^ zeros[2][(states >> 16) & 0xFF]
            ^ zeros[3][states >> 24])


def _skip_zeros(states: np.ndarray, counts: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """Advance raw CRC states (uint32 [n]) over ``counts`` (int64 [n]) zero bytes each, one bit at a time."""
    for k in range(int(counts.max(initial=0)).bit_length()):
        hit = (counts >> k) & 1 == 1
        if hit.any():
            states[hit] = _advance(zeros[k], states[hit])
    return states


def _crc32c(buffers: Sequence[np.ndarray]) -> np.ndarray:
    """CRC-32C (the checksum TF stores) of each uint8 buffer: uint32 [len(buffers)], in batches."""
    sizes = np.array([b.size for b in buffers], dtype=np.int64)
    batches = np.cumsum(sizes) // _CRC_BATCH
    out = np.empty(len(buffers), np.uint32)
    for batch in np.unique(batches):
        members = np.flatnonzero(batches == batch)
        out[members] = _crc32c_batch([buffers[int(i)] for i in members])
    return out


def _crc32c_batch(buffers: Sequence[np.ndarray]) -> np.ndarray:
    """CRC-32C of each buffer, with numpy running all 64-byte chunks of all buffers side by side.

    Each buffer is left-padded with zeros to whole chunks (leading zeros leave a raw CRC from state 0 at 0).
    A chunk is hashed 4 bytes at a time: a raw CRC over the little-endian word ``w`` from state ``s`` is
    ``s ^ w`` advanced over 4 zero bytes. Every chunk's CRC is then advanced over the bytes after it in its
    buffer and a buffer's chunks are XOR-ed; the standard CRC adds the initial state 0xFFFFFFFF advanced
    over the whole buffer, and inverts.
    """
    zeros = _zero_runs()
    sizes = np.array([b.size for b in buffers], dtype=np.int64)
    chunks = -(-sizes // _CRC_CHUNK)
    ends = np.cumsum(chunks)
    lanes = np.zeros((int(ends[-1]), _CRC_CHUNK), np.uint8)
    flat = lanes.reshape(-1)
    for buf, end in zip(buffers, ends * _CRC_CHUNK, strict=True):
        flat[end - buf.size:end] = buf
    words = lanes.view("<u4")
    state = np.zeros(len(lanes), np.uint32)
    for i in range(words.shape[1]):
        state = _advance(zeros[2], state ^ words[:, i])
    following = np.repeat(ends, chunks) - 1 - np.arange(len(lanes))  # chunks after each one in its buffer
    state = _skip_zeros(state, following * _CRC_CHUNK, zeros)
    raw = np.zeros(len(buffers), np.uint32)
    if len(lanes):
        nonempty = chunks > 0
        raw[nonempty] = np.bitwise_xor.reduceat(state, (ends - chunks)[nonempty])
    initial = _skip_zeros(np.full(len(buffers), 0xFFFFFFFF, np.uint32), sizes, zeros)
    return initial ^ raw ^ np.uint32(0xFFFFFFFF)
