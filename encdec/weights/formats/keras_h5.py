"""`tf_model.h5`: the Keras 2 `save_weights` layout (and transformers' sharded one), on top of h5py.

HDF5 can take a dataset's bytes from outside the file (external storage,
external links, virtual datasets), so a hostile file could read other local
files into the weights. Only what Keras writes is accepted: hard links inside
the file, and datasets stored uncompressed in it whose bytes the file really
holds (a chunked dataset that was never written holds none). Big-endian
datasets are read and converted; every failure of h5py on a malformed file is
a `CheckpointError` naming the file.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

import h5py
import numpy as np

from ...errors import CheckpointError
from ..names import TF_ROOT_SCOPE
from .common import BF16, BY_NUMPY, Reader, TensorInfo, dtype_info, materialize

# The tf-keras version whose `save_weights` layout `write_h5` produces; Keras
# reads it only to decide on conversions of Keras 1 files.
KERAS_VERSION = "2.21.0"
# Keras splits a string-list attribute above this many bytes into name0, name1, ...
HDF5_OBJECT_HEADER_LIMIT = 64512


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


def strip_tf_suffix(name: str) -> str:
    return re.sub(r":\d+$", "", name)


def _resolve(f: Any, name: str, path: str) -> Any:
    """The object at `name`, reached through hard links only (an external link leaves the file,
    a soft link may loop; Keras writes neither). None if it does not exist."""
    node = f
    for part in [p for p in name.split("/") if p]:
        if not isinstance(node, h5py.Group) or part not in node:
            return None
        link = node.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise CheckpointError(
                f"{path}: {name!r} goes through a {type(link).__name__} ({link!r}); expected hard links inside "
                "the file, as Keras writes (external links can read other files)"
            )
        node = node[part]
    return node


def _dataset_layout(ds: Any, name: str, path: str, size: int) -> np.dtype:
    """The dtype to read `ds` as, after checking that its bytes are plain data inside this file."""
    where = f"{path}: weight {name!r}"
    if ds.is_virtual:
        raise CheckpointError(f"{where} is a virtual dataset (its data lives in other files); expected data in the file")
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        raise CheckpointError(f"{where} stores its data in an external file; expected data inside the file")
    if plist.get_nfilters() > 0:
        raise CheckpointError(f"{where} is compressed or filtered; Keras stores weights uncompressed")
    if ds.shape is None:
        raise CheckpointError(f"{where} has no shape (a null dataspace); expected an array")
    dtype = ds.dtype
    if dtype.kind == "V" and dtype.itemsize == 2 and ds.attrs.get("dtype") == "bfloat16":
        dtype = BF16  # Keras 3's convention: bfloat16 stored as opaque 2-byte values
    elif dtype.byteorder == ">":
        dtype = dtype.newbyteorder("<")
    if dtype not in BY_NUMPY:
        raise CheckpointError(f"{where} has HDF5 type {ds.dtype}; expected a numeric tensor")
    nbytes = math.prod(ds.shape) * dtype.itemsize
    if nbytes:
        stored = ds.id.get_storage_size()
        offset = ds.id.get_offset()  # None unless contiguous and allocated
        end = (offset if offset is not None else 0) + stored
        if stored < nbytes or end > size:
            raise CheckpointError(
                f"{where} ({dtype}{list(ds.shape)}, {nbytes} bytes) has {stored} bytes stored"
                + (f" ending at byte {end} of {size}" if end > size else "")
                + "; expected all of its data written inside the file"
            )
    return np.dtype(dtype)


class H5File(Reader):
    """A `tf_model.h5`: Keras `save_weights` layout, or transformers' sharded layout."""

    format = "tf"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.files = [path]
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: file not found")
        self._size = os.path.getsize(path)
        try:
            self._f = h5py.File(path, "r")
        except Exception as e:  # noqa: BLE001 - h5py raises OSError, and others on malformed files
            raise CheckpointError(
                f"{path}: cannot be read as HDF5 ({type(e).__name__}: {e}); truncated or not a tf_model.h5"
            ) from None
        try:
            self._parse()
        except CheckpointError:
            self._f.close()
            raise
        except Exception as e:  # noqa: BLE001 - KeyError, RuntimeError, UnicodeDecodeError... from h5py
            self._f.close()
            raise CheckpointError(
                f"{path}: malformed HDF5 ({type(e).__name__}: {e}); expected a Keras save_weights file"
            ) from None
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
            obj = _resolve(f, layer, path)
            if obj is None:
                raise CheckpointError(f"{path}: layer_names lists {layer!r}, which the file does not hold")
            if isinstance(obj, h5py.Dataset):
                # transformers' sharded layout: the dataset path is the weight name without the root scope.
                self._add(strip_tf_suffix(layer), obj)
            else:
                groups.append(obj)
        top = _resolve(f, "top_level_model_weights", path)
        if isinstance(top, h5py.Group):
            groups.append(top)
        for group in groups:
            weight_names = _load_h5_strings(group, "weight_names", path) or []
            for weight_name in weight_names:
                ds = _resolve(group, weight_name, path)
                if not isinstance(ds, h5py.Dataset):
                    raise CheckpointError(
                        f"{path}: group {group.name} lists weight {weight_name!r}, which it does not hold"
                    )
                if "/" not in weight_name:
                    raise CheckpointError(
                        f"{path}: weight {weight_name!r} has no root scope; expected '<model name>/<weight path>:0'"
                    )
                self._add(strip_tf_suffix(weight_name.split("/", 1)[1]), ds)

    def _add(self, name: str, ds: Any) -> None:
        if name in self._infos:
            raise CheckpointError(f"{self.path}: weight {name!r} appears twice")
        dtype = _dataset_layout(ds, name, self.path, self._size)
        self._infos[name] = TensorInfo(name, tuple(ds.shape), dtype, self.path)
        self._datasets[name] = ds

    def read(self, name: str) -> np.ndarray:
        ds, info = self._datasets[name], self._infos[name]
        try:
            array = np.asarray(ds[()])
        except Exception as e:  # noqa: BLE001 - h5py's errors on a damaged file
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({type(e).__name__}: {e})") from None
        if info.dtype == BF16:
            array = array.view(BF16)
        elif array.dtype != info.dtype:
            array = array.astype(info.dtype)  # big-endian on disk
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
                dtype_info(array.dtype, path, name)
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
            dtype_info(array.dtype, path, name)
            _h5_dataset(f, full_name, array)
            del array
        _save_h5_strings(f, "layer_names", names)


