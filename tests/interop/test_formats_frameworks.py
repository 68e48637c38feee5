"""Readers and writers of each format, checked against torch, Keras and flax themselves (moved from tests/core,
which runs with the core's dependencies only)."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import zipfile

import numpy as np
import pytest

from encdec.errors import CheckpointError
from encdec.weights import formats as F
from encdec.weights.formats import flax_msgpack, keras_h5
from test_formats import BF16, _arrays, _zip_with_pickle


def test_bin_reader_matches_torch_on_views_strides_and_dtypes(tmp_path):
    import torch

    base = torch.randn(6, 8)
    sd = {
        "plain": torch.randn(4, 5),
        "transposed": base.t(),  # non-contiguous view
        "row_slice": base[2:4],  # offset into a shared storage
        "column_slice": base[:, 1:3],
        "half": torch.randn(3, 2).half(),
        "bf16": torch.randn(7).bfloat16(),
        "long": torch.arange(10),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.randn(2, 2)),
    }
    for legacy in (False, True):
        path = tmp_path / f"legacy{legacy}.bin"
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        with F.TorchFile(str(path)) as reader:
            assert reader.names() == list(sd)
            for name, tensor in sd.items():
                want = tensor.detach()
                got = reader.read(name)
                if want.dtype == torch.bfloat16:
                    want = want.view(torch.int16).numpy().view(BF16) if want.is_contiguous() else want.contiguous().view(torch.int16).numpy().view(BF16)
                else:
                    want = want.contiguous().numpy()
                assert got.dtype == want.dtype and got.shape == want.shape, (legacy, name)
                assert got.tobytes() == want.tobytes(), (legacy, name)
                assert got.flags.c_contiguous


def test_bin_reader_reads_a_module_state_dict(tmp_path):
    """torch.save(module.state_dict()): an OrderedDict carrying `_metadata`, and Parameters."""
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    torch.save(module.state_dict(), tmp_path / "m.bin")
    with F.TorchFile(str(tmp_path / "m.bin")) as reader:
        assert reader.names() == list(module.state_dict())
        for name, value in module.state_dict().items():
            assert np.array_equal(reader.read(name), value.numpy())


def test_bin_writer_is_loadable_by_torch(tmp_path):
    import torch

    arrays = _arrays(np.random.default_rng(0))
    shared = arrays["f32"]
    tensors = dict(arrays, tied=shared)  # the same object: one storage, as a tied LM head
    path = tmp_path / "pytorch_model.bin"
    F.write_torch(str(path), tensors)
    for mmap in (False, True):
        sd = torch.load(path, weights_only=True, mmap=mmap)
        assert list(sd) == list(tensors)
        for name, value in tensors.items():
            t = sd[name]
            got = t.view(torch.int16).numpy().view(BF16) if t.dtype == torch.bfloat16 else t.numpy()
            assert got.dtype == value.dtype and got.shape == value.shape and got.tobytes() == value.tobytes(), name
        assert sd["tied"].untyped_storage().data_ptr() == sd["f32"].untyped_storage().data_ptr()
    # and the archive is laid out as torch lays it out: one folder, stored members, aligned storages
    with zipfile.ZipFile(path) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {"pytorch_model"}
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            if "/data/" in info.filename:
                with open(path, "rb") as f:
                    f.seek(info.header_offset + 26)
                    n, m = np.frombuffer(f.read(4), "<u2")
                assert (info.header_offset + 30 + n + m) % 64 == 0


def test_safetensors_interoperates_with_the_safetensors_library(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    arrays = {k: v for k, v in _arrays(np.random.default_rng(1)).items()}
    path = tmp_path / "ours.safetensors"
    F.write_safetensors(str(path), arrays, {"format": "pt"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        for name, value in arrays.items():
            t = f.get_tensor(name)
            got = t.view(torch.int16).numpy().view(BF16) if t.dtype == torch.bfloat16 else t.numpy()
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), name
    # and byte for byte what the library writes
    theirs = tmp_path / "theirs.safetensors"
    as_torch = {
        k: torch.from_numpy(v.view(np.int16).copy()).view(torch.bfloat16) if v.dtype == BF16 else torch.from_numpy(v.copy())
        for k, v in arrays.items()
    }
    save_file(as_torch, str(theirs), metadata={"format": "pt"})
    assert path.read_bytes() == theirs.read_bytes()
    with F.SafetensorsFile(str(theirs)) as reader:
        for name, value in arrays.items():
            assert reader.read(name).tobytes() == value.tobytes()


def test_msgpack_interoperates_with_flax(tmp_path):
    from flax import serialization
    from flax.traverse_util import flatten_dict, unflatten_dict

    arrays = {f"a/{k}" if i % 2 else f"b/c/{k}": v for i, (k, v) in enumerate(_arrays(np.random.default_rng(2)).items())}
    path = tmp_path / "ours.msgpack"
    F.write_msgpack(str(path), arrays)
    # flax params trees come out of jax with sorted keys; to_bytes keeps the tree's order
    tree = unflatten_dict({tuple(k.split("/")): arrays[k] for k in sorted(arrays)})
    assert path.read_bytes() == serialization.to_bytes(tree)
    restored = flatten_dict(serialization.msgpack_restore(path.read_bytes()), sep="/")
    for name, value in arrays.items():
        assert np.asarray(restored[name]).dtype == value.dtype and np.asarray(restored[name]).tobytes() == value.tobytes()


def test_msgpack_chunked_arrays_match_flax(tmp_path, monkeypatch):
    """Arrays over flax's chunk limit are split as flax splits them (limit lowered to test it)."""
    from flax import serialization

    monkeypatch.setattr(flax_msgpack, "MSGPACK_MAX_CHUNK_SIZE", 64)
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 64)
    arrays = {"big/kernel": np.random.default_rng(3).standard_normal((9, 7)).astype(np.float32), "small/bias": np.ones(3, np.float32)}
    path = tmp_path / "chunked.msgpack"
    F.write_msgpack(str(path), arrays)
    theirs = serialization.msgpack_serialize({"big": {"kernel": arrays["big/kernel"]}, "small": {"bias": arrays["small/bias"]}})
    assert path.read_bytes() == theirs
    with F.MsgpackFile(str(path)) as reader:
        assert sorted(reader.names()) == sorted(arrays)
        for name, value in arrays.items():
            assert reader.read(name).tobytes() == value.tobytes()


