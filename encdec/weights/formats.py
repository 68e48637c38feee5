"""The four checkpoint formats transformers writes, read and written with numpy only.

Each format has one reader and one writer, both working on a flat mapping of the
format's *native* names and layouts:

| format | file | native names |
|---|---|---|
| "safetensors" | `model.safetensors` | PyTorch `state_dict` names |
| "pt" | `pytorch_model.bin` (torch.save zip) | PyTorch `state_dict` names, tied copies included |
| "tf" | `tf_model.h5` (Keras 2 `save_weights`) | TF weight names without the root scope and `:0` |
| "flax" | `flax_model.msgpack` (`flax.serialization.to_bytes`) | "/"-joined param paths |

Every format may also be sharded: `<stem>-0000k-of-0000n.<ext>` files plus
`<file>.index.json` = `{"metadata": {"total_size": N}, "weight_map": {name: shard}}`.

Readers are lazy: opening a file reads only its directory (header, pickle,
HDF5 tree, msgpack structure); `read(name)` reads one tensor. Writers take
values that are numpy arrays or `LazyTensor`s and load each one only when its
bytes are written, so a conversion holds about one tensor in memory at a time.
A `pytorch_model.bin` is read without running its pickle: only the classes
torch.save uses for tensors are resolved, to numpy stand-ins.

Everything assumes a little-endian host, as the formats themselves do.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import math
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Callable, Iterable, Mapping

import h5py
import ml_dtypes
import msgpack
import numpy as np

from ..errors import CheckpointError, UnsafePickleError
from .names import TF_ROOT_SCOPE

FORMATS = ("safetensors", "pt", "tf", "flax")
WEIGHTS_NAME = {
    "safetensors": "model.safetensors",
    "pt": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
BF16 = np.dtype(ml_dtypes.bfloat16)

# The tf-keras version whose `save_weights` layout `write_h5` produces; Keras
# reads it only to decide on conversions of Keras 1 files.
KERAS_VERSION = "2.21.0"
# Keras splits a string-list attribute above this many bytes into name0, name1, ...
HDF5_OBJECT_HEADER_LIMIT = 64512
# flax splits arrays above this many bytes into chunks (msgpack's 2**31 - 1 limit).
MSGPACK_MAX_CHUNK_SIZE = 2**30
# torch.save aligns every storage to this many bytes inside the zip (for mmap).
TORCH_STORAGE_ALIGNMENT = 64


def index_name(fmt: str) -> str:
    return WEIGHTS_NAME[fmt] + ".index.json"


def shard_name(fmt: str, k: int, n: int) -> str:
    stem, ext = os.path.splitext(WEIGHTS_NAME[fmt])
    if fmt == "safetensors":
        stem = "model"
    return f"{stem}-{k:05d}-of-{n:05d}{ext}"


def _shard_pattern(fmt: str) -> re.Pattern:
    stem, ext = os.path.splitext(WEIGHTS_NAME[fmt])
    return re.compile(rf"^{re.escape(stem)}-\d{{5}}-of-\d{{5}}{re.escape(ext)}$")


def is_weight_file(filename: str, fmt: str | None = None) -> bool:
    """Whether a file name is a weights file (single, shard or index) of `fmt` (or of any format)."""
    fmts = FORMATS if fmt is None else (fmt,)
    return any(
        filename in (WEIGHTS_NAME[f], index_name(f)) or _shard_pattern(f).match(filename) is not None for f in fmts
    )


def formats_present(directory: str | os.PathLike) -> list[str]:
    """The formats a folder holds weights in, in loading preference order."""
    return [
        fmt
        for fmt in FORMATS
        if os.path.isfile(os.path.join(directory, WEIGHTS_NAME[fmt]))
        or os.path.isfile(os.path.join(directory, index_name(fmt)))
    ]


# ---------------------------------------------------------------------------
# dtypes


@dataclasses.dataclass(frozen=True)
class _DType:
    numpy: np.dtype
    safetensors: str
    torch_storage: str | None


_DTYPES = [
    _DType(np.dtype("<f4"), "F32", "FloatStorage"),
    _DType(np.dtype("<f2"), "F16", "HalfStorage"),
    _DType(BF16, "BF16", "BFloat16Storage"),
    _DType(np.dtype("<f8"), "F64", "DoubleStorage"),
    _DType(np.dtype("<i8"), "I64", "LongStorage"),
    _DType(np.dtype("<i4"), "I32", "IntStorage"),
    _DType(np.dtype("<i2"), "I16", "ShortStorage"),
    _DType(np.dtype("i1"), "I8", "CharStorage"),
    _DType(np.dtype("u1"), "U8", "ByteStorage"),
    _DType(np.dtype("?"), "BOOL", "BoolStorage"),
    _DType(np.dtype("<u2"), "U16", None),
    _DType(np.dtype("<u4"), "U32", None),
    _DType(np.dtype("<u8"), "U64", None),
    _DType(np.dtype(ml_dtypes.float8_e4m3fn), "F8_E4M3", None),
    _DType(np.dtype(ml_dtypes.float8_e5m2), "F8_E5M2", None),
]
_BY_NUMPY = {d.numpy: d for d in _DTYPES}
_BY_SAFETENSORS = {d.safetensors: d for d in _DTYPES}
_BY_STORAGE = {d.torch_storage: d for d in _DTYPES if d.torch_storage}
# safetensors writes tensors sorted by dtype (its enum order, largest first), then name.
_SAFETENSORS_RANK = {
    code: i
    for i, code in enumerate(
        ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
    )
}


def _dtype_info(dtype: np.dtype, path: str, name: str) -> _DType:
    info = _BY_NUMPY.get(np.dtype(dtype))
    if info is None:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {np.dtype(dtype)}, which checkpoints cannot hold; "
            f"expected one of {sorted(str(d.numpy) for d in _DTYPES)}"
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


def _shape_dtype(value: Any) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(value, LazyTensor):
        return value.shape, value.dtype
    value = np.asarray(value)
    return tuple(value.shape), value.dtype


def _nbytes(value: Any) -> int:
    shape, dtype = _shape_dtype(value)
    return math.prod(shape) * dtype.itemsize


def _raw_bytes(array: np.ndarray) -> memoryview:
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


def _read_exact(f, offset: int, out: np.ndarray, path: str, name: str) -> np.ndarray:
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


# ---------------------------------------------------------------------------
# safetensors


class SafetensorsFile(Reader):
    format = "safetensors"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        self._offsets: dict[str, int] = {}
        self._f = _open(path)
        try:
            self._parse()
        except BaseException:
            self._f.close()
            raise

    def _parse(self) -> None:
        path, size = self.path, os.fstat(self._f.fileno()).st_size
        head = self._f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated: {size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(
                f"{path}: truncated or not safetensors: the header claims {n} bytes, the file has {size - 8} after it"
            )
        try:
            header = json.loads(self._f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header (not JSON: {e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: corrupt safetensors header: expected a JSON object")
        meta = header.pop("__metadata__", None) or {}
        self.metadata = {str(k): str(v) for k, v in meta.items()}
        start = 8 + n
        for name, entry in header.items():
            try:
                info = _BY_SAFETENSORS[entry["dtype"]]
                shape = tuple(int(s) for s in entry["shape"])
                begin, end = (int(x) for x in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(
                    f"{path}: corrupt safetensors entry for tensor {name!r}: {entry!r}; expected "
                    "{dtype, shape, data_offsets} with a known dtype"
                ) from None
            expected = math.prod(shape) * info.numpy.itemsize
            if end - begin != expected or begin < 0:
                raise CheckpointError(
                    f"{path}: corrupt entry for tensor {name!r}: offsets [{begin}, {end}) hold {end - begin} bytes, "
                    f"its {entry['dtype']}{list(shape)} needs {expected}"
                )
            if start + end > size:
                raise CheckpointError(
                    f"{path}: truncated: tensor {name!r} ends at byte {start + end}, the file has {size} bytes"
                )
            self._infos[name] = TensorInfo(name, shape, info.numpy, path)
            self._offsets[name] = start + begin

    def read(self, name: str) -> np.ndarray:
        info = self._infos[name]
        return _read_exact(self._f, self._offsets[name], np.empty(info.shape, info.dtype), self.path, name)

    def close(self) -> None:
        self._f.close()


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open ({e.strerror or e})") from None


def write_safetensors(path: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` as safetensors does: sorted by dtype then name, header padded to 8 bytes."""
    entries = []
    for name, value in tensors.items():
        shape, dtype = _shape_dtype(value)
        entries.append((name, value, shape, _dtype_info(dtype, path, name)))
    entries.sort(key=lambda e: (-_SAFETENSORS_RANK[e[3].safetensors], e[0]))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, _, shape, info in entries:
        nbytes = math.prod(shape) * info.numpy.itemsize
        header[name] = {"dtype": info.safetensors, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, value, shape, info in entries:
            array = materialize(value)
            if array.dtype != info.numpy or tuple(array.shape) != shape:
                raise CheckpointError(f"{path}: tensor {name!r} changed shape or dtype while being written")
            f.write(_raw_bytes(array))


# ---------------------------------------------------------------------------
# pytorch_model.bin (torch.save): read without running pickle code


class _NoState:
    """Refuses pickle's BUILD, so a file cannot set attributes on the objects it is given."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"the pickle tries to set the state of a {type(self).__name__}")


class _StorageType(_NoState):
    """Stands in for `torch.FloatStorage` and friends: just the dtype they hold."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype) -> None:
        self.name, self.dtype = name, dtype


class _Rebuild(_NoState):
    """Stands in for one of torch's `_rebuild_*` functions."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)


class _StorageRef(_NoState):
    __slots__ = ("key", "dtype", "numel", "offset")

    def __init__(self, key: str, dtype: np.dtype, numel: int, offset: int = 0) -> None:
        self.key, self.dtype, self.numel, self.offset = key, dtype, numel, offset


class _TensorRef(_NoState):
    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: _StorageRef, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) for v in value):
        raise pickle.UnpicklingError(f"{what} is {value!r}, expected a tuple of ints")
    return tuple(value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, _StorageRef) or not isinstance(storage_offset, int):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage and an int offset")
    return _TensorRef(storage, storage_offset, _int_tuple(size, "a tensor size"), _int_tuple(stride, "a tensor stride"))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("_rebuild_parameter called without a tensor")
    return data


# Everything torch.save needs to rebuild a state dict of dense CPU tensors; nothing else resolves.
# Each lookup makes a fresh stand-in, so nothing one file does can reach the next.
_SAFE_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _Rebuild(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): lambda: _Rebuild(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): lambda: _Rebuild(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _Rebuild(_rebuild_parameter),
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
}
_SAFE_GLOBALS.update(
    {("torch", name): (lambda name=name, dtype=info.numpy: _StorageType(name, dtype)) for name, info in _BY_STORAGE.items()}
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: str, legacy: bool = False, file=None) -> None:
        super().__init__(file if file is not None else io.BytesIO(data))
        self.path = path
        self.legacy = legacy
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]()
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: its pickle asks for {module}.{name}, which is not part of a tensor state dict "
                "(expected only torch._utils._rebuild_tensor_v2, torch.*Storage and collections.OrderedDict); "
                "refused without running it"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"{self.path}: unexpected persistent id {pid!r}; expected a torch storage")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid!r}")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if self.legacy and view is not None:
            # Legacy files may point at a view: (view key, offset, size) into the root storage.
            _view_key, view_offset, view_size = view
            return _StorageRef(key, storage_type.dtype, int(view_size), int(view_offset))
        return ref


def _unpickle(data: bytes, path: str) -> tuple[Any, dict[str, _StorageRef]]:
    unpickler = _RestrictedUnpickler(data, path)
    try:
        obj = unpickler.load()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of untrusted bytes is a corrupt file
        raise CheckpointError(f"{path}: corrupt pickle in the checkpoint ({type(e).__name__}: {e})") from None
    return obj, unpickler.storages


def _state_dict_entries(obj: Any, path: str) -> dict[str, _TensorRef]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a pickled {type(obj).__name__}; expected a state dict of tensors")
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise CheckpointError(
                f"{path}: entry {name!r} is a {type(value).__name__}, expected a tensor; a state dict holds only tensors"
            )
        out[name] = value
    return out


def _check_extent(ref: _TensorRef, path: str, name: str) -> None:
    if any(s < 0 for s in ref.shape) or len(ref.shape) != len(ref.stride):
        raise CheckpointError(f"{path}: tensor {name!r} has size {ref.shape} and stride {ref.stride}")
    if math.prod(ref.shape) == 0:
        return
    last = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride))
    if ref.offset < 0 or any(st < 0 for st in ref.stride) or last >= ref.storage.numel:
        raise CheckpointError(
            f"{path}: tensor {name!r} (size {list(ref.shape)}, stride {list(ref.stride)}, offset {ref.offset}) "
            f"reaches past its storage of {ref.storage.numel} elements"
        )


def _strided_read(f, base: int, ref: _TensorRef, path: str, name: str) -> np.ndarray:
    """Read the elements a (possibly strided) view spans and return them C-contiguous."""
    dtype = ref.storage.dtype
    shape = ref.shape
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    span = 1 + sum((s - 1) * st for s, st in zip(shape, ref.stride))
    flat = _read_exact(f, base + ref.offset * dtype.itemsize, np.empty(span, dtype), path, name)
    contiguous = tuple(int(math.prod(shape[i + 1 :])) for i in range(len(shape)))
    if ref.stride == contiguous or len(shape) == 0:
        return flat.reshape(shape)
    view = np.lib.stride_tricks.as_strided(flat, shape, tuple(st * dtype.itemsize for st in ref.stride))
    return np.ascontiguousarray(view)


_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes


class TorchFile(Reader):
    """A `pytorch_model.bin`: the zip format of torch >= 1.6, or the older pickle stream."""

    format = "pt"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        self._f = _open(path)
        self._refs: dict[str, _TensorRef] = {}
        self._bases: dict[str, int] = {}  # tensor name -> byte offset of its storage's data in the file
        try:
            magic = self._f.read(4)
            if not magic:
                raise CheckpointError(f"{path}: empty file; expected a torch.save file")
            if magic[:2] == b"PK":
                self._parse_zip()
            elif magic[:1] == b"\x80":
                self._parse_legacy()
            else:
                raise CheckpointError(
                    f"{path}: not a torch.save file (starts with {magic!r}); expected a zip archive or a pickle"
                )
        except BaseException:
            self._f.close()
            raise
        for name, ref in self._refs.items():
            _check_extent(ref, path, name)
            self._infos[name] = TensorInfo(name, ref.shape, ref.storage.dtype, path)

    # -- zip format (torch >= 1.6)

    def _parse_zip(self) -> None:
        path = self.path
        try:
            zf = zipfile.ZipFile(self._f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            self._diagnose_broken_zip(e)
        pkl_names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl_names) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {pkl_names}")
        prefix = pkl_names[0][: -len("data.pkl")]
        try:
            data = zf.read(pkl_names[0])
            byteorder = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in zf.NameToInfo else "little"
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt archive member ({e})") from None
        if byteorder != "little":
            raise CheckpointError(f"{path}: byteorder {byteorder!r}; expected 'little'")
        obj, storages = _unpickle(data, path)
        self._refs = _state_dict_entries(obj, path)
        size = os.fstat(self._f.fileno()).st_size
        key_users = collections.defaultdict(list)
        for name, ref in self._refs.items():
            key_users[ref.storage.key].append(name)
        for key, storage in storages.items():
            member = zf.NameToInfo.get(f"{prefix}data/{key}")
            users = ", ".join(repr(n) for n in key_users.get(key, [])) or "no tensor"
            if member is None:
                raise CheckpointError(f"{path}: storage data/{key} (of {users}) is missing from the archive")
            if member.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"{path}: storage data/{key} is compressed; torch.save stores storages uncompressed"
                )
            need = storage.numel * storage.dtype.itemsize
            if member.file_size < need:
                raise CheckpointError(
                    f"{path}: storage data/{key} (of {users}) holds {member.file_size} bytes, needs {need}"
                )
            self._f.seek(member.header_offset)
            header = self._f.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise CheckpointError(f"{path}: corrupt zip entry for storage data/{key} (of {users})")
            fields = _LOCAL_HEADER.unpack(header)
            base = member.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
            if base + need > size:
                raise CheckpointError(f"{path}: truncated: storage data/{key} (of {users}) ends past the end of file")
            for name in key_users.get(key, []):
                self._bases[name] = base

    def _diagnose_broken_zip(self, error: Exception) -> None:
        """The zip directory is unreadable (it sits at the end, so a cut file loses it): name what is cut.

        Walks the local headers from the start. torch writes sizes only in data
        descriptors after each member, so a storage's length comes from the
        pickle and a small member's from its descriptor.
        """
        path, f = self.path, self._f
        size = os.fstat(f.fileno()).st_size
        members: dict[str, tuple[int, int]] = {}  # name -> (data offset, length)
        refs: dict[str, _TensorRef] = {}
        storages: dict[str, _StorageRef] = {}
        pos = 0
        while pos + _LOCAL_HEADER.size <= size:
            f.seek(pos)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                break
            flags, length = fields[2], fields[7]
            name = f.read(fields[-2]).decode("utf-8", "replace")
            extra = f.read(fields[-1])
            i = 0
            while i + 4 <= len(extra):  # a zip64 record holds the real sizes
                tag, n = struct.unpack_from("<HH", extra, i)
                if tag == 1 and n >= 16:
                    length = struct.unpack_from("<Q", extra, i + 12)[0]
                i += 4 + n
            data = pos + _LOCAL_HEADER.size + fields[-2] + fields[-1]
            if flags & 0x08:
                key = name.rsplit("/data/", 1)[1] if "/data/" in name else None
                if key is not None and key in storages:
                    length = storages[key].numel * storages[key].dtype.itemsize
                else:
                    length = self._descriptor_length(data, size)
            if length is None:
                break
            members[name] = (data, length)
            if name.endswith("data.pkl") and data + length <= size:
                f.seek(data)
                try:
                    obj, storages = _unpickle(f.read(length), path)
                    refs = _state_dict_entries(obj, path)
                except UnsafePickleError:
                    raise
                except CheckpointError:
                    pass
            pos = data + length
            if flags & 0x08:
                f.seek(pos + 16)
                pos += 16 if f.read(2) == b"PK" or pos + 16 >= size else 24
        detail = ""
        pkl = next((n for n in members if n.endswith("data.pkl")), None)
        if refs and pkl is not None:
            prefix = pkl[: -len("data.pkl")]
            cut = []
            for name, ref in refs.items():
                data_off, n = members.get(f"{prefix}data/{ref.storage.key}", (None, 0))
                if data_off is None or data_off + n > size:
                    cut.append(name)
            if cut:
                detail = f"; tensors cut off: {', '.join(repr(n) for n in cut[:5])}" + (
                    f" and {len(cut) - 5} more" if len(cut) > 5 else ""
                )
            else:
                detail = "; every tensor's data is there, the zip directory at the end is cut off"
        raise CheckpointError(
            f"{path}: truncated or corrupt zip archive ({size} bytes; {error}){detail}; "
            "expected a complete torch.save file"
        )

    def _descriptor_length(self, data: int, size: int) -> int | None:
        """The length of a member whose size is only in the data descriptor that follows it."""
        f, window = self._f, 1 << 16
        while True:
            f.seek(data)
            chunk = f.read(window + 16)
            at = chunk.find(b"PK\x07\x08")
            while at != -1 and at + 12 <= len(chunk):
                if struct.unpack_from("<I", chunk, at + 8)[0] == at:
                    return at
                at = chunk.find(b"PK\x07\x08", at + 1)
            if data + window >= size:
                return None
            window *= 4

    # -- legacy format (torch < 1.6): magic, protocol, sys info, pickle, storage keys, raw storages

    _LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

    def _parse_legacy(self) -> None:
        path, f = self.path, self._f
        f.seek(0)

        def load(what: str) -> Any:
            unpickler = _RestrictedUnpickler(b"", path, legacy=True, file=f)
            try:
                return unpickler.load(), unpickler.storages
            except CheckpointError:
                raise
            except Exception as e:  # noqa: BLE001 - untrusted bytes
                raise CheckpointError(f"{path}: corrupt legacy torch file while reading {what} ({e})") from None

        magic, _ = load("the magic number")
        if magic != self._LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a torch.save file (bad magic number)")
        load("the protocol version")
        load("the system info")
        obj, storages = load("the state dict")
        keys, _ = load("the storage keys")
        self._refs = _state_dict_entries(obj, path)
        size = os.fstat(f.fileno()).st_size
        pos = f.tell()
        roots = {}
        for key in keys:
            if key not in storages:
                raise CheckpointError(f"{path}: storage {key!r} is listed but no tensor uses it")
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated: storage {key!r} is missing")
            (numel,) = struct.unpack("<q", head)
            if numel < storages[key].numel:
                raise CheckpointError(f"{path}: storage {key!r} holds {numel} elements, its tensors need {storages[key].numel}")
            roots[key] = pos + 8
            pos += 8 + numel * storages[key].dtype.itemsize
            if pos > size:
                users = [n for n, r in self._refs.items() if r.storage.key == key]
                raise CheckpointError(f"{path}: truncated: storage {key!r} (of {users}) ends past the end of file")
        for name, ref in self._refs.items():
            if ref.storage.key not in roots:
                raise CheckpointError(f"{path}: tensor {name!r} uses storage {ref.storage.key!r}, which is missing")
        for name, ref in self._refs.items():
            # A legacy view into a root storage carries its element offset.
            self._bases[name] = roots[ref.storage.key] + ref.storage.offset * ref.storage.dtype.itemsize

    def storage_key(self, name: str) -> str:
        return self._refs[name].storage.key

    def same_view(self, a: str, b: str) -> bool:
        """Whether two entries are the same view of the same storage (tied parameters)."""
        ra, rb = self._refs[a], self._refs[b]
        return (ra.storage.key, self._bases[a], ra.offset, ra.shape, ra.stride) == (
            rb.storage.key, self._bases[b], rb.offset, rb.shape, rb.stride
        )

    def read(self, name: str) -> np.ndarray:
        ref = self._refs[name]
        return _strided_read(self._f, self._bases[name], ref, self.path, name)

    def close(self) -> None:
        self._f.close()


class _PickleWriter:
    """Writes the protocol-2 pickle torch.save produces for a flat state dict, opcode by opcode.

    Written by hand because pickling the real `torch._utils._rebuild_tensor_v2`
    reference would need torch importable.
    """

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def str(self, s: str) -> None:
        b = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(b)) + b

    def int(self, n: int) -> None:
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)
        elif -(2**31) <= n < 2**31:
            self.out += b"J" + struct.pack("<i", n)
        else:
            b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def int_tuple(self, values: tuple[int, ...]) -> None:
        self.out += b"("
        for v in values:
            self.int(v)
        self.out += b"t"

    def tensor(self, storage_type: str, key: str, numel: int, shape: tuple[int, ...]) -> None:
        stride = tuple(int(math.prod(shape[i + 1 :])) for i in range(len(shape)))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("  # args tuple, then the persistent id tuple
        self.str("storage")
        self.global_("torch", storage_type)
        self.str(key)
        self.str("cpu")
        self.int(numel)
        self.out += b"tQ"  # TUPLE, BINPERSID
        self.int(0)  # storage offset
        self.int_tuple(shape)
        self.int_tuple(stride)
        self.out += b"\x89"  # requires_grad = False
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # OrderedDict() for backward hooks
        self.out += b"tR"  # TUPLE, REDUCE

    def state_dict(self, entries: list[tuple[str, str, str, int, tuple[int, ...]]]) -> bytes:
        self.out += b"}"  # EMPTY_DICT
        if entries:
            self.out += b"("
            for name, storage_type, key, numel, shape in entries:
                self.str(name)
                self.tensor(storage_type, key, numel, shape)
            self.out += b"u"  # SETITEMS
        self.out += b"."
        return bytes(self.out)


def _zip_entry(zf: zipfile.ZipFile, name: str, nbytes: int, chunks: Iterable[bytes | memoryview]) -> None:
    """Write a stored zip member whose data starts on a TORCH_STORAGE_ALIGNMENT boundary."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = nbytes
    # zipfile adds a 20-byte zip64 extra record to the local header on this same test.
    zip64 = nbytes * 1.05 > zipfile.ZIP64_LIMIT
    header = _LOCAL_HEADER.size + len(name.encode("utf-8")) + (20 if zip64 else 0)
    pad = -(zf.start_dir + header + 4) % TORCH_STORAGE_ALIGNMENT
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB" padding record, as torch writes
    with zf.open(info, "w") as w:
        for chunk in chunks:
            w.write(chunk)


def write_torch(path: str, tensors: Mapping[str, Any]) -> None:
    """Write a torch.save zip that `torch.load(weights_only=True)` accepts.

    Entries that are the same Python object share one storage, as tied
    parameters do in the files transformers writes.
    """
    archive = os.path.splitext(os.path.basename(path))[0]
    keys: dict[int, str] = {}
    storages: list[tuple[str, Any]] = []
    entries = []
    for name, value in tensors.items():
        shape, dtype = _shape_dtype(value)
        info = _dtype_info(dtype, path, name)
        if info.torch_storage is None:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, which torch.save cannot store")
        key = keys.get(id(value))
        if key is None:
            key = keys[id(value)] = str(len(storages))
            storages.append((key, value))
        entries.append((name, info.torch_storage, key, math.prod(shape), shape))
    pickled = _PickleWriter().state_dict(entries)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for member, data in (
            ("data.pkl", pickled),
            (".format_version", b"1"),
            (".storage_alignment", str(TORCH_STORAGE_ALIGNMENT).encode()),
            ("byteorder", b"little"),
        ):
            _zip_entry(zf, f"{archive}/{member}", len(data), [data])
        for key, value in storages:
            array = materialize(value)
            _zip_entry(zf, f"{archive}/data/{key}", array.nbytes, [_raw_bytes(array)])
            del array
        _zip_entry(zf, f"{archive}/version", 2, [b"3\n"])


# ---------------------------------------------------------------------------
# tf_model.h5


def _load_h5_strings(obj: Any, name: str, path: str) -> list[str] | None:
    """A Keras string-list attribute, joined from name0, name1, ... when Keras split it."""
    if name in obj.attrs:
        raw = obj.attrs[name]
    elif f"{name}0" in obj.attrs:
        raw, i = [], 0
        while f"{name}{i}" in obj.attrs:
            raw.extend(np.atleast_1d(obj.attrs[f"{name}{i}"]).tolist())
            i += 1
    else:
        return None
    values = np.atleast_1d(raw).tolist()
    out = []
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        if not isinstance(v, str):
            raise CheckpointError(f"{path}: attribute {name!r} of {obj.name} holds {v!r}, expected strings")
        out.append(v)
    return out


def _save_h5_strings(obj: Any, name: str, values: list[str]) -> None:
    """As Keras' save_attributes_to_hdf5_group: one attribute, split if over the header limit."""
    data = [v.encode("utf-8") for v in values]
    nbytes = np.asarray(data).nbytes if data else 0
    if nbytes <= HDF5_OBJECT_HEADER_LIMIT:
        obj.attrs[name] = data if data else np.zeros(0, np.float64)
        return
    chunks = 2
    while any(np.asarray(c).nbytes > HDF5_OBJECT_HEADER_LIMIT for c in np.array_split(np.asarray(data), chunks)):
        chunks += 1
    for i, chunk in enumerate(np.array_split(np.asarray(data, dtype=object), chunks)):
        obj.attrs[f"{name}{i}"] = list(chunk)


def _strip_tf_suffix(name: str) -> str:
    return re.sub(r":\d+$", "", name)


class H5File(Reader):
    """A `tf_model.h5`: Keras `save_weights` layout, or transformers' sharded layout."""

    format = "tf"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: file not found")
        try:
            self._f = h5py.File(path, "r")
        except OSError as e:
            raise CheckpointError(
                f"{path}: cannot be read as HDF5 ({e}); truncated or not a tf_model.h5"
            ) from None
        try:
            self._parse()
        except BaseException:
            self._f.close()
            raise

    def _parse(self) -> None:
        path, f = self.path, self._f
        self._datasets: dict[str, Any] = {}
        layer_names = _load_h5_strings(f, "layer_names", path)
        if layer_names is None:
            raise CheckpointError(f"{path}: no 'layer_names' attribute; expected a Keras save_weights file")
        groups = []
        for layer in layer_names:
            obj = f.get(layer)
            if obj is None:
                raise CheckpointError(f"{path}: layer_names lists {layer!r}, which the file does not hold")
            if isinstance(obj, h5py.Dataset):
                # transformers' sharded layout: the dataset path is the weight name without the root scope.
                self._add(_strip_tf_suffix(layer), obj)
            else:
                groups.append(obj)
        if "top_level_model_weights" in f and isinstance(f["top_level_model_weights"], h5py.Group):
            groups.append(f["top_level_model_weights"])
        for group in groups:
            weight_names = _load_h5_strings(group, "weight_names", path) or []
            for weight_name in weight_names:
                ds = group.get(weight_name)
                if not isinstance(ds, h5py.Dataset):
                    raise CheckpointError(
                        f"{path}: group {group.name} lists weight {weight_name!r}, which it does not hold"
                    )
                if "/" not in weight_name:
                    raise CheckpointError(
                        f"{path}: weight {weight_name!r} has no root scope; expected '<model name>/<weight path>:0'"
                    )
                self._add(_strip_tf_suffix(weight_name.split("/", 1)[1]), ds)

    def _add(self, name: str, ds: Any) -> None:
        if name in self._infos:
            raise CheckpointError(f"{self.path}: weight {name!r} appears twice")
        dtype = ds.dtype
        if ds.attrs.get("dtype") == "bfloat16" and dtype.itemsize == 2:
            dtype = BF16  # Keras 3's convention: bfloat16 stored as opaque 2-byte values
        self._infos[name] = TensorInfo(name, tuple(ds.shape), np.dtype(dtype), self.path)
        self._datasets[name] = ds

    def read(self, name: str) -> np.ndarray:
        ds, info = self._datasets[name], self._infos[name]
        try:
            array = ds[()]
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({e})") from None
        array = np.asarray(array)
        if info.dtype == BF16:
            array = array.view(BF16)
        return array.reshape(info.shape)

    def close(self) -> None:
        self._f.close()


def _h5_dataset(group: Any, name: str, array: np.ndarray) -> None:
    if array.dtype == BF16:
        ds = group.create_dataset(name, data=array.view(np.dtype("V2")))
        ds.attrs["dtype"] = "bfloat16"
    else:
        ds = group.create_dataset(name, array.shape, dtype=array.dtype)
        if array.size:
            ds[()] = array


def write_h5(path: str, tensors: Mapping[str, Any]) -> None:
    """Write Keras 2 `save_weights` layout, as `TFEncoderDecoderModel.save_pretrained` does.

    Names are TF weight names without root scope and `:0`; their first scope is
    the Keras layer that holds them (`encoder`, `decoder`, `enc_to_dec_proj`).
    """
    layers: dict[str, list[str]] = {}
    for name in tensors:
        layers.setdefault(name.split("/", 1)[0], []).append(name)
    with h5py.File(path, "w") as f:
        _save_h5_strings(f, "layer_names", list(layers))
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = KERAS_VERSION.encode()
        for layer in sorted(layers):
            group = f.create_group(layer)
            full = [f"{TF_ROOT_SCOPE}/{n}:0" for n in layers[layer]]
            _save_h5_strings(group, "weight_names", full)
            for name, full_name in zip(layers[layer], full):
                array = materialize(tensors[name])
                _dtype_info(array.dtype, path, name)
                _h5_dataset(group, full_name, array)
                del array
        top = f.create_group("top_level_model_weights")
        _save_h5_strings(top, "weight_names", [])


def write_h5_shard(path: str, tensors: Mapping[str, Any]) -> None:
    """One shard of transformers' sharded TF layout: datasets at the weight names, listed in layer_names."""
    names = sorted(f"{n}:0" for n in tensors)
    with h5py.File(path, "w") as f:
        for full_name in names:
            name = full_name[:-2]
            array = materialize(tensors[name])
            _dtype_info(array.dtype, path, name)
            _h5_dataset(f, full_name, array)
            del array
        _save_h5_strings(f, "layer_names", names)


# ---------------------------------------------------------------------------
# flax_model.msgpack


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
    except TypeError:
        raise CheckpointError(f"{path}: array at {where!r} has unknown dtype {name!r}") from None
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


class _MsgpackScanner:
    """Walks a msgpack stream, recording where each array's bytes are instead of reading them."""

    def __init__(self, f, size: int, path: str) -> None:
        self.f, self.size, self.path = f, size, path
        self.where = ""  # the param path being read, for errors

    def read(self, n: int) -> bytes:
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
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
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
            shape = tuple(int(tree["shape"][str(i)]) for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt chunked array at {prefix!r}") from None
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
        self._f = _open(path)
        size = os.fstat(self._f.fileno()).st_size
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
            _read_exact(self._f, offset, flat[pos : pos + nbytes], self.path, name)
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
            _dtype_info(array.dtype, path, name)
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
                    f.write(_raw_bytes(chunk))
                return
            f.write(_msgpack_array_head(array.shape, array.dtype, array.nbytes))
            f.write(_raw_bytes(array))

        emit(tree)


# ---------------------------------------------------------------------------
# Single files, shards and folders

_READERS: dict[str, Callable[[str], Reader]] = {
    "safetensors": SafetensorsFile,
    "pt": TorchFile,
    "tf": H5File,
    "flax": MsgpackFile,
}


def open_file(path: str | os.PathLike, fmt: str) -> Reader:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    return _READERS[fmt](path)


def _index_key_to_native(key: str, fmt: str) -> str:
    # transformers' TF index maps full weight names (root scope, ":0") to shards.
    if fmt == "tf":
        return _strip_tf_suffix(key.split("/", 1)[1] if "/" in key else key)
    return key


class ShardedReader(Reader):
    """A sharded checkpoint: the index's shards, read as one."""

    def __init__(self, index_path: str, fmt: str) -> None:
        super().__init__()
        self.format = fmt
        self.index_path = index_path
        directory = os.path.dirname(index_path)
        try:
            with open(index_path) as fh:
                index = json.load(fh)
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except OSError as e:
            raise CheckpointError(f"{index_path}: cannot read ({e.strerror or e})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{index_path}: corrupt index ({e}); expected {{'metadata': ..., 'weight_map': {{name: shard}}}}"
            ) from None
        shard_files = list(dict.fromkeys(weight_map.values()))
        for shard in shard_files:
            if not isinstance(shard, str) or os.path.basename(shard) != shard:
                raise CheckpointError(f"{index_path}: shard name {shard!r} is not a file name in the folder")
            if not os.path.isfile(os.path.join(directory, shard)):
                tensor = next(k for k, v in weight_map.items() if v == shard)
                raise CheckpointError(
                    f"{index_path}: shard {shard} (holding {tensor!r} and others) is missing from {directory}"
                )
        self._readers: list[Reader] = []
        self._owner: dict[str, Reader] = {}
        self.metadata = {}
        try:
            for shard in shard_files:
                reader = open_file(os.path.join(directory, shard), fmt)
                self._readers.append(reader)
                self.files.append(reader.files[0])
                if reader.metadata and not self.metadata:
                    self.metadata = dict(reader.metadata)
                for name in reader.names():
                    if name in self._owner:
                        raise CheckpointError(
                            f"{index_path}: tensor {name!r} is in both {self._owner[name].files[0]} and {shard}"
                        )
                    self._owner[name] = reader
                    self._infos[name] = reader.info(name)
            for key, shard in weight_map.items():
                native = _index_key_to_native(key, fmt)
                owner = self._owner.get(native)
                if owner is None or os.path.basename(owner.files[0]) != shard:
                    where = f"it is in {os.path.basename(owner.files[0])}" if owner else "no shard holds it"
                    raise CheckpointError(
                        f"{index_path}: the index puts tensor {key!r} in {shard}, but {where}"
                    )
        except BaseException:
            self.close()
            raise
        self.files.insert(0, index_path)

    def read(self, name: str) -> np.ndarray:
        return self._owner[name].read(name)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


def open_checkpoint(directory: str | os.PathLike, fmt: str | None = None) -> Reader:
    """Open the weights of a folder: `fmt`, or the first format present (safetensors, pt, tf, flax)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: not a folder; expected a checkpoint folder")
    if fmt is not None and fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    present = formats_present(directory)
    if fmt is None:
        if not present:
            names = ", ".join(f"{WEIGHTS_NAME[f]} (or its index)" for f in FORMATS)
            raise CheckpointError(f"{directory}: no weights found; expected one of {names}")
        fmt = present[0]
    single = os.path.join(directory, WEIGHTS_NAME[fmt])
    if os.path.isfile(single):
        return open_file(single, fmt)
    index = os.path.join(directory, index_name(fmt))
    if os.path.isfile(index):
        return ShardedReader(index, fmt)
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME[fmt]} and no {index_name(fmt)}")


# ---------------------------------------------------------------------------
# Writing a whole checkpoint

_WRITERS: dict[str, Callable[[str, Mapping[str, Any]], None]] = {
    "safetensors": lambda path, tensors: write_safetensors(path, tensors, {"format": "pt"}),
    "pt": write_torch,
    "tf": write_h5,
    "flax": write_msgpack,
}
_SHARD_WRITERS = dict(_WRITERS, tf=write_h5_shard)


def _index_key(name: str, fmt: str) -> str:
    return f"{TF_ROOT_SCOPE}/{name}:0" if fmt == "tf" else name


def write_checkpoint(
    directory: str | os.PathLike, fmt: str, tensors: Mapping[str, Any], shard_size: int | None = None
) -> list[str]:
    """Write `tensors` (native names, in order) as one file or as shards of at most `shard_size` bytes.

    Shards are filled greedily in order, as transformers does; a tensor larger
    than `shard_size` gets a shard of its own. Entries that are the same object
    (tied tensors in a .bin) stay in one shard and are counted once. Returns the
    file names written; weight files of `fmt` left from an earlier save are removed.
    """
    directory = os.fspath(directory)
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    groups: dict[int, list[str]] = {}
    for name, value in tensors.items():
        groups.setdefault(id(value), []).append(name)
    sizes = {key: _nbytes(tensors[names[0]]) for key, names in groups.items()}
    total = sum(sizes.values())
    if shard_size is None or total <= shard_size:
        shards = [list(tensors)]
    else:
        shards, current, current_size = [], [], 0
        for key, names in groups.items():
            if current and current_size + sizes[key] > shard_size:
                shards.append(current)
                current, current_size = [], 0
            current += names
            current_size += sizes[key]
        if current:
            shards.append(current)
    written = []
    if len(shards) == 1:
        _WRITERS[fmt](os.path.join(directory, WEIGHTS_NAME[fmt]), tensors)
        written.append(WEIGHTS_NAME[fmt])
    else:
        weight_map = {}
        for k, names in enumerate(shards, start=1):
            filename = shard_name(fmt, k, len(shards))
            _SHARD_WRITERS[fmt](os.path.join(directory, filename), {n: tensors[n] for n in names})
            written.append(filename)
            weight_map.update({_index_key(n, fmt): filename for n in names})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        with open(os.path.join(directory, index_name(fmt)), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(index_name(fmt))
    for filename in os.listdir(directory):
        if is_weight_file(filename, fmt) and filename not in written:
            os.remove(os.path.join(directory, filename))
    return written
