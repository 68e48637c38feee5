"""Conversion between the four formats, against the files transformers wrote.

Every comparison reads files through the formats' own libraries (core_refs),
so a conversion is checked against transformers' bytes, not against itself.
"""

from __future__ import annotations

import json
import os
import re

import ml_dtypes
import numpy as np
import pytest

from core_refs import (
    CASES,
    FILES,
    FIXTURES,
    FORMATS,
    assert_same_tensors,
    case_formats,
    copy_case,
    read_native,
    weight_files,
)
from encdec.config import EncoderDecoderConfig
from encdec.errors import CheckpointError
from encdec.weights import convert_checkpoint, load_state, model_spec, save_state
from encdec.weights.names import init_weights

PAIRS = [(case, src, dst) for case in CASES for src in case_formats(case) for dst in case_formats(case) if src != dst]


@pytest.mark.parametrize("case,src,dst", PAIRS, ids=[f"{c}-{s}-to-{d}" for c, s, d in PAIRS])
def test_conversion_gives_what_transformers_wrote(tmp_path, case, src, dst):
    source = copy_case(case, tmp_path / "src", [src])
    convert_checkpoint(source, tmp_path / "out", dst, progress=False)
    assert weight_files(tmp_path / "out") == [FILES[dst]]
    assert_same_tensors(read_native(tmp_path / "out", dst), read_native(FIXTURES / case, dst), f"{src}->{dst}")


@pytest.mark.parametrize("case,start", [(c, f) for c in CASES for f in case_formats(c)])
def test_round_trip_through_every_format_is_bit_exact(tmp_path, case, start):
    order = [start] + [f for f in FORMATS if f != start] + [start]
    current = copy_case(case, tmp_path / "0", [start])
    for i, fmt in enumerate(order[1:], start=1):
        convert_checkpoint(current, tmp_path / str(i), fmt, progress=False)
        current = tmp_path / str(i)
    assert_same_tensors(read_native(current, start), read_native(FIXTURES / case, start), " -> ".join(order))


def test_converted_safetensors_is_byte_identical_to_transformers(tmp_path):
    # Beyond equal tensors: the same header order, padding and metadata.
    for case in CASES:
        for src in case_formats(case):
            convert_checkpoint(copy_case(case, tmp_path / case / src, [src]), tmp_path / case / "out", "safetensors", progress=False)
            got = (tmp_path / case / "out" / "model.safetensors").read_bytes()
            assert got == (FIXTURES / case / "model.safetensors").read_bytes(), (case, src)


def test_converted_msgpack_is_byte_identical_to_transformers(tmp_path):
    for case in CASES:
        if "flax" not in case_formats(case):
            continue
        convert_checkpoint(copy_case(case, tmp_path / case, ["tf"]), tmp_path / case / "out", "flax", progress=False)
        got = (tmp_path / case / "out" / "flax_model.msgpack").read_bytes()
        assert got == (FIXTURES / case / "flax_model.msgpack").read_bytes(), case


def test_converted_h5_has_keras_save_weights_layout(tmp_path):
    """Root and group attributes of the same HDF5 types as the files Keras wrote."""
    import h5py

    case = "bert2bert_proj"
    convert_checkpoint(copy_case(case, tmp_path / "src", ["safetensors"]), tmp_path / "out", "tf", progress=False)

    def layout(path):
        with h5py.File(path, "r") as f:
            out = {}
            for obj_name in ["/"] + list(f.attrs["layer_names"]) + ["top_level_model_weights"]:
                obj = f[obj_name]
                for attr in obj.attrs:
                    t = obj.attrs.get_id(attr).get_type()
                    value = obj.attrs[attr]
                    if attr == "weight_names":
                        value = sorted(v.split("/", 1)[1] for v in value)  # the root scope is the instance name
                    if attr == "keras_version":
                        value = "<version>"
                    out[(obj_name, attr)] = (type(t).__name__, getattr(t, "get_cset", lambda: None)(), np.asarray(value).tolist())
            return out

    assert layout(tmp_path / "out" / "tf_model.h5") == layout(FIXTURES / case / "tf_model.h5")


