"""The TF V2 checkpoint reader, against checkpoints written by the official TensorFlow code.

Oracles: ``variables-*.txt`` (name, dtype, shape, float64 sum and sha256 of every entry, made with TF);
the published CRC-32C check values; a bit-by-bit CRC-32C written here; torch for bfloat16. Damaged and
unusual checkpoints (other dtypes, several shards, big-endian, slices) are built by a small writer below,
which follows the tensor-bundle format independently of the reader.
"""

from __future__ import annotations

import hashlib
import io
import math
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from efficientdet.errors import WeightsError
from efficientdet.weights import tf_reader
from efficientdet.weights.tf_reader import list_tf_checkpoint, read_tf_checkpoint

FIXTURES = {  # fixture folder, checkpoint folder, variables listing, entry count
    "d0": ("tf-official", "efficientdet-d0", "variables-d0.txt", 1419),
    "lite0": ("tf-official-lite0", "efficientdet-lite0", "variables-lite0.txt", 1177),
}
DATA = "model.data-00000-of-00001"


def _checkpoint_dir(reference_dir: Path, which: str = "d0") -> Path:
    folder, name, _, _ = FIXTURES[which]
    return reference_dir / folder / name


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for file in dst.iterdir():
        file.chmod(0o644)  # the fixtures are read-only
    return dst


# ------------------------------------------------------------------------------ independent bundle writer


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c_bitwise(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _block(items: list[tuple[bytes, bytes]], restart_interval: int = 3) -> bytes:
    out, restarts, previous = bytearray(), [0], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out)) if i else None
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    return bytes(out) + struct.pack(f"<{len(restarts) + 1}I", *restarts, len(restarts))


