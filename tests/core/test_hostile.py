"""Hostile and broken checkpoints and configs: each is refused with an encdec error naming the file,
or loads exactly; none reads outside the file, allocates more than the file holds, or escapes as a
raw exception."""

from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import zipfile

import h5py
import numpy as np
import pytest

from core_refs import FILES, FIXTURES, assert_same_tensors, copy_case, read_native, write_bin_with_tensor
from encdec import cli
from encdec.config import EncoderDecoderConfig, GenerationConfig
from encdec.errors import CheckpointError, ConfigError, EncdecError
from encdec.weights import convert_checkpoint, load_state, model_spec
from encdec.weights import formats as F

CASE = "bert2bert"


def _spec(folder=FIXTURES / CASE):
    return model_spec(EncoderDecoderConfig.from_pretrained(folder))


# ---------------------------------------------------------------------------
# tf_model.h5: nothing from outside the file


def _h5_weight(path) -> tuple[str, np.ndarray]:
    """The HDF5 path and value of the first weight of a Keras save_weights file."""
    from core_refs import keras_strings

    with h5py.File(path, "r") as f:
        layer = keras_strings(f, "layer_names")[0]
        weight = keras_strings(f[layer], "weight_names")[0]
        return f"{layer}/{weight}", f[layer][weight][()]


def _replace_h5_weight(path, make) -> None:
    where, _ = _h5_weight(path)
    with h5py.File(path, "r+") as f:
        del f[where]
        make(f, where)


@pytest.mark.parametrize("kind", ["external_storage", "external_link", "virtual", "soft_link_loop"])
def test_h5_cannot_read_other_files(tmp_path, kind):
    folder = copy_case(CASE, tmp_path / "src", ["tf"])
    path = folder / FILES["tf"]
    _, value = _h5_weight(path)
    secret = np.full(value.shape, 7.0, value.dtype)
    (tmp_path / "secret.bin").write_bytes(secret.tobytes())
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        f["data"] = secret

    def make(f, where):
        if kind == "external_storage":
            f.create_dataset(where, value.shape, value.dtype, external=[(str(tmp_path / "secret.bin"), 0, secret.nbytes)])
        elif kind == "external_link":
            f[where] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/data")
        elif kind == "virtual":
            layout = h5py.VirtualLayout(value.shape, value.dtype)
            layout[...] = h5py.VirtualSource(str(tmp_path / "secret.h5"), "data", value.shape)
            f.create_virtual_dataset(where, layout)
        else:
            f[where] = h5py.SoftLink(where)

    _replace_h5_weight(path, make)
    with pytest.raises(CheckpointError, match=FILES["tf"]):
        convert_checkpoint(folder, tmp_path / "out", "safetensors", progress=False)
    assert not (tmp_path / "out").exists()


def test_h5_unwritten_and_compressed_datasets_are_refused(tmp_path):
    """A chunked dataset never written holds no bytes: it would read as fill values of any declared size."""
    for kind in ("unwritten", "compressed"):
        folder = copy_case(CASE, tmp_path / kind, ["tf"])
        _, value = _h5_weight(folder / FILES["tf"])

        def make(f, where):
            if kind == "unwritten":
                f.create_dataset(where, value.shape, value.dtype, chunks=True)
            else:
                f.create_dataset(where, data=value, compression="gzip")

        _replace_h5_weight(folder / FILES["tf"], make)
        with pytest.raises(CheckpointError, match=r"tf_model\.h5.*(stored|compressed)"):
            load_state(folder, _spec())