@pytest.mark.parametrize("target", FORMATS)
@pytest.mark.parametrize("source", FORMATS)
def test_sharded_output_and_input(tmp_path, source, target):
    case = "bert2gpt2"
    convert_checkpoint(copy_case(case, tmp_path / "src", [source]), tmp_path / "sharded", target, shard_size="60KB", progress=False)
    files = weight_files(tmp_path / "sharded")
    index_file = FILES[target] + ".index.json"
    assert index_file in files and len(files) >= 4, files
    index = json.loads((tmp_path / "sharded" / index_file).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == sorted(f for f in files if f != index_file)
    want = read_native(FIXTURES / case, target)
    stored = read_native(FIXTURES / case, "safetensors")
    for shard in shards:  # tensor bytes per shard stay under the limit (tied .bin copies share storage)
        held = [re.sub(r"^tf_encoder_decoder_model/(.*):0$", r"\1", k) for k, v in index["weight_map"].items() if v == shard]
        nbytes = sum(want[k].nbytes for k in held if target != "pt" or k in stored)
        assert 0 < nbytes <= 60_000, (shard, nbytes)
    assert_same_tensors(read_native(tmp_path / "sharded", target), want, f"sharded {target}")
    # transformers' index keys: full TF weight names for h5, native names otherwise
    keys = set(index["weight_map"])
    if target == "tf":
        assert keys == {f"tf_encoder_decoder_model/{n}:0" for n in want}
    else:
        assert keys == set(want)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in stored.values())
    # and back to one file in another format
    back = FORMATS[(FORMATS.index(target) + 1) % 4]
    convert_checkpoint(tmp_path / "sharded", tmp_path / "single", back, progress=False)
    assert_same_tensors(read_native(tmp_path / "single", back), read_native(FIXTURES / case, back), f"{target} shards -> {back}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_round_trips_bit_exactly(tmp_path, dtype):
    case = "bert2bert"
    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    original = read_native(FIXTURES / case, "safetensors")
    want = {k: v.astype(np_dtype) for k, v in original.items()}
    convert_checkpoint(copy_case(case, tmp_path / "src", ["safetensors"]), tmp_path / "0", "safetensors", dtype=dtype, progress=False)
    assert_same_tensors(read_native(tmp_path / "0", "safetensors"), want, "cast")
    current = tmp_path / "0"
    for i, fmt in enumerate(["pt", "tf", "flax", "safetensors"], start=1):
        shard = "40KB" if i % 2 else None
        convert_checkpoint(current, tmp_path / str(i), fmt, shard_size=shard, progress=False)
        current = tmp_path / str(i)
        got = read_native(current, fmt)
        assert {v.dtype for v in got.values()} == {np_dtype}, fmt
    assert_same_tensors(read_native(current, "safetensors"), want, f"{dtype} round trip")


def test_conversion_keeps_other_files_and_drops_stale_weights(tmp_path):
    """Into a folder that held another model: its weights of every format go, and the report says so."""
    case = "bert2bert"
    dst = tmp_path / "dst"
    convert_checkpoint(copy_case(case, tmp_path / "src", ["safetensors"]), dst, "tf", shard_size="50KB", progress=False)
    assert len([f for f in weight_files(dst) if f.startswith("tf_model-")]) > 1
    (dst / "tokenizer.json").write_text("{}")
    # another model's weights, which from_pretrained would prefer over the converted tf_model.h5
    (dst / "model.safetensors").write_bytes((FIXTURES / "bert2gpt2" / "model.safetensors").read_bytes())
    report = convert_checkpoint(tmp_path / "src", dst, "tf", progress=False)
    assert weight_files(dst) == ["tf_model.h5"]
    assert report.removed == ["model.safetensors"] and "model.safetensors" in report.summary()
    assert (dst / "tokenizer.json").read_text() == "{}"
    assert_same_tensors(read_native(dst, "tf"), read_native(FIXTURES / case, "tf"))
    state, loaded = load_state(dst, model_spec(EncoderDecoderConfig.from_pretrained(dst)))
    assert loaded.format == "tf"


def test_conversion_in_place_adds_a_format(tmp_path):
    folder = copy_case("bert2gpt2", tmp_path / "ckpt", ["safetensors"])
    convert_checkpoint(folder, folder, "flax", progress=False)
    assert weight_files(folder) == ["flax_model.msgpack", "model.safetensors"]
    assert_same_tensors(read_native(folder, "flax"), read_native(FIXTURES / "bert2gpt2", "flax"))


def test_failed_conversion_leaves_the_target_untouched(tmp_path, monkeypatch):
    from encdec.weights.formats import sharding as formats

    dst = copy_case("bert2bert", tmp_path / "dst", ["pt"])
    before = {f: (dst / f).read_bytes() for f in os.listdir(dst)}

    def explode(path, tensors):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setitem(formats._WRITERS, "pt", explode)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(copy_case("bert2bert", tmp_path / "src", ["tf"]), dst, "pt", progress=False)
    assert {f: (dst / f).read_bytes() for f in os.listdir(dst)} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_save_state_and_load_state_round_trip(tmp_path):
    config = EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2bert_proj")
    spec = model_spec(config)
    state = init_weights(config, seed=3)
    for fmt in FORMATS:
        files = save_state(state, spec, tmp_path / fmt, fmt)
        assert files == [FILES[fmt]]
        loaded, report = load_state(tmp_path / fmt, spec)
        assert report.format == fmt and report.missing == []
        assert sorted(report.used) == sorted(state)
        assert_same_tensors(loaded, state, fmt)


def test_load_state_reads_what_transformers_wrote(tmp_path):
    """The canonical state from every format equals the PyTorch state dict transformers saved."""
    for case in CASES:
        spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / case))
        want = read_native(FIXTURES / case, "safetensors")
        for fmt in case_formats(case):
            state, report = load_state(FIXTURES / case, spec, fmt=fmt)
            assert_same_tensors(state, want, f"{case} {fmt}")
            tied = {t.name for t in spec.tied}
            assert {n for n, _ in report.ignored} == (tied if fmt == "pt" else set())


