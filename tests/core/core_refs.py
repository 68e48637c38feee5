"""Independent readers of the four formats, with numpy and the core's libraries only.

The tests compare what encdec writes against files transformers wrote, through
these readers, none of which goes through encdec: the safetensors library's
numpy loader; for `pytorch_model.bin`, Python's zipfile and pickle resolving
torch's two rebuild functions to numpy (a few lines, written from torch's
documented format, not from encdec's reader); h5py with Keras' attribute
convention; msgpack with flax's ExtType convention for arrays. tests/interop
checks that these readers agree with torch.load, Keras and flax themselves.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle
import re
import shutil
import zipfile

import ml_dtypes
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "hf"
CASES = ("bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen", "bert2bert_proj")
FILES = {
    "safetensors": "model.safetensors",
    "pt": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
FORMATS = tuple(FILES)


def case_formats(case: str) -> list[str]:
    return [fmt for fmt, name in FILES.items() if (FIXTURES / case / name).exists()]


def copy_case(case: str, dst: pathlib.Path, formats=None) -> pathlib.Path:
    """A fixture folder with only the configs and the given formats' weights."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        shutil.copy(FIXTURES / case / name, dst / name)
    for fmt in case_formats(case) if formats is None else formats:
        shutil.copy(FIXTURES / case / FILES[fmt], dst / FILES[fmt])
    return dst


def _files(directory: pathlib.Path, fmt: str) -> list[pathlib.Path]:
    single = directory / FILES[fmt]
    if single.exists():
        return [single]
    index = json.loads((directory / (FILES[fmt] + ".index.json")).read_text())
    return [directory / f for f in dict.fromkeys(index["weight_map"].values())]


def read_safetensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for path in _files(directory, "safetensors"):
        out.update(load_file(str(path)))
    return out


_TORCH_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "BFloat16Storage": ml_dtypes.bfloat16,
    "DoubleStorage": np.float64, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)


def _rebuild_tensor_v2(storage, offset, size, stride, *_):
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), tuple(s * itemsize for s in stride))
    return np.array(view)  # a copy in C order


def read_torch_zip(path) -> dict[str, np.ndarray]:
    """A torch.save zip of a flat state dict, as numpy arrays; shared storages become equal copies."""
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, np.ndarray] = {}

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return _rebuild_tensor_v2
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch" and name in _TORCH_DTYPES:
                    return _Storage(_TORCH_DTYPES[name])
                raise pickle.UnpicklingError(f"{module}.{name}")

            def persistent_load(self, pid):
                _, storage_type, key, _location, numel = pid
                if key not in storages:
                    raw = zf.read(f"{prefix}data/{key}")
                    storages[key] = np.frombuffer(raw, storage_type.dtype, count=numel)
                return storages[key]

        return dict(Unpickler(io.BytesIO(zf.read(pkl))).load())


def read_pt(directory: pathlib.Path) -> dict[str, np.ndarray]:
    out = {}
    for path in _files(directory, "pt"):
        out.update(read_torch_zip(path))
    return out


def keras_strings(obj, name: str) -> list[str]:
    """Keras' load_attributes_from_hdf5_group: one attribute, or name0, name1, ... when split."""
    if name in obj.attrs:
        values = list(obj.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in obj.attrs:
            values += list(obj.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if hasattr(v, "decode") else str(v) for v in values]


def _h5_value(ds) -> np.ndarray:
    value = np.asarray(ds[()])
    if ds.attrs.get("dtype") == "bfloat16":
        value = value.view(ml_dtypes.bfloat16)
    return value


def read_tf(directory: pathlib.Path) -> dict[str, np.ndarray]:
    """TF weights by name without the root scope and ":0"."""
    import h5py

    out = {}
    for path in _files(directory, "tf"):
        with h5py.File(path, "r") as f:
            for layer in keras_strings(f, "layer_names"):
                obj = f[layer]
                if isinstance(obj, h5py.Dataset):  # transformers' sharded layout
                    out[re.sub(r":0$", "", layer)] = _h5_value(obj)
                    continue
                for weight in keras_strings(obj, "weight_names"):
                    out[re.sub(r":0$", "", weight.split("/", 1)[1])] = _h5_value(obj[weight])
    return out


def _flax_ext(code: int, data: bytes):
    """flax.serialization's ExtType 1 (ndarray) / 3 (numpy scalar): msgpack of (shape, dtype name, bytes)."""
    import msgpack

    shape, dtype, buffer = msgpack.unpackb(data)
    dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    return np.frombuffer(buffer, dtype).reshape(shape)


def _unchunk(tree):
    """flax's _unchunk_array_leaves_in_place: {"__msgpack_chunked_array__": True, "shape", "chunks"}."""
    if not isinstance(tree, dict):
        return tree
    if tree.get("__msgpack_chunked_array__") is True:
        shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate([c.reshape(-1) for c in chunks]).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}