def test_h5_big_endian_datasets_load_as_little_endian(tmp_path):
    folder = copy_case(CASE, tmp_path / "src", ["tf"])
    with h5py.File(folder / FILES["tf"], "r+") as f:
        def swap(name, obj):
            if isinstance(obj, h5py.Dataset):
                swapped.append(name)

        swapped: list[str] = []
        f.visititems(swap)
        for name in swapped:
            value = f[name][()]
            del f[name]
            f.create_dataset(name, data=value.astype(value.dtype.newbyteorder(">")))
    state, _ = load_state(folder, _spec())
    want, _ = load_state(FIXTURES / CASE, _spec(), fmt="tf")
    assert {str(a.dtype) for a in state.values()} == {"float32"}
    assert {a.dtype.byteorder for a in state.values()} <= {"=", "<", "|"}
    assert_same_tensors(state, want)


def test_malformed_h5_attributes_are_checkpoint_errors(tmp_path):
    folder = copy_case(CASE, tmp_path / "src", ["tf"])
    with h5py.File(folder / FILES["tf"], "r+") as f:
        f.attrs["layer_names"] = np.array([b"\xff\xfe not utf-8"])
    with pytest.raises(CheckpointError, match=FILES["tf"]):
        load_state(folder, _spec())


# ---------------------------------------------------------------------------
# pytorch_model.bin: bounded by the file, checked by its CRCs


def test_bin_helper_writes_what_the_reader_reads(tmp_path):
    write_bin_with_tensor(tmp_path / "ok.bin", (2, 3), (3, 1), 6)
    with F.TorchFile(str(tmp_path / "ok.bin")) as reader:
        assert reader.names() == ["w"] and np.array_equal(reader.read("w"), np.zeros((2, 3), np.float32))


def test_bin_stride_zero_tensor_larger_than_its_storage_is_refused(tmp_path):
    # 4 stored bytes that would read as a 40 MB tensor (as large as a config declaring it wants)
    write_bin_with_tensor(tmp_path / "expand.bin", (10**7,), (0,), 1)
    with pytest.raises(CheckpointError, match=r"expand\.bin.*10000000 elements.*storage holds only 1"):
        F.TorchFile(str(tmp_path / "expand.bin"))


def test_bin_compressed_members_are_refused(tmp_path):
    src = FIXTURES / CASE / FILES["pt"]
    path = tmp_path / FILES["pt"]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            method = zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=method)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*data\.pkl is compressed"):
        F.TorchFile(str(path))


def test_bin_flipped_byte_in_a_tensor_fails_its_crc(tmp_path):
    folder = copy_case(CASE, tmp_path / "src", ["pt"])
    path = folder / FILES["pt"]
    with zipfile.ZipFile(path) as zf:
        member = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size > 64)
        name_len, extra_len = struct.unpack("<HH", path.read_bytes()[member.header_offset + 26 : member.header_offset + 30])
        data_at = member.header_offset + 30 + name_len + extra_len
    raw = bytearray(path.read_bytes())
    raw[data_at + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*CRC-32"):
        load_state(folder, _spec())


def test_legacy_bin_whose_storage_keys_are_not_a_list(tmp_path):
    path = tmp_path / "legacy.bin"
    parts = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}, {}, 5]
    path.write_bytes(b"".join(pickle.dumps(p, protocol=2) for p in parts))
    with pytest.raises(CheckpointError, match=r"legacy\.bin.*storage keys.*expected a list of strings"):
        F.TorchFile(str(path))


# ---------------------------------------------------------------------------
# safetensors: what the format forbids


def _safetensors(header: dict, data: bytes, raw_header: bytes | None = None) -> bytes:
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob + data


def _f32(shape, begin, end):
    return {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, end]}


HOSTILE_HEADERS = {
    # two tensors over the same bytes: b would load a's values
    "overlap": ({"a": _f32([2], 0, 8), "b": _f32([2], 4, 12)}, 16),
    # data starting after a gap: the bytes before it belong to nothing
    "shifted": ({"a": _f32([2], 4, 12)}, 12),
    "gap": ({"a": _f32([1], 0, 4), "b": _f32([1], 8, 12)}, 12),
    "metadata_not_a_dict": ({"__metadata__": ["format", "pt"], "a": _f32([1], 0, 4)}, 4),
}
HUGE_NUMBER = b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}'