def test_h5_splits_long_name_lists_as_keras_does(tmp_path, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setattr(keras_h5, "HDF5_OBJECT_HEADER_LIMIT", 200)
    arrays = {f"encoder/layer_._{i}/dense/kernel": np.full((2, 2), i, np.float32) for i in range(12)}
    path = tmp_path / "tf_model.h5"
    F.write_h5(str(path), arrays)
    with h5py.File(path, "r") as f:
        group = f["encoder"]
        assert "weight_names" not in group.attrs and "weight_names0" in group.attrs
        names = legacy_h5_format.load_attributes_from_hdf5_group(group, "weight_names")
        assert names == [f"tf_encoder_decoder_model/{n}:0" for n in arrays]
    with F.H5File(str(path)) as reader:
        assert reader.names() == list(arrays)
        for name, value in arrays.items():
            assert reader.read(name).tobytes() == value.tobytes()


def test_bin_pickle_cannot_tamper_with_the_reader(tmp_path):
    """BUILD on the stand-ins torch's globals resolve to is refused (no state leaks to the next file)."""
    import torch

    good = tmp_path / "good.bin"
    torch.save({"w": torch.ones(2)}, good)
    # GLOBAL torch.FloatStorage, then BUILD it with {"dtype": 1}: an attempt to change what "float" means,
    # once as a __dict__ update and once as (None, slot state).
    storage = b"\x80\x02ctorch\nFloatStorage\n"
    state = b"}X\x05\x00\x00\x00dtypeK\x01s"
    for build in (storage + state + b"b.", storage + b"N" + state + b"\x86b."):
        bad = tmp_path / "bad.bin"
        _zip_with_pickle(bad, build)
        with pytest.raises(CheckpointError, match="set the state of a _StorageType"):
            F.TorchFile(str(bad))
    with F.TorchFile(str(good)) as reader:
        assert reader.info("w").dtype == np.float32 and reader.read("w").tolist() == [1.0, 1.0]
