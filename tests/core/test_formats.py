"""Readers and writers of each format, checked against the libraries that define the formats."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile

import ml_dtypes
import numpy as np
import pytest

from core_refs import FILES, FIXTURES, copy_case, read_native
from encdec.errors import CheckpointError, UnsafePickleError
from encdec.weights import formats as F

BF16 = np.dtype(ml_dtypes.bfloat16)


def _arrays(rng):
    return {
        "f32": rng.standard_normal((5, 7)).astype(np.float32),
        "f16": rng.standard_normal((3,)).astype(np.float16),
        "bf16": rng.standard_normal((2, 3, 4)).astype(BF16),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(1.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


# ---------------------------------------------------------------------------
# pytorch_model.bin


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


def test_bin_pickle_writer_encodes_large_sizes():
    """Storage sizes beyond 2**31 elements use LONG1, and read back exactly (no data needed)."""
    numel = 3 * 2**31 + 5
    pkl = F._PickleWriter().state_dict([("huge", "HalfStorage", "0", numel, (3, 2**31 + 1))])
    obj, storages = F._unpickle(pkl, "<memory>")
    assert storages["0"].numel == numel and obj["huge"].shape == (3, 2**31 + 1)
    assert obj["huge"].stride == (2**31 + 1, 1)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/byteorder", "little")


@pytest.mark.parametrize("legacy", [False, True])
def test_bin_with_code_in_its_pickle_is_refused_without_running_it(tmp_path, legacy):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _Evil(marker)}, protocol=2)
    folder = copy_case("bert2bert", tmp_path / "ckpt", [])
    path = folder / "pytorch_model.bin"
    if legacy:  # the pre-zip layout: magic, protocol, sys info, then the state dict pickle
        with open(path, "wb") as f:
            for obj in (F.TorchFile._LEGACY_MAGIC, 1001, {"little_endian": True}):
                pickle.dump(obj, f, protocol=2)
            f.write(payload)
    else:
        _zip_with_pickle(path, payload)
    # the same pickle really would run the command if loaded with plain pickle
    assert b"system" in payload
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system") as err:
        F.TorchFile(str(path))
    assert str(path) in str(err.value)
    from encdec.weights import convert_checkpoint

    with pytest.raises(UnsafePickleError):
        convert_checkpoint(folder, tmp_path / "out", "safetensors", progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_bin_refuses_any_other_global(tmp_path):
    for module, name in (("builtins", "eval"), ("torch", "load"), ("numpy", "frombuffer"), ("__main__", "x")):
        payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."
        path = tmp_path / f"{name}.bin"
        _zip_with_pickle(path, payload)
        with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
            F.TorchFile(str(path))


def test_bin_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.bin"
    _zip_with_pickle(path, pickle.dumps([1, 2], protocol=2))
    with pytest.raises(CheckpointError, match="expected a state dict"):
        F.TorchFile(str(path))


# ---------------------------------------------------------------------------
# safetensors


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


# ---------------------------------------------------------------------------
# flax msgpack


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

    monkeypatch.setattr(F, "MSGPACK_MAX_CHUNK_SIZE", 64)
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


# ---------------------------------------------------------------------------
# h5


def test_h5_splits_long_name_lists_as_keras_does(tmp_path, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setattr(F, "HDF5_OBJECT_HEADER_LIMIT", 200)
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


def test_h5_bfloat16_uses_keras3_convention(tmp_path):
    import h5py

    value = np.random.default_rng(4).standard_normal((3, 5)).astype(BF16)
    path = tmp_path / "tf_model.h5"
    F.write_h5(str(path), {"decoder/w": value})
    with h5py.File(path, "r") as f:
        ds = f["decoder"]["tf_encoder_decoder_model/decoder/w:0"]
        assert ds.attrs["dtype"] == "bfloat16" and ds.dtype.itemsize == 2
        # the way Keras 3's H5IOStore reads it back
        assert np.array(ds, dtype=ml_dtypes.bfloat16).tobytes() == value.tobytes()


# ---------------------------------------------------------------------------
# Damaged files

TRUNCATE_AT = (0.0, 0.1, 0.5, 0.8, 0.999)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "tf", "flax"])
def test_truncated_files_name_file_and_tensor(tmp_path, fmt):
    from encdec.weights import load_state, model_spec
    from encdec.config import EncoderDecoderConfig

    case = "bert2bert"
    spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / case))
    data = (FIXTURES / case / FILES[fmt]).read_bytes()
    names_in_file = set(read_native(FIXTURES / case, fmt))
    for fraction in TRUNCATE_AT:
        folder = copy_case(case, tmp_path / f"{fmt}{fraction}", [])
        path = folder / FILES[fmt]
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(CheckpointError) as err:
            load_state(folder, spec)
        message = str(err.value)
        assert str(path) in message, message
        assert "truncated" in message.lower() or "corrupt" in message.lower(), message
        # h5 cannot be opened once cut (HDF5 checks its end of file first), so only the file is named.
        if fmt != "tf" and 0.5 <= fraction < 0.99:
            assert any(repr(n) in message or n in message for n in names_in_file), message


def test_garbage_files_are_checkpoint_errors(tmp_path):
    for fmt, name in FILES.items():
        for content in (b"", b"\x00" * 64, b"version https://git-lfs.github.com/spec/v1\n", os.urandom(4096)):
            path = tmp_path / name
            path.write_bytes(content)
            with pytest.raises(CheckpointError, match=str(path)):
                F.open_file(str(path), fmt)


def _sharded(tmp_path, fmt, shard_size="40KB"):
    from encdec.weights import convert_checkpoint

    out = tmp_path / f"sharded-{fmt}"
    convert_checkpoint(copy_case("bert2bert", tmp_path / "src", ["safetensors"]), out, fmt, shard_size=shard_size, progress=False)
    index_path = out / (FILES[fmt] + ".index.json")
    return out, index_path, json.loads(index_path.read_text())


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "tf", "flax"])
def test_missing_shard_wrong_index_and_missing_tensor(tmp_path, fmt):
    out, index_path, index = _sharded(tmp_path, fmt)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3

    # a missing shard is named, with a tensor it holds
    os.rename(out / shards[1], tmp_path / "aside")
    with pytest.raises(CheckpointError) as err:
        F.open_checkpoint(out)
    assert shards[1] in str(err.value) and str(index_path) in str(err.value)
    held = [k for k, v in index["weight_map"].items() if v == shards[1]]
    assert any(k in str(err.value) for k in held)
    os.rename(tmp_path / "aside", out / shards[1])

    # an index that puts a tensor in the wrong shard
    key = next(k for k, v in index["weight_map"].items() if v == shards[0])
    wrong = dict(index, weight_map=dict(index["weight_map"], **{key: shards[2]}))
    index_path.write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError) as err:
        F.open_checkpoint(out)
    assert key in str(err.value) and shards[2] in str(err.value)

    # an index naming a tensor no shard holds
    ghost = "tf_encoder_decoder_model/decoder/ghost:0" if fmt == "tf" else ("decoder/ghost" if fmt == "flax" else "decoder.ghost")
    index_path.write_text(json.dumps(dict(index, weight_map=dict(index["weight_map"], **{ghost: shards[0]}))))
    with pytest.raises(CheckpointError, match="ghost"):
        F.open_checkpoint(out)

    # and a corrupt index
    index_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt index"):
        F.open_checkpoint(out)


def test_lazy_tensor_checks_what_it_loads():
    lazy = F.LazyTensor((2, 2), np.float32, lambda: np.zeros((2, 3), np.float32))
    with pytest.raises(CheckpointError, match=r"expected float32\[2, 2\]"):
        lazy.load()


def test_formats_present_and_preference(tmp_path):
    folder = copy_case("bert2bert", tmp_path / "all")
    assert F.formats_present(folder) == ["safetensors", "pt", "tf", "flax"]
    with F.open_checkpoint(folder) as reader:
        assert reader.format == "safetensors"
    shutil.rmtree(folder)
    folder = copy_case("bert2bert", tmp_path / "two", ["flax", "pt"])
    with F.open_checkpoint(folder) as reader:
        assert reader.format == "pt"
    with pytest.raises(CheckpointError, match="no weights found"):
        F.open_checkpoint(copy_case("bert2bert", tmp_path / "none", []))


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