@pytest.mark.parametrize("kind", [*HOSTILE_HEADERS, "duplicate", "deep_json", "huge_number"])
def test_safetensors_headers_the_format_forbids(tmp_path, kind):
    path = tmp_path / "model.safetensors"
    if kind == "duplicate":
        entry = json.dumps(_f32([1], 0, 4))
        path.write_bytes(_safetensors({}, bytes(4), f'{{"a":{entry},"a":{entry}}}'.encode()))
    elif kind == "deep_json":
        path.write_bytes(_safetensors({}, b"", b"[" * 100_000 + b"]" * 100_000))
    elif kind == "huge_number":
        path.write_bytes(_safetensors({}, bytes(4), HUGE_NUMBER))
    else:
        header, nbytes = HOSTILE_HEADERS[kind]
        path.write_bytes(_safetensors(header, bytes(nbytes)))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        with F.SafetensorsFile(str(path)) as reader:
            reader.read_all()


# ---------------------------------------------------------------------------
# Sharded indexes


@pytest.mark.parametrize("bad", [["model-00001-of-00002.safetensors"], 3, None, {"file": "x"}])
def test_index_whose_weight_map_values_are_not_strings(tmp_path, bad):
    folder = copy_case(CASE, tmp_path / "src", [])
    convert_checkpoint(FIXTURES / CASE, folder, "safetensors", shard_size="60KB", progress=False, src_fmt="safetensors")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = bad
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json.*expected"):
        load_state(folder, _spec())


def test_index_with_deep_json(tmp_path):
    folder = copy_case(CASE, tmp_path / "src", [])
    (folder / "model.safetensors.index.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"index\.json: corrupt index"):
        load_state(folder, _spec())


# ---------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda c: c["encoder"].update(vocab_size=None), "vocab_size"),
        (lambda c: c.update(encoder=""), "encoder"),
        (lambda c: c["decoder"].update(layer_norm_eps="1e-12"), "layer_norm_eps"),
        (lambda c: c["encoder"].update(hidden_size=float("nan")), "hidden_size"),
        (lambda c: c["decoder"].update(num_hidden_layers=2.0), "num_hidden_layers"),
        (lambda c: c.update(decoder_start_token_id="3"), "decoder_start_token_id"),
        (lambda c: c.update(tie_encoder_decoder="yes"), "tie_encoder_decoder"),
    ],
)
def test_config_values_of_the_wrong_type(tmp_path, edit, key):
    folder = copy_case(CASE, tmp_path / "src", [])
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=rf"config\.json.*{key}.*expected"):
        EncoderDecoderConfig.from_pretrained(folder)


@pytest.mark.parametrize(
    "key,value",
    [("decoder_start_token_id", "3"), ("num_beams", None), ("max_length", 2.5), ("eos_token_id", [1, "2"]),
     ("temperature", float("nan")), ("do_sample", 1), ("bad_words_ids", [[]])],
)
def test_generation_config_values_of_the_wrong_type(tmp_path, key, value):
    folder = copy_case(CASE, tmp_path / "src", [])
    data = json.loads((folder / "generation_config.json").read_text())
    data[key] = value
    (folder / "generation_config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"generation_config\.json.*{key}.*expected"):
        GenerationConfig.from_pretrained(folder)


def test_layer_count_is_bounded_by_the_files_before_the_table_is_built(tmp_path):
    folder = copy_case(CASE, tmp_path / "src", ["safetensors"])
    config = json.loads((folder / "config.json").read_text())
    config["decoder"]["num_hidden_layers"] = 10**12  # building its table would not finish
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"decoder declares 1000000000000 layers.*holds only \d+ tensors"):
        convert_checkpoint(folder, tmp_path / "out", "pt", progress=False)
    with pytest.raises(CheckpointError, match="1000000000000 layers"):
        load_state(folder, EncoderDecoderConfig.from_pretrained(folder))
    assert cli.main(["inspect", str(folder)]) == cli.EXIT_BAD_INPUT


