"""`flax_model.msgpack` (`flax.serialization.to_bytes`), scanned with bounds and written as flax does.

The reader walks the msgpack stream and records where each array's bytes are,
instead of reading them; every length in the stream is checked against the
bytes left in the file before anything is read, so a small file cannot make it
allocate much.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, Mapping

import msgpack
import numpy as np

from ...errors import CheckpointError
from .common import BF16, BY_NUMPY, Reader, TensorInfo, c_contiguous, dtype_info, file_size, materialize, open_binary, raw_bytes, read_exact

# flax splits arrays above this many bytes into chunks (msgpack's 2**31 - 1 limit).
MSGPACK_MAX_CHUNK_SIZE = 2**30


class _MsgpackTruncated(Exception):
    pass


@dataclasses.dataclass
class _ArrayRef:
    segments: list[tuple[int, int]]  # (byte offset, byte length) of each chunk's data
    shape: tuple[int, ...]
    dtype: np.dtype


def _msgpack_dtype(name: str, path: str, where: str) -> np.dtype:
    if name == "bfloat16":
        return BF16
    try:
        dtype = np.dtype(name)
    except Exception:  # noqa: BLE001 - numpy raises TypeError or others on names it cannot parse
        raise CheckpointError(f"{path}: array at {where!r} has unknown dtype {name!r}") from None
    dtype = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    if dtype not in BY_NUMPY:
        raise CheckpointError(f"{path}: array at {where!r} has dtype {name!r}; expected a numeric dtype")
    return dtype


class _MsgpackScanner:
    """Walks a msgpack stream, recording where each array's bytes are instead of reading them."""

    def __init__(self, f, size: int, path: str) -> None:
        self.f, self.size, self.path = f, size, path
        self.where = ""  # the param path being read, for errors

    def read(self, n: int) -> bytes:
        if self.f.tell() + n > self.size:  # checked first: reading would allocate all n bytes
            raise _MsgpackTruncated()
        b = self.f.read(n)
        if len(b) < n:
            raise _MsgpackTruncated()
        return b

    def uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "big")

    def value(self, where: str) -> Any:
        t = self.read(1)[0]
        if t <= 0x7F:
            return t
        if t >= 0xE0:
            return t - 0x100
        if 0x80 <= t <= 0x8F:
            return self.map(t & 0x0F, where)
        if 0x90 <= t <= 0x9F:
            return [self.value(where) for _ in range(t & 0x0F)]
        if 0xA0 <= t <= 0xBF:
            return self.read(t & 0x1F).decode("utf-8")
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if t in simple:
            return simple[t]
        if t in (0xC4, 0xC5, 0xC6):
            return self.read(self.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[t]))
        if t in (0xC7, 0xC8, 0xC9):
            n = self.uint({0xC7: 1, 0xC8: 2, 0xC9: 4}[t])
            return self.ext(self.read(1)[0], n, where)
        if 0xD4 <= t <= 0xD8:
            return self.ext(self.read(1)[0], 1 << (t - 0xD4), where)
        if t == 0xCA:
            return struct.unpack(">f", self.read(4))[0]
        if t == 0xCB:
            return struct.unpack(">d", self.read(8))[0]
        if 0xCC <= t <= 0xCF:
            return self.uint(1 << (t - 0xCC))
        if 0xD0 <= t <= 0xD3:
            n = 1 << (t - 0xD0)
            return int.from_bytes(self.read(n), "big", signed=True)
        if t in (0xD9, 0xDA, 0xDB):
            return self.read(self.uint({0xD9: 1, 0xDA: 2, 0xDB: 4}[t])).decode("utf-8")
        if t in (0xDC, 0xDD):
            return [self.value(where) for _ in range(self.uint(2 if t == 0xDC else 4))]
        if t in (0xDE, 0xDF):
            return self.map(self.uint(2 if t == 0xDE else 4), where)
        raise CheckpointError(f"{self.path}: corrupt msgpack: byte 0x{t:02x} at {where!r}")

    def map(self, n: int, where: str) -> dict:
        out = {}
        for _ in range(n):
            key = self.value(where)
            if not isinstance(key, str):
                raise CheckpointError(f"{self.path}: non-string key {key!r} under {where!r}")
            self.where = f"{where}/{key}" if where else key
            out[key] = self.value(self.where)
        return out

    def ext(self, code: int, n: int, where: str) -> Any:
        start = self.f.tell()
        if code not in (1, 3):  # 1: ndarray, 3: numpy scalar (both `(shape, dtype, bytes)`)
            raise CheckpointError(f"{self.path}: msgpack extension type {code} at {where!r}; expected arrays")
        if start + n > self.size:
            raise _MsgpackTruncated()
        head = self.read(1)[0]
        if head != 0x93:
            raise CheckpointError(f"{self.path}: corrupt array at {where!r}: expected (shape, dtype, bytes)")
        shape = self.value(where)
        dtype_name = self.value(where)
        if isinstance(dtype_name, bytes):
            dtype_name = dtype_name.decode()
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise CheckpointError(f"{self.path}: corrupt array shape {shape!r} at {where!r}")
        dtype = _msgpack_dtype(str(dtype_name), self.path, where)
        t = self.read(1)[0]
        if t not in (0xC4, 0xC5, 0xC6):
            raise CheckpointError(f"{self.path}: corrupt array data at {where!r}")
        nbytes = self.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[t])
        offset = self.f.tell()
        if nbytes != math.prod(shape) * dtype.itemsize or offset + nbytes != start + n:
            raise CheckpointError(
                f"{self.path}: corrupt array at {where!r}: {nbytes} bytes for {dtype}{shape}"
            )
        if offset + nbytes > self.size:
            raise _MsgpackTruncated()
        self.f.seek(offset + nbytes)
        return _ArrayRef([(offset, nbytes)], tuple(shape), dtype)