def test_load_state_strictness(tmp_path):
    case = "bert2bert"
    spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / case))
    tensors = read_native(FIXTURES / case, "safetensors")
    from safetensors.numpy import save_file

    # an unknown tensor is an error naming it
    folder = tmp_path / "extra"
    folder.mkdir()
    save_file({**tensors, "decoder.bert.surprise": np.zeros(3, np.float32)}, str(folder / "model.safetensors"), {"format": "pt"})
    with pytest.raises(CheckpointError, match=r"decoder\.bert\.surprise"):
        load_state(folder, spec)

    # a buffer transformers may save is ignored with a reason
    folder = tmp_path / "buffer"
    folder.mkdir()
    save_file({**tensors, "encoder.embeddings.position_ids": np.arange(64)[None]}, str(folder / "model.safetensors"))
    _, report = load_state(folder, spec)
    assert [n for n, _ in report.ignored] == ["encoder.embeddings.position_ids"]

    # a missing parameter is an error, unless allowed; then it is reported
    folder = tmp_path / "missing"
    folder.mkdir()
    name = "decoder.bert.encoder.layer.0.crossattention.self.query.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape(name)):
        load_state(folder, spec)
    state, report = load_state(folder, spec, allow_missing=lambda n: "crossattention" in n)
    assert report.missing == [name] and name not in state
    assert name in report.summary()

    # an integer tensor where a parameter belongs
    folder = tmp_path / "int"
    folder.mkdir()
    bad = dict(tensors, **{"encoder.pooler.dense.bias": np.zeros(32, np.int64)})
    save_file(bad, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"encoder\.pooler\.dense\.bias.*int64"):
        load_state(folder, spec)


def test_config_that_contradicts_the_weights(tmp_path):
    """A changed size names the tensor, both shapes and the file, for every format."""
    case = "bert2bert"
    for fmt in case_formats(case):
        folder = copy_case(case, tmp_path / fmt, [fmt])
        config = json.loads((folder / "config.json").read_text())
        config["encoder"]["intermediate_size"] = 40
        (folder / "config.json").write_text(json.dumps(config))
        native = read_native(FIXTURES / case, fmt)
        name = {
            "safetensors": "encoder.encoder.layer.0.intermediate.dense.weight",
            "pt": "encoder.encoder.layer.0.intermediate.dense.weight",
            "tf": "encoder/bert/encoder/layer_._0/intermediate/dense/kernel",
            "flax": "encoder/encoder/layer/0/intermediate/dense/kernel",
        }[fmt]
        file_shape = list(native[name].shape)
        hidden = config["encoder"]["hidden_size"]
        implied = [40, hidden] if fmt in ("safetensors", "pt") else [hidden, 40]
        with pytest.raises(CheckpointError) as err:
            convert_checkpoint(folder, tmp_path / f"{fmt}-out", "safetensors", progress=False)
        message = str(err.value)
        assert name in message and FILES[fmt] in message
        assert str(file_shape) in message and str(implied) in message
        assert not (tmp_path / f"{fmt}-out").exists()


