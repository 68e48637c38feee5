"""The formats' own libraries as readers: torch.load, Keras' h5 attribute reader, flax's msgpack_restore."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import pathlib
import re

import ml_dtypes
import numpy as np

from core_refs import _files, _h5_value


def torch_to_numpy(t) -> np.ndarray:
    import torch

    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


def read_pt(directory: pathlib.Path) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for path in _files(directory, "pt"):
        out.update({k: torch_to_numpy(v) for k, v in torch.load(str(path), weights_only=True).items()})
    return out


def read_safetensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    out = {}
    for path in _files(directory, "safetensors"):
        out.update({k: torch_to_numpy(v) for k, v in load_file(str(path)).items()})
    return out


def read_tf(directory: pathlib.Path) -> dict[str, np.ndarray]:
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import load_attributes_from_hdf5_group

    out = {}
    for path in _files(directory, "tf"):
        with h5py.File(path, "r") as f:
            for layer in load_attributes_from_hdf5_group(f, "layer_names"):
                obj = f[layer]
                if isinstance(obj, h5py.Dataset):
                    out[re.sub(r":0$", "", layer)] = _h5_value(obj)
                    continue
                for weight in load_attributes_from_hdf5_group(obj, "weight_names"):
                    out[re.sub(r":0$", "", weight.split("/", 1)[1])] = _h5_value(obj[weight])
    return out


def read_flax(directory: pathlib.Path) -> dict[str, np.ndarray]:
    from flax.serialization import msgpack_restore
    from flax.traverse_util import flatten_dict

    out = {}
    for path in _files(directory, "flax"):
        tree = msgpack_restore(path.read_bytes())
        out.update({"/".join(k): np.asarray(v) for k, v in flatten_dict(tree).items()})
    return out


READERS = {"safetensors": read_safetensors, "pt": read_pt, "tf": read_tf, "flax": read_flax}


def read_native(directory, fmt: str) -> dict[str, np.ndarray]:
    return READERS[fmt](pathlib.Path(directory))


def golden(case: str) -> dict[str, np.ndarray]:
    """The inputs and transformers' outputs stored with a fixture case."""
    from core_refs import FIXTURES

    with np.load(FIXTURES / case / "golden.npz") as data:
        return {k: data[k] for k in data.files}
