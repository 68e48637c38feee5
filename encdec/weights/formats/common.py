"""What every format module shares: dtypes, lazy tensors, the reader base, bounded reads.

Readers are lazy: opening a file reads only its directory (header, pickle,
HDF5 tree, msgpack structure); `read(name)` reads one tensor. Every size a
reader will allocate is bounded by the bytes the file really holds, so a small
hostile file cannot ask for gigabytes. Everything assumes a little-endian host,
as the formats themselves do.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable

import ml_dtypes
import numpy as np

from ...errors import CheckpointError

FORMATS = ("safetensors", "pt", "tf", "flax")
WEIGHTS_NAME = {
    "safetensors": "model.safetensors",
    "pt": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
BF16 = np.dtype(ml_dtypes.bfloat16)

# dtypes


@dataclasses.dataclass(frozen=True)
class DTypeInfo:
    numpy: np.dtype
    safetensors: str
    torch_storage: str | None


DTYPES = [
    DTypeInfo(np.dtype("<f4"), "F32", "FloatStorage"),
    DTypeInfo(np.dtype("<f2"), "F16", "HalfStorage"),
    DTypeInfo(BF16, "BF16", "BFloat16Storage"),
    DTypeInfo(np.dtype("<f8"), "F64", "DoubleStorage"),
    DTypeInfo(np.dtype("<i8"), "I64", "LongStorage"),
    DTypeInfo(np.dtype("<i4"), "I32", "IntStorage"),
    DTypeInfo(np.dtype("<i2"), "I16", "ShortStorage"),
    DTypeInfo(np.dtype("i1"), "I8", "CharStorage"),
    DTypeInfo(np.dtype("u1"), "U8", "ByteStorage"),
    DTypeInfo(np.dtype("?"), "BOOL", "BoolStorage"),
    DTypeInfo(np.dtype("<u2"), "U16", None),
    DTypeInfo(np.dtype("<u4"), "U32", None),
    DTypeInfo(np.dtype("<u8"), "U64", None),
    DTypeInfo(np.dtype(ml_dtypes.float8_e4m3fn), "F8_E4M3", None),
    DTypeInfo(np.dtype(ml_dtypes.float8_e5m2), "F8_E5M2", None),
]
BY_NUMPY = {d.numpy: d for d in DTYPES}
BY_SAFETENSORS = {d.safetensors: d for d in DTYPES}
BY_STORAGE = {d.torch_storage: d for d in DTYPES if d.torch_storage}

def dtype_info(dtype: np.dtype, path: str, name: str) -> DTypeInfo:
    info = BY_NUMPY.get(np.dtype(dtype))
    if info is None:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {np.dtype(dtype)}, which checkpoints cannot hold; "
            f"expected one of {sorted(str(d.numpy) for d in DTYPES)}"
        )
    return info


def as_dtype(dtype: str | np.dtype | type) -> np.dtype:
    """A numpy dtype from a name ("float32", "float16", "bfloat16", ...) or a dtype."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        return BF16
    return np.dtype(dtype)


def is_floating(dtype: np.dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype in (BF16, np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2))


# ---------------------------------------------------------------------------
# Lazy tensors


class LazyTensor:
    """A tensor known by shape and dtype, whose values are loaded on demand."""

    __slots__ = ("shape", "dtype", "_load")

    def __init__(self, shape: Iterable[int], dtype: np.dtype, load: Callable[[], np.ndarray]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._load = load

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def load(self) -> np.ndarray:
        array = np.asarray(self._load())
        if array.shape != self.shape or array.dtype != self.dtype:
            raise CheckpointError(
                f"a tensor loaded as {array.dtype}{list(array.shape)}, expected {self.dtype}{list(self.shape)}"
            )
        return array

    def __repr__(self) -> str:
        return f"LazyTensor({self.dtype}, {list(self.shape)})"


def c_contiguous(array: np.ndarray) -> np.ndarray:
    """The array in C order, copied only if needed (unlike np.ascontiguousarray, keeps 0-d arrays 0-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def materialize(value: Any) -> np.ndarray:
    return value.load() if isinstance(value, LazyTensor) else np.asarray(value)


def shape_dtype(value: Any) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(value, LazyTensor):
        return value.shape, value.dtype
    value = np.asarray(value)
    return tuple(value.shape), value.dtype


def nbytes_of(value: Any) -> int:
    shape, dtype = shape_dtype(value)
    return math.prod(shape) * dtype.itemsize


def raw_bytes(array: np.ndarray) -> memoryview:
    """The C-order bytes of an array, without a copy when it is already contiguous."""
    return memoryview(c_contiguous(array).reshape(-1).view(np.uint8))


# ---------------------------------------------------------------------------
# Reader base


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    file: str


class Reader:
    """A checkpoint opened for reading: names, shapes and dtypes now, values on `read`."""

    format: str = ""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.metadata: dict[str, str] = {}
        self._infos: dict[str, TensorInfo] = {}

    def names(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def lazy(self, name: str) -> LazyTensor:
        info = self._infos[name]
        return LazyTensor(info.shape, info.dtype, lambda: self.read(name))

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self._infos}

    def close(self) -> None:
        pass

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_exact(f, offset: int, out: np.ndarray, path: str, name: str) -> np.ndarray:
    """Fill `out` with the bytes at `offset`; a short read is a truncated file."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    f.seek(offset)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise CheckpointError(
                f"{path}: truncated: tensor {name!r} needs {len(view)} bytes at offset {offset}, "
                f"only {got} could be read"
            )
        got += n
    return out



def open_binary(path: str):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open ({e.strerror or e})") from None


def file_size(f) -> int:
    return os.fstat(f.fileno()).st_size