def _flatten_msgpack(tree: Any, prefix: str, out: dict[str, _ArrayRef], path: str) -> None:
    if isinstance(tree, _ArrayRef):
        out[prefix] = tree
        return
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: value {tree!r} at {prefix!r}; expected nested dicts of arrays")
    if tree.get("__msgpack_chunked_array__") is True:
        # flax's form for arrays over 1 GiB: flat chunks plus the shape, as dicts keyed "0", "1", ...
        try:
            shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt chunked array at {prefix!r}") from None
        if not all(type(s) is int and s >= 0 for s in shape):
            raise CheckpointError(f"{path}: chunked array at {prefix!r} has shape {list(shape)}; expected sizes")
        if not chunks or not all(isinstance(c, _ArrayRef) and c.dtype == chunks[0].dtype for c in chunks):
            raise CheckpointError(f"{path}: corrupt chunked array at {prefix!r}")
        if sum(c.segments[0][1] for c in chunks) != math.prod(shape) * chunks[0].dtype.itemsize:
            raise CheckpointError(f"{path}: chunked array at {prefix!r} does not fill its shape {list(shape)}")
        out[prefix] = _ArrayRef([c.segments[0] for c in chunks], shape, chunks[0].dtype)
        return
    for key, value in tree.items():
        _flatten_msgpack(value, f"{prefix}/{key}" if prefix else key, out, path)