def _flatten(tree, prefix="") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        out.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def flax_to_bytes(params: dict[str, np.ndarray]) -> bytes:
    """flax.serialization.to_bytes of the nested dict of "/"-joined `params` (keys sorted, as flax's state dicts)."""
    import msgpack

    tree: dict = {}
    for name, value in params.items():
        node = tree
        *scopes, leaf = name.split("/")
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = value

    def ext(obj):
        if isinstance(obj, np.ndarray):
            name = "bfloat16" if obj.dtype == ml_dtypes.bfloat16 else obj.dtype.name
            return msgpack.ExtType(1, msgpack.packb((obj.shape, name, np.ascontiguousarray(obj).tobytes())))
        raise TypeError(type(obj))

    def ordered(node):
        return {k: ordered(node[k]) for k in sorted(node)} if isinstance(node, dict) else node

    return msgpack.packb(ordered(tree), default=ext, strict_types=False)


def read_flax(directory: pathlib.Path) -> dict[str, np.ndarray]:
    import msgpack

    out = {}
    for path in _files(directory, "flax"):
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=_flax_ext, raw=False, strict_map_key=False)
        out.update(_flatten(_unchunk(tree)))
    return out


READERS = {"safetensors": read_safetensors, "pt": read_pt, "tf": read_tf, "flax": read_flax}


def read_native(directory, fmt: str) -> dict[str, np.ndarray]:
    return READERS[fmt](pathlib.Path(directory))


def assert_same_tensors(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str = "") -> None:
    """Same names, shapes, dtypes and bytes."""
    assert sorted(got) == sorted(want), f"{what}: names differ: {sorted(set(got) ^ set(want))[:10]}"
    for name in want:
        g, w = got[name], want[name]
        assert g.dtype == w.dtype, f"{what}: {name} dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{what}: {name} shape {g.shape} != {w.shape}"
        assert g.tobytes() == w.tobytes(), f"{what}: {name} values differ"


def weight_files(directory) -> list[str]:
    pattern = re.compile(r"^(model|pytorch_model|tf_model|flax_model)(-\d{5}-of-\d{5})?\.(safetensors|bin|h5|msgpack)$")
    return sorted(f for f in os.listdir(directory) if pattern.match(f) or f.endswith(".index.json"))


def write_bin_with_tensor(path, shape, stride, numel) -> None:
    """A torch.save zip holding one float tensor `w` of `shape` and `stride` over a storage of `numel` floats,
    its pickle written opcode by opcode as torch.save writes it (protocol 2)."""

    def small(value: int) -> bytes:
        return pickle.dumps(value, protocol=2)[2:-1]  # the int opcode alone

    out = bytearray(b"\x80\x02}(X\x01\x00\x00\x00w")
    out += b"ctorch._utils\n_rebuild_tensor_v2\n(("
    out += b"X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
    out += small(numel) + b"tQK\x00"
    for values in (shape, stride):
        out += b"(" + b"".join(small(v) for v in values) + b"t"
    out += b"\x89ccollections\nOrderedDict\n)RtRu."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", bytes(out))
        zf.writestr("archive/byteorder", b"little")
        zf.writestr("archive/data/0", np.zeros(numel, np.float32).tobytes())
        zf.writestr("archive/version", b"3\n")