def _write_bundle(prefix: Path, tensors: dict[str, tuple[int, tuple[int, ...], bytes, int]], *,
                  num_shards: int = 1, big_endian: bool = False, min_consumer: int = 0,
                  compression: int = 0, extra: dict[str, bytes] | None = None) -> None:
    """Write ``{name: (dtype code, shape, raw bytes, shard)}`` as a TF V2 checkpoint at ``prefix``.

    ``extra`` appends raw protobuf bytes to the entries it names (e.g. a ``slices`` field).
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    shards = [bytearray() for _ in range(num_shards)]
    items = [(b"", _int_field(1, num_shards) + _int_field(2, int(big_endian))
              + _bytes_field(3, _int_field(1, 1) + _int_field(2, min_consumer)))]
    for name in sorted(tensors):
        code, shape, raw, shard = tensors[name]
        shape_proto = b"".join(_bytes_field(2, _int_field(1, size)) for size in shape)
        entry = (_int_field(1, code) + _bytes_field(2, shape_proto) + _int_field(3, shard)
                 + _int_field(4, len(shards[shard])) + _int_field(5, len(raw))
                 + _varint(6 << 3 | 5) + struct.pack("<I", _masked(raw)) + (extra or {}).get(name, b""))
        shards[shard] += raw
        items.append((name.encode(), entry))
    table = bytearray()

    def add(contents: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(contents))
        trailer = bytes([compression])
        table.extend(contents + trailer + struct.pack("<I", _masked(contents + trailer)))
        return handle

    data_handle = add(_block(items))
    meta_handle = add(_block([]))
    index_handle = add(_block([(items[-1][0], data_handle)]))
    table.extend((meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57))
    Path(f"{prefix}.index").write_bytes(bytes(table))
    for shard, data in enumerate(shards):
        Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").write_bytes(bytes(data))


# ----------------------------------------------------------------------------------------------- CRC-32C


def test_crc32c_matches_published_check_values():
    vectors = {  # the "123456789" check value, and RFC 3720 (iSCSI) appendix B.4
        b"123456789": 0xE3069283,
        bytes(32): 0x8A9136AA,
        b"\xff" * 32: 0x62A8AB43,
        bytes(range(32)): 0x46DD794E,
        bytes(range(31, -1, -1)): 0x113FDB5C,
    }
    got = tf_reader._crc32c([np.frombuffer(data, np.uint8) for data in vectors])
    assert [int(c) for c in got] == list(vectors.values())


def test_crc32c_matches_bitwise_reference_across_batches(monkeypatch):
    rng = np.random.default_rng(0)
    buffers = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 1, 3, 4, 63, 64, 65, 200, 0, 1031, 4099)]
    expected = [_crc32c_bitwise(b.tobytes()) for b in buffers]
    assert [int(c) for c in tf_reader._crc32c(buffers)] == expected
    monkeypatch.setattr(tf_reader, "_CRC_BATCH", 100)  # many passes, a buffer larger than a pass
    assert [int(c) for c in tf_reader._crc32c(buffers)] == expected


# ---------------------------------------------------------------------------------- official checkpoints


def _listing(path: Path) -> dict[str, tuple[str, tuple[int, ...], float, str]]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        name, dtype, shape, total, sha = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        out[name] = (dtype, dims, float(total), sha)
    return out


@pytest.mark.parametrize("which", sorted(FIXTURES))
def test_every_entry_of_official_checkpoint(reference_dir, which):
    folder, _, listing_name, count = FIXTURES[which]
    listing = _listing(reference_dir / folder / listing_name)
    tensors = read_tf_checkpoint(_checkpoint_dir(reference_dir, which))
    assert len(listing) == count and sorted(tensors) == sorted(listing)
    for name, (dtype, shape, total, sha) in listing.items():
        array = tensors[name]
        assert (str(array.dtype), array.shape) == (dtype, shape), name
        assert hashlib.sha256(array.tobytes()).hexdigest() == sha, name
        assert math.isclose(array.sum(dtype=np.float64), total, rel_tol=1e-7, abs_tol=1e-6), name
    assert list_tf_checkpoint(_checkpoint_dir(reference_dir, which)) == {
        name: (dtype, shape) for name, (dtype, shape, _, _) in listing.items()}


def test_ema_shadows_and_global_step(reference_dir):
    tensors = read_tf_checkpoint(_checkpoint_dir(reference_dir))
    assert int(tensors["global_step"]) == 1000  # README: int64 scalar 1000
    plain = [n for n in tensors if not n.endswith("/ExponentialMovingAverage") and n != "global_step"]
    assert len(plain) == 709 and all(n + "/ExponentialMovingAverage" in tensors for n in plain)
    kernel = tensors["efficientnet-b0/stem/conv2d/kernel"]
    assert kernel.shape == (3, 3, 3, 32) and kernel.flags.writeable and kernel.flags.aligned


def test_path_forms(reference_dir, tmp_path):
    src = _checkpoint_dir(reference_dir)
    expected = list_tf_checkpoint(src)
    assert list_tf_checkpoint(src / "model") == expected
    assert list_tf_checkpoint(str(src / "model.index")) == expected
    # a state file with an absolute path, and one written on another machine (only the name still fits)
    for number, recorded in enumerate([str(src / "model"), "/home/builder/efficientdet-d0/model"]):
        folder = tmp_path / f"state{number}"
        folder.mkdir()
        for file in src.iterdir():
            if file.name != "checkpoint":
                (folder / file.name).symlink_to(file)
        (folder / "checkpoint").write_text(f'model_checkpoint_path: "{recorded}"\n')
        assert list_tf_checkpoint(folder) == expected
    (tmp_path / "state1" / "checkpoint").unlink()  # no state file: the only .index is used
    assert list_tf_checkpoint(tmp_path / "state1") == expected


def test_release_tarball(reference_dir, tmp_path):
    src = _checkpoint_dir(reference_dir, "lite0")
    archive = tmp_path / "efficientdet-lite0.tgz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(src, arcname="efficientdet-lite0")
    expected = read_tf_checkpoint(src)
    got = read_tf_checkpoint(archive)
    assert list(got) == list(expected)
    assert all(np.array_equal(got[name], expected[name]) for name in expected)


def test_tarball_with_unsafe_or_linked_members(tmp_path):
    def tarball(name: str, members: list[tarfile.TarInfo]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member in members:
                tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
        return path

    escape = tarfile.TarInfo("../escaped.index")
    escape.size = 1
    with pytest.raises(WeightsError, match="unsafe path"):
        read_tf_checkpoint(tarball("escape.tar.gz", [escape]))
    assert not (tmp_path / "escaped.index").exists()
    absolute = tarfile.TarInfo(str(tmp_path / "absolute.index"))
    absolute.size = 1
    with pytest.raises(WeightsError, match="unsafe path"):
        read_tf_checkpoint(tarball("absolute.tar.gz", [absolute]))
    assert not (tmp_path / "absolute.index").exists()
    link = tarfile.TarInfo("ckpt/model.index")  # a link is never extracted, so no checkpoint is found
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(WeightsError, match="found 0 folders"):
        read_tf_checkpoint(tarball("link.tar.gz", [link]))
    (tmp_path / "cut.tar.gz").write_bytes(tarball("whole.tar.gz", [escape]).read_bytes()[:30])
    with pytest.raises(WeightsError, match="cut.tar.gz"):
        read_tf_checkpoint(tmp_path / "cut.tar.gz")


# --------------------------------------------------------------------------------------------- damage


def test_corrupted_data_byte_fails_checksum(reference_dir, tmp_path):
    folder = _copy(_checkpoint_dir(reference_dir, "lite0"), tmp_path / "ckpt")
    with open(folder / DATA, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(WeightsError, match=r"checksum mismatch for tensor '.+' in .*model\.data-00000-of-00001"):
        read_tf_checkpoint(folder)


@pytest.mark.parametrize("keep", [0.5, -1])
def test_truncated_index(reference_dir, tmp_path, keep):
    folder = _copy(_checkpoint_dir(reference_dir, "lite0"), tmp_path / "ckpt")
    index = folder / "model.index"
    data = index.read_bytes()
    index.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(WeightsError, match=r"model\.index: no table footer.*truncated"):
        list_tf_checkpoint(folder)


def test_damaged_index_block(reference_dir, tmp_path):
    folder = _copy(_checkpoint_dir(reference_dir, "lite0"), tmp_path / "ckpt")
    index = folder / "model.index"
    data = bytearray(index.read_bytes())
    data[100] ^= 0x01
    index.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"model\.index: checksum mismatch in the block at byte 0"):
        list_tf_checkpoint(folder)


def test_missing_or_truncated_shard(reference_dir, tmp_path):
    folder = _copy(_checkpoint_dir(reference_dir, "lite0"), tmp_path / "ckpt")
    data = (folder / DATA).read_bytes()
    (folder / DATA).write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match=r"model\.data-00000-of-00001 ends before tensor"):
        read_tf_checkpoint(folder)
    (folder / DATA).unlink()
    assert len(list_tf_checkpoint(folder)) == 1177  # the index alone still lists
    with pytest.raises(WeightsError, match=r"data file .*model\.data-00000-of-00001 is missing"):
        read_tf_checkpoint(folder)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(WeightsError, match="no TF checkpoint at"):
        read_tf_checkpoint(tmp_path / "nothing")
    (tmp_path / "weights.pth").write_bytes(b"not a tarball")
    with pytest.raises(WeightsError, match=r"cannot extract .*weights\.pth: not a tar archive"):
        read_tf_checkpoint(tmp_path / "weights.pth")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    with pytest.raises(WeightsError, match=r"cannot read the TF checkpoint index .*model\.index"):
        read_tf_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------ synthetic bundles


def test_dtypes_shards_and_byte_order(tmp_path):
    rng = np.random.default_rng(0)
    bf16 = torch.randn(3, 5).to(torch.bfloat16)
    values = {  # name: (TF dtype code, array in storage form, expected result)
        "a/half": (19, rng.standard_normal((2, 3)).astype(np.float16), None),
        "a/bf16": (14, bf16.view(torch.int16).numpy(), bf16.float().numpy()),
        "b/int32": (3, rng.integers(-9, 9, (4,), dtype=np.int32), None),
        "b/bool": (10, np.array([[True, False, True]]), None),
        "c/int64": (9, np.array(-5, dtype=np.int64), None),
        "c/double": (2, rng.standard_normal(7), None),
        "c/uint16": (17, np.arange(6, dtype=np.uint16).reshape(2, 3), None),
        "d/empty": (1, np.zeros((0, 4), np.float32), None),
    }
    for big_endian in (False, True):
        order = ">" if big_endian else "<"
        tensors = {name: (code, array.shape, array.astype(array.dtype.newbyteorder(order)).tobytes(), i % 2)
                   for i, (name, (code, array, _)) in enumerate(values.items())}
        prefix = tmp_path / f"big{big_endian}" / "model"
        _write_bundle(prefix, tensors, num_shards=2, big_endian=big_endian)
        got = read_tf_checkpoint(prefix)
        assert list(got) == sorted(values)
        for name, (_, array, expected) in values.items():
            expected = array if expected is None else expected
            assert got[name].dtype == expected.dtype and got[name].dtype.isnative, name
            assert got[name].shape == expected.shape and np.array_equal(got[name], expected), name
    assert list_tf_checkpoint(prefix)["a/bf16"] == ("bfloat16", (3, 5))
    Path(f"{prefix}.data-00001-of-00002").unlink()
    with pytest.raises(WeightsError, match=r"model\.data-00001-of-00002 is missing.*all 2"):
        read_tf_checkpoint(prefix)


def test_string_entries_are_listed_but_skipped(tmp_path):
    text = b"\x05\x00" + struct.pack("<I", 0) + b"hello"  # a length, a length checksum, the bytes
    _write_bundle(tmp_path / "model", {"_CHECKPOINTABLE_OBJECT_GRAPH": (7, (), text, 0),
                                       "w": (1, (2,), np.ones(2, np.float32).tobytes(), 0)})
    assert list_tf_checkpoint(tmp_path) == {"_CHECKPOINTABLE_OBJECT_GRAPH": ("string", ()), "w": ("float32", (2,))}
    assert list(read_tf_checkpoint(tmp_path)) == ["w"]


@pytest.mark.parametrize(("code", "name"), [(11, "qint8"), (24, "DataType 24")])
def test_unsupported_dtype(tmp_path, code, name):
    _write_bundle(tmp_path / "model", {"q": (code, (2,), b"\x01\x02", 0)})
    assert list_tf_checkpoint(tmp_path)["q"] == (name, (2,))
    with pytest.raises(WeightsError, match=f"tensor 'q' has dtype {name}, which this reader does not support"):
        read_tf_checkpoint(tmp_path)


def test_partitioned_variable(tmp_path):
    slices = _bytes_field(7, _bytes_field(1, _int_field(1, 0) + _int_field(2, 1)))  # TensorSliceProto extent
    _write_bundle(tmp_path / "model", {"part": (1, (2,), b"\0" * 8, 0)}, extra={"part": slices})
    with pytest.raises(WeightsError, match="'part' is partitioned"):
        list_tf_checkpoint(tmp_path)


def test_size_that_does_not_match_shape(tmp_path):
    _write_bundle(tmp_path / "model", {"w": (1, (3,), b"\0" * 8, 0)})
    with pytest.raises(WeightsError, match=r"tensor 'w' \(float32\[3\]\) has 8 bytes"):
        read_tf_checkpoint(tmp_path)


def test_snappy_block_and_newer_format(tmp_path):
    tensors = {"w": (1, (2,), b"\0" * 8, 0)}
    _write_bundle(tmp_path / "a" / "model", tensors, compression=1)
    with pytest.raises(WeightsError, match="snappy-compressed"):
        list_tf_checkpoint(tmp_path / "a")
    _write_bundle(tmp_path / "b" / "model", tensors, min_consumer=2)
    with pytest.raises(WeightsError, match="newer|version > 1"):
        list_tf_checkpoint(tmp_path / "b")
