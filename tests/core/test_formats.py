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
from encdec.weights.formats import torch_bin

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


def test_bin_pickle_writer_encodes_large_sizes():
    """Storage sizes beyond 2**31 elements use LONG1, and read back exactly (no data needed)."""
    numel = 3 * 2**31 + 5
    pkl = torch_bin._PickleWriter().state_dict([("huge", "HalfStorage", "0", numel, (3, 2**31 + 1))])
    obj, storages = torch_bin._unpickle(pkl, "<memory>")
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


# ---------------------------------------------------------------------------
# flax msgpack


# ---------------------------------------------------------------------------
# h5


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