def test_generation_config_is_carried(tmp_path):
    convert_checkpoint(copy_case("bert2gpt2", tmp_path / "src", ["tf"]), tmp_path / "out", "pt", progress=False)
    for name in ("config.json", "generation_config.json"):
        original = json.loads((FIXTURES / "bert2gpt2" / name).read_text())
        written = json.loads((tmp_path / "out" / name).read_text())
        for key, value in original.items():
            if isinstance(value, dict):
                for k, v in value.items():
                    assert written[key][k] == v, (name, key, k)
            else:
                assert written[key] == value, (name, key)


def test_convert_without_generation_config_writes_one(tmp_path):
    folder = copy_case("bert2bert", tmp_path / "src", ["safetensors"])
    os.remove(folder / "generation_config.json")
    convert_checkpoint(folder, tmp_path / "out", "flax", progress=False)
    written = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert written["decoder_start_token_id"] == config["decoder_start_token_id"]
    assert written["pad_token_id"] == config["pad_token_id"]


def test_a_tied_name_alone_supplies_its_source(tmp_path):
    """A file that kept only the tied name of a shared pair still loads (the tied copy is the value)."""
    from safetensors.numpy import save_file

    case = "bert2gpt2"
    spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / case))
    tensors = read_native(FIXTURES / case, "safetensors")
    folder = copy_case(case, tmp_path / "only-tied", [])
    wte = tensors.pop("decoder.transformer.wte.weight")
    save_file({**tensors, "decoder.lm_head.weight": wte}, str(folder / "model.safetensors"))
    state, report = load_state(folder, spec)
    assert np.array_equal(state["decoder.transformer.wte.weight"], wte)
    assert report.ignored == [] and report.missing == [] and "decoder.transformer.wte.weight" in report.used


def test_tf_and_flax_named_safetensors_load(tmp_path):
    """transformers' TF and Flax classes wrote safetensors with their own names (format "tf" / "flax")."""
    from safetensors.numpy import save_file

    case = "bert2bert_proj"
    spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / case))
    want = read_native(FIXTURES / case, "safetensors")
    tf = {f"{k}:0": v for k, v in read_native(FIXTURES / case, "tf").items()}  # strip_model_name_and_prefix(w.name)
    flax = {k.replace("/", "."): v for k, v in read_native(FIXTURES / case, "flax").items()}  # flatten_dict(sep=".")
    for fmt, tensors in (("tf", tf), ("flax", flax)):
        folder = copy_case(case, tmp_path / fmt, [])
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": fmt})
        state, _ = load_state(folder, spec)
        assert_same_tensors(state, want, fmt)


def test_to_native_and_from_native_invert_each_other():
    from encdec.weights import from_native, to_native

    config = EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2gpt2")
    spec = model_spec(config)
    state = read_native(FIXTURES / "bert2gpt2", "safetensors")
    for layout, fmt in (("tf", "tf"), ("flax", "flax"), ("pt", "safetensors")):
        native = to_native(state, spec, layout)
        assert_same_tensors(native, read_native(FIXTURES / "bert2gpt2", fmt), layout)
        assert_same_tensors(from_native(native, spec, layout), state, layout)
    with pytest.raises(CheckpointError, match="not a tf parameter name"):
        from_native({"encoder/nope": np.zeros(1)}, spec, "tf")


def test_reshard_in_place(tmp_path):
    folder = copy_case("bert2bert", tmp_path / "ckpt", ["safetensors", "pt"])
    convert_checkpoint(folder, folder, "safetensors", shard_size="50KB", progress=False)
    files = weight_files(folder)
    assert "model.safetensors" not in files and "model.safetensors.index.json" in files and "pytorch_model.bin" in files
    assert_same_tensors(read_native(folder, "safetensors"), read_native(FIXTURES / "bert2bert", "safetensors"))


