"""`pytorch_model.bin` (torch.save), read without running its pickle, and written as torch does.

Only the classes torch.save uses for tensors are resolved, to numpy stand-ins;
any other global in the pickle is refused before anything runs. Both the zip
format of torch >= 1.6 and the older pickle stream are read.

Bounds, so that a small file cannot make the reader allocate much: every member
of the zip must be stored uncompressed (as torch.save writes them), a tensor may
not hold more elements than its storage (no stride-0 expansion), and a storage
must lie inside the file. Every storage read from a zip is checked against the
CRC-32 the archive records for it.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ...errors import CheckpointError, UnsafePickleError
from .common import (
    BY_STORAGE,
    Reader,
    TensorInfo,
    dtype_info,
    file_size,
    materialize,
    open_binary,
    raw_bytes,
    read_exact,
    shape_dtype,
)

# torch.save aligns every storage to this many bytes inside the zip (for mmap).
TORCH_STORAGE_ALIGNMENT = 64


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
    {("torch", name): (lambda name=name, dtype=info.numpy: _StorageType(name, dtype)) for name, info in BY_STORAGE.items()}
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
    numel = math.prod(ref.shape)
    if numel == 0:
        return
    if numel > ref.storage.numel:
        # A stride-0 (expanded) view: a few stored elements would be read as many.
        raise CheckpointError(
            f"{path}: tensor {name!r} has {numel} elements (size {list(ref.shape)}, stride {list(ref.stride)}) "
            f"but its storage holds only {ref.storage.numel}; expected a tensor no larger than its storage"
        )
    last = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride))
    if ref.offset < 0 or any(st < 0 for st in ref.stride) or last >= ref.storage.numel:
        raise CheckpointError(
            f"{path}: tensor {name!r} (size {list(ref.shape)}, stride {list(ref.stride)}, offset {ref.offset}) "
            f"reaches past its storage of {ref.storage.numel} elements"
        )


def _view(flat: np.ndarray, ref: _TensorRef) -> np.ndarray:
    """The C-contiguous tensor a (possibly strided) view `ref` takes from `flat`, its storage from `ref.offset` on."""
    shape, dtype = ref.shape, ref.storage.dtype
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    span = 1 + sum((s - 1) * st for s, st in zip(shape, ref.stride))
    flat = flat[ref.offset : ref.offset + span]
    contiguous = tuple(int(math.prod(shape[i + 1 :])) for i in range(len(shape)))
    if ref.stride == contiguous or len(shape) == 0:
        return flat.reshape(shape)
    view = np.lib.stride_tricks.as_strided(flat, shape, tuple(st * dtype.itemsize for st in ref.stride))
    return np.ascontiguousarray(view)


def _strided_read(f, base: int, ref: _TensorRef, path: str, name: str) -> np.ndarray:
    """Read the elements a view spans (from a storage starting at byte `base`), C-contiguous."""
    dtype, shape = ref.storage.dtype, ref.shape
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    span = 1 + sum((s - 1) * st for s, st in zip(shape, ref.stride))
    flat = read_exact(f, base + ref.offset * dtype.itemsize, np.empty(span, dtype), path, name)
    return _view(flat, _TensorRef(ref.storage, 0, ref.shape, ref.stride))


_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes


class TorchFile(Reader):
    """A `pytorch_model.bin`: the zip format of torch >= 1.6, or the older pickle stream."""

    format = "pt"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        self._f = open_binary(path)
        self._refs: dict[str, _TensorRef] = {}
        self._bases: dict[str, int] = {}  # tensor name -> byte offset of its storage's data in the file
        self._members: dict[str, zipfile.ZipInfo] = {}  # tensor name -> its storage's zip member (for the CRC)
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
        for member in zf.infolist():
            if member.compress_type != zipfile.ZIP_STORED:
                # A compressed member can expand without bound (a zip bomb); torch.save never compresses.
                raise CheckpointError(
                    f"{path}: archive member {member.filename} is compressed; torch.save stores every member "
                    "uncompressed, and compressed members are refused"
                )
        try:
            data = zf.read(pkl_names[0])
            byteorder = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in zf.NameToInfo else "little"
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt archive member ({e})") from None
        if byteorder != "little":
            raise CheckpointError(f"{path}: byteorder {byteorder!r}; expected 'little'")
        obj, storages = _unpickle(data, path)
        self._refs = _state_dict_entries(obj, path)
        size = file_size(self._f)
        key_users = collections.defaultdict(list)
        for name, ref in self._refs.items():
            key_users[ref.storage.key].append(name)
        for key, storage in storages.items():
            member = zf.NameToInfo.get(f"{prefix}data/{key}")
            users = ", ".join(repr(n) for n in key_users.get(key, [])) or "no tensor"
            if member is None:
                raise CheckpointError(f"{path}: storage data/{key} (of {users}) is missing from the archive")
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
            if base + member.file_size > size:
                raise CheckpointError(f"{path}: truncated: storage data/{key} (of {users}) ends past the end of file")
            for name in key_users.get(key, []):
                self._bases[name] = base
                self._members[name] = member

    def _diagnose_broken_zip(self, error: Exception) -> None:
        """The zip directory is unreadable (it sits at the end, so a cut file loses it): name what is cut.

        Walks the local headers from the start. torch writes sizes only in data
        descriptors after each member, so a storage's length comes from the
        pickle and a small member's from its descriptor.
        """
        path, f = self.path, self._f
        size = file_size(f)
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
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointError(
                f"{path}: the storage keys are {type(keys).__name__} {str(keys)[:80]!r}; expected a list of strings"
            )
        self._refs = _state_dict_entries(obj, path)
        size = file_size(f)
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
        member = self._members.get(name)
        if member is None:  # legacy files have no checksums
            return _strided_read(self._f, self._bases[name], ref, self.path, name)
        # The whole member, so its CRC-32 can be checked: a flipped byte is an error, not a silent change.
        data = read_exact(self._f, self._bases[name], np.empty(member.file_size, np.uint8), self.path, name)
        crc = zlib.crc32(data)
        if crc != member.CRC:
            raise CheckpointError(
                f"{self.path}: storage {member.filename} of tensor {name!r} fails its CRC-32 check "
                f"(0x{crc:08x}, the archive records 0x{member.CRC:08x}); the file is corrupt"
            )
        dtype = ref.storage.dtype
        flat = data[: ref.storage.numel * dtype.itemsize].view(dtype)
        return _view(flat, ref)

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
        shape, dtype = shape_dtype(value)
        info = dtype_info(dtype, path, name)
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
            _zip_entry(zf, f"{archive}/data/{key}", array.nbytes, [raw_bytes(array)])
            del array
        _zip_entry(zf, f"{archive}/version", 2, [b"3\n"])


