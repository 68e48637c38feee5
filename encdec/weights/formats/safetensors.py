"""`model.safetensors`, read and written through the `safetensors` library (its numpy API).

The library checks what the format forbids (overlapping, shifted or gapped data
offsets, bytes outside the tensors, a `__metadata__` that is not a string map,
deep JSON, numbers that are not sizes); every file it refuses is a
`CheckpointError` naming the file. It keeps the last of two entries with the
same name, so duplicate names are checked here, on the header the library has
already accepted.

Reading is lazy: `safe_open` maps the file and `read(name)` copies one tensor.
Writing goes through `safetensors.numpy.save_file`, which needs every tensor
of the file in memory at once: a conversion into safetensors holds one file (one
shard, with `shard_size`) at a time.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Mapping

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ...errors import CheckpointError
from .common import (
    BY_SAFETENSORS,
    Reader,
    TensorInfo,
    c_contiguous,
    dtype_info,
    file_size,
    materialize,
    open_binary,
    read_exact,
    shape_dtype,
)

# The library's numpy API returns these dtypes; others (float8) are read from the checked offsets here.
_LIBRARY_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL"}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(Exception):
    pass


class SafetensorsFile(Reader):
    format = "safetensors"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        self._f = open_binary(path)
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    def _open(self) -> None:
        path, size = self.path, file_size(self._f)
        head = self._f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated: {size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(
                f"{path}: truncated or not safetensors: the header claims {n} bytes, the file has {size - 8} after it"
            )
        try:
            self._handle = safe_open(path, framework="np")
        except Exception as e:  # noqa: BLE001 - the library's SafetensorError, or an OSError
            raise CheckpointError(f"{path}: {self._diagnose(n, size) or f'not a valid safetensors file ({e})'}") from None
        header = self._header(n)
        self.metadata = dict(self._handle.metadata() or {})
        self._offsets: dict[str, tuple[int, int]] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            info = BY_SAFETENSORS.get(entry["dtype"])
            if info is None:
                raise CheckpointError(
                    f"{path}: tensor {name!r} has dtype {entry['dtype']}; expected one of {sorted(BY_SAFETENSORS)}"
                )
            self._infos[name] = TensorInfo(name, tuple(entry["shape"]), info.numpy, path)
            self._offsets[name] = (8 + n + entry["data_offsets"][0], entry["dtype"])

    def _header(self, n: int) -> dict[str, Any]:
        """The header's entries in file order; the library has checked its types and offsets."""
        self._f.seek(8)
        try:
            return json.loads(self._f.read(n), object_pairs_hook=_no_duplicates)
        except _Duplicate as e:
            raise CheckpointError(
                f"{self.path}: the safetensors header names tensor {e.args[0]!r} twice; expected unique names"
            ) from None

    def _diagnose(self, n: int, size: int) -> str | None:
        """Why the library refused the file, when the reason is a cut: the last tensor's end."""
        self._f.seek(8)
        try:
            header = json.loads(self._f.read(n))
            ends = {
                name: int(e["data_offsets"][1])
                for name, e in header.items()
                if name != "__metadata__" and isinstance(e, dict)
            }
        except Exception:  # noqa: BLE001 - the file is refused either way; this only words the error
            return None
        if not ends:
            return None
        last = max(ends, key=ends.get)
        if 8 + n + ends[last] > size:
            return f"truncated: tensor {last!r} ends at byte {8 + n + ends[last]}, the file has {size} bytes"
        return None

    def read(self, name: str) -> np.ndarray:
        info = self._infos[name]
        offset, code = self._offsets[name]
        if code not in _LIBRARY_DTYPES:
            return read_exact(self._f, offset, np.empty(info.shape, info.dtype), self.path, name)
        try:
            array = self._handle.get_tensor(name)
        except Exception as e:  # noqa: BLE001 - e.g. the file shrank after it was opened
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({e})") from None
        if array.dtype != info.dtype or array.shape != info.shape:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} read as {array.dtype}{list(array.shape)}, "
                f"its header says {info.dtype}{list(info.shape)}"
            )
        return array

    def close(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.__exit__(None, None, None)
            self._handle = None
        self._f.close()


def write_safetensors(path: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` with `safetensors.numpy.save_file` (sorted by dtype then name, as the library does)."""
    arrays = {}
    for name, value in tensors.items():
        shape, dtype = shape_dtype(value)
        dtype_info(dtype, path, name)
        array = c_contiguous(materialize(value))
        if array.dtype != dtype or tuple(array.shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} changed shape or dtype while being written")
        arrays[name] = array
    save_file(arrays, path, {str(k): str(v) for k, v in metadata.items()} if metadata else None)

