"""Independent readers of the four formats, built on the libraries that define them.

The tests compare what encdec writes against files transformers wrote, through
these readers: safetensors' and torch's own loaders, h5py with Keras' attribute
reader, and flax's msgpack_restore. None of them goes through encdec.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

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


def _torch_to_numpy(t) -> np.ndarray:
    import torch

    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


def read_safetensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    out = {}
    for path in _files(directory, "safetensors"):
        out.update({k: _torch_to_numpy(v) for k, v in load_file(str(path)).items()})
    return out


def read_pt(directory: pathlib.Path) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for path in _files(directory, "pt"):
        out.update({k: _torch_to_numpy(v) for k, v in torch.load(str(path), weights_only=True).items()})
    return out


def _h5_value(ds) -> np.ndarray:
    value = np.asarray(ds[()])
    if ds.attrs.get("dtype") == "bfloat16":
        value = value.view(ml_dtypes.bfloat16)
    return value


def read_tf(directory: pathlib.Path) -> dict[str, np.ndarray]:
    """TF weights by name without the root scope and ":0"."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import load_attributes_from_hdf5_group

    out = {}
    for path in _files(directory, "tf"):
        with h5py.File(path, "r") as f:
            for layer in load_attributes_from_hdf5_group(f, "layer_names"):
                obj = f[layer]
                if isinstance(obj, h5py.Dataset):  # transformers' sharded layout
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