class MsgpackFile(Reader):
    format = "flax"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        self._f = open_binary(path)
        size = file_size(self._f)
        scanner = _MsgpackScanner(self._f, size, path)
        self._refs: dict[str, _ArrayRef] = {}
        try:
            tree = scanner.value("")
            if self._f.tell() != size:
                raise CheckpointError(f"{path}: {size - self._f.tell()} bytes of trailing data after the params")
            _flatten_msgpack(tree, "", self._refs, path)
        except _MsgpackTruncated:
            self._f.close()
            cut = f"tensor {scanner.where!r} is cut off" if scanner.where else "cut before the first tensor"
            raise CheckpointError(
                f"{path}: truncated ({size} bytes): {cut}; expected a complete flax.serialization.to_bytes file"
            ) from None
        except (CheckpointError, RecursionError, UnicodeDecodeError) as e:
            self._f.close()
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path}: corrupt msgpack ({e})") from None
        for name, ref in self._refs.items():
            self._infos[name] = TensorInfo(name, ref.shape, ref.dtype, path)

    def read(self, name: str) -> np.ndarray:
        ref = self._refs[name]
        out = np.empty(ref.shape, ref.dtype)
        flat = out.reshape(-1).view(np.uint8)
        pos = 0
        for offset, nbytes in ref.segments:
            read_exact(self._f, offset, flat[pos : pos + nbytes], self.path, name)
            pos += nbytes
        return out

    def close(self) -> None:
        self._f.close()


def _msgpack_map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 2**16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def _msgpack_bin_header(n: int) -> bytes:
    if n < 2**8:
        return b"\xc4" + bytes([n])
    if n < 2**16:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


def _msgpack_ext_header(code: int, n: int) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if n in fixed:
        return bytes([fixed[n], code])
    if n < 2**8:
        return b"\xc7" + bytes([n, code])
    if n < 2**16:
        return b"\xc8" + struct.pack(">H", n) + bytes([code])
    return b"\xc9" + struct.pack(">I", n) + bytes([code])


def _msgpack_array_head(shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> bytes:
    """Everything of flax's `ExtType(1, packb((shape, dtype.name, bytes)))` that precedes the bytes."""
    name = "bfloat16" if dtype == BF16 else dtype.name
    payload = b"\x93" + msgpack.packb(list(shape)) + msgpack.packb(name) + _msgpack_bin_header(nbytes)
    return _msgpack_ext_header(1, len(payload) + nbytes) + payload


def write_msgpack(path: str, tensors: Mapping[str, Any]) -> None:
    """Write `flax.serialization.to_bytes` of the nested params dict (keys sorted, as flax's trees are)."""
    tree: dict[str, Any] = {}
    for name in tensors:
        node = tree
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"{path}: {name!r} nests under a tensor")
        if parts[-1] in node:
            raise CheckpointError(f"{path}: {name!r} is both a tensor and a scope")
        node[parts[-1]] = name

    with open(path, "wb") as f:

        def emit(node: dict[str, Any]) -> None:
            f.write(_msgpack_map_header(len(node)))
            for key in sorted(node):
                f.write(msgpack.packb(key))
                value = node[key]
                if isinstance(value, dict):
                    emit(value)
                else:
                    emit_array(value)

        def emit_array(name: str) -> None:
            array = c_contiguous(materialize(tensors[name]))
            dtype_info(array.dtype, path, name)
            if array.nbytes > MSGPACK_MAX_CHUNK_SIZE:
                # As flax's _chunk: {"__msgpack_chunked_array__": True, "shape": {...}, "chunks": {...}}
                step = max(1, MSGPACK_MAX_CHUNK_SIZE // array.dtype.itemsize)
                flat = array.reshape(-1)
                chunks = [flat[i : i + step] for i in range(0, flat.size, step)]
                f.write(_msgpack_map_header(3) + msgpack.packb("__msgpack_chunked_array__") + b"\xc3")
                f.write(msgpack.packb("shape") + _msgpack_map_header(len(array.shape)))
                for i, s in enumerate(array.shape):
                    f.write(msgpack.packb(str(i)) + msgpack.packb(s))
                f.write(msgpack.packb("chunks") + _msgpack_map_header(len(chunks)))
                for i, chunk in enumerate(chunks):
                    f.write(msgpack.packb(str(i)) + _msgpack_array_head(chunk.shape, chunk.dtype, chunk.nbytes))
                    f.write(raw_bytes(chunk))
                return
            f.write(_msgpack_array_head(array.shape, array.dtype, array.nbytes))
            f.write(raw_bytes(array))

        emit(tree)