# ---------------------------------------------------------------------------
# Non-finite weights


def _with_nan(tmp_path) -> tuple:
    from safetensors.numpy import save_file

    folder = copy_case(CASE, tmp_path / "nan", [])
    tensors = read_native(FIXTURES / CASE, "safetensors")
    name = "decoder.bert.encoder.layer.0.output.dense.weight"
    tensors[name] = tensors[name].copy()
    tensors[name][1, 2] = np.nan
    save_file(tensors, str(folder / FILES["safetensors"]), {"format": "pt"})
    return folder, name


def test_loading_non_finite_weights_warns_with_their_names(tmp_path, caplog):
    folder, name = _with_nan(tmp_path)
    with caplog.at_level(logging.WARNING, logger="encdec"):
        state, _ = load_state(folder, _spec())
    assert np.isnan(state[name]).sum() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and name in warnings[0] and "NaN" in warnings[0] and "model.safetensors" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="encdec"):
        load_state(FIXTURES / CASE, _spec())
    assert not caplog.records


def test_inspect_lists_non_finite_tensors(tmp_path, capsys):
    folder, name = _with_nan(tmp_path)
    assert cli.main(["inspect", str(folder)]) == cli.EXIT_PROBLEMS
    out = capsys.readouterr().out
    assert "1 non-finite" in out and name in out


# ---------------------------------------------------------------------------
# The CLI: one line, a documented exit code


def test_cli_bad_checkpoint_exits_3_with_one_line(tmp_path, capsys):
    folder = copy_case(CASE, tmp_path / "src", ["safetensors"])
    (folder / FILES["safetensors"]).write_bytes(_safetensors(*HOSTILE_HEADERS["overlap"][:1], bytes(16)))
    assert cli.main(["convert", str(folder), str(tmp_path / "out"), "--to", "pt"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("encdec: error: ") and err.count("\n") == 1 and "model.safetensors" in err
    assert cli.main(["--debug", "convert", str(folder), str(tmp_path / "out"), "--to", "pt"]) == cli.EXIT_BAD_INPUT
    assert "Traceback" in capsys.readouterr().err


def test_cli_full_disk_exits_4_with_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from encdec.weights.formats import sharding

    def full(path, tensors):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setitem(sharding._WRITERS, "pt", full)
    folder = copy_case(CASE, tmp_path / "src", ["safetensors"])
    assert cli.main(["convert", str(folder), str(tmp_path / "out"), "--to", "pt"]) == cli.EXIT_IO
    err = capsys.readouterr().err
    assert err.startswith("encdec: error: ") and err.count("\n") == 1
    assert "No space left on device" in err and "pytorch_model.bin" in err
    assert not (tmp_path / "out").exists()


def test_exit_codes_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in (cli.EXIT_PROBLEMS, cli.EXIT_USAGE, cli.EXIT_BAD_INPUT, cli.EXIT_IO):
        assert f"  {code} " in out


def test_every_encdec_error_names_the_file(tmp_path):
    """Truncations of each format: the error names the file (what the fuzz test relies on)."""
    for fmt in ("safetensors", "pt", "tf", "flax"):
        folder = copy_case(CASE, tmp_path / fmt, [fmt])
        path = folder / FILES[fmt]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(EncdecError, match=FILES[fmt]):
            load_state(folder, _spec())



def test_cli_says_which_stale_weights_it_removed(tmp_path, capsys):
    src = copy_case(CASE, tmp_path / "src", ["safetensors"])
    dst = copy_case("bert2gpt2", tmp_path / "dst", ["safetensors", "pt"])
    assert cli.main(["convert", str(src), str(dst), "--to", "flax"]) == 0
    out = capsys.readouterr().out
    assert "removed the weights of the checkpoint" in out and "model.safetensors, pytorch_model.bin" in out
    assert sorted(f for f in os.listdir(dst) if f not in ("config.json", "generation_config.json")) == [FILES["flax"]]
