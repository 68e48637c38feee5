"""Weights in and out through the contract: from_state / canonical_state / load_canonical_state, and
save_pretrained / from_pretrained round trips (each port's own format, safetensors, shards) that
transformers reads, written atomically."""

from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np
import pytest

import encdec.weights.convert as convert
from encdec.config import GenerationConfig
from encdec.errors import CheckpointError
from encdec.weights.names import init_weights, model_spec
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import assert_close, hf_run, joined_config, random_batch, random_state, to_numpy

# Each port's own weights file; safetensors is common to all.
NATIVE = {"pt": "pytorch_model.bin", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
# bert2bert by default; the other architectures are slow (every port compiles each anew).
PAIRS = ["bert2bert"] + [pytest.param(p, marks=pytest.mark.slow) for p in ("bert2gpt2", "roberta2roberta", "bertgen2bertgen")]


def logits(port, model, config):
    b = random_batch(config, np.random.default_rng(9), 2, 7, 5, "right")
    out = port.forward(model, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       decoder_input_ids=b["decoder_input_ids"])
    return port.numpy(out.logits)


def same_state(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("variant", ["plain", "proj", "tie"])
def test_from_state_and_canonical_state_round_trip(port, variant):
    config = joined_config("bert2bert", 4, variant)
    state = random_state(config, 4)
    model = port.from_state(config, state)
    got = model.canonical_state()
    assert sorted(got) == sorted(p.name for p in model_spec(config))  # stored names only: ties left out
    same_state(got, state)


def test_the_model_and_the_states_share_no_memory(port):
    """from_state keeps copies and canonical_state returns a snapshot: changing the model later
    changes neither the state it was built from nor a state read from it before."""
    config = joined_config("bert2bert", 4)
    state = random_state(config, 4)
    kept = {name: array.copy() for name, array in state.items()}
    model = port.from_state(config, state)
    before = model.canonical_state()
    model.load_canonical_state(random_state(config, 5))
    same_state(state, kept)
    same_state(before, kept)


def test_a_config_alone_draws_init_weights_seed_0(port):
    config = joined_config("roberta2gpt2", 1, "proj")
    same_state(port.model_class()(config=config).canonical_state(), init_weights(config, seed=0))


def test_load_canonical_state_copies_into_the_model(port):
    config = joined_config("bert2gpt2", 4)
    model = port.from_state(config, random_state(config, 4))
    other = random_state(config, 5)
    model.load_canonical_state(other)
    same_state(model.canonical_state(), other)
    assert_close(f"{port.name} after load_canonical_state", logits(port, model, config),
                 logits(port, port.from_state(config, other), config))
    name = next(iter(other))
    partial = {name: other[name] + 1.0}
    model.load_canonical_state(partial, partial=True)
    np.testing.assert_array_equal(model.canonical_state()[name], partial[name])


def test_load_canonical_state_refuses_unknown_names_and_wrong_shapes(port):
    config = joined_config("bert2gpt2", 4)
    model = port.from_state(config, random_state(config, 4))
    with pytest.raises(CheckpointError, match="decoder.no_such.weight"):
        model.load_canonical_state({"decoder.no_such.weight": np.zeros(3, np.float32)}, partial=True)
    p = next(iter(model_spec(config)))
    wrong = tuple(d + 1 for d in p.shape)
    with pytest.raises(CheckpointError) as info:
        model.load_canonical_state({p.name: np.zeros(wrong, np.float32)}, partial=True)
    message = str(info.value)
    assert p.name in message and str(wrong) in message and str(tuple(p.shape)) in message, message


@pytest.mark.parametrize(
    "options,files",
    [
        ({"safe_serialization": True}, {"model.safetensors"}),
        ({"safe_serialization": False}, {"native"}),
        ({"safe_serialization": True, "max_shard_size": "20KB"}, {"model.safetensors.index.json"}),
    ],
    ids=["safetensors", "native", "safetensors-shards"],
)
@pytest.mark.parametrize("pair", PAIRS)
def test_save_load_round_trip(port, pair, options, files, tmp_path):
    config = joined_config(pair, 4)
    model = port.from_state(config, random_state(config, 4))
    model.generation_config = model.generation_config.update(num_beams=2, max_length=9)
    port.save_pretrained(model, tmp_path / "ckpt", **options)
    files = {NATIVE[port.name] if f == "native" else f for f in files}
    written = set(os.listdir(tmp_path / "ckpt"))
    assert files | {"config.json", "generation_config.json"} <= written, written
    if "max_shard_size" in options:
        assert sum(name.endswith(".safetensors") for name in written) > 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary folder left behind
    loaded = port.from_pretrained(tmp_path / "ckpt")
    same_state(loaded.canonical_state(), model.canonical_state())
    assert loaded.generation_config == model.generation_config
    np.testing.assert_array_equal(logits(port, loaded, config), logits(port, model, config))


@pytest.mark.parametrize("pair", ["bert2gpt2", pytest.param("roberta2roberta", marks=pytest.mark.slow)])
def test_transformers_loads_the_saved_safetensors(port, pair, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = joined_config(pair, 4, "proj")
    model = port.from_state(config, random_state(config, 4))
    port.save_pretrained(model, tmp_path / "ckpt", safe_serialization=True)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "ckpt").eval()
    b = random_batch(config, np.random.default_rng(9), 2, 7, 5, "right")
    expected = to_numpy(hf_run(hf, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               decoder_input_ids=b["decoder_input_ids"]).logits)
    assert_close(f"{port.name} {pair} in transformers", expected, logits(port, model, config))


def test_a_failed_save_leaves_the_previous_checkpoint_whole(port, tmp_path, monkeypatch):
    config = joined_config("bert2bert", 4)
    model = port.from_state(config, random_state(config, 4))
    target = tmp_path / "ckpt"
    port.save_pretrained(model, target, safe_serialization=True)
    before = {name: (target / name).read_bytes() for name in os.listdir(target)}
    real_save_state = convert.save_state

    def crash_after_writing(*args, **kwargs):
        real_save_state(*args, **kwargs)  # the new weights are on disk...
        raise OSError("disk full")  # ...and then the save fails

    monkeypatch.setattr(convert, "save_state", crash_after_writing)
    # The folder writer may hold its own reference to save_state.
    module = importlib.import_module("encdec.weights.pretrained") if importlib.util.find_spec(
        "encdec.weights.pretrained") else None
    if module is not None and hasattr(module, "save_state"):
        monkeypatch.setattr(module, "save_state", crash_after_writing)
    changed = port.from_state(config, random_state(config, 5))
    with pytest.raises(OSError, match="disk full"):
        port.save_pretrained(changed, target, safe_serialization=True)
    assert {name: (target / name).read_bytes() for name in os.listdir(target)} == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    same_state(port.from_pretrained(target).canonical_state(), model.canonical_state())


def test_saving_another_format_drops_the_old_weights(port, tmp_path):
    config = joined_config("bert2bert", 4)
    model = port.from_state(config, random_state(config, 4))
    port.save_pretrained(model, tmp_path, safe_serialization=True)
    (tmp_path / "README.md").write_text("kept")
    port.save_pretrained(model, tmp_path, safe_serialization=False)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["README.md", "config.json", "generation_config.json", NATIVE[port.name]]
    )


def test_the_generation_config_file_is_read(port, tmp_path):
    config = joined_config("bert2bert", 4)
    model = port.from_state(config, random_state(config, 4))
    model.generation_config = model.generation_config.update(num_beams=2, max_length=9)
    port.save_pretrained(model, tmp_path / "ckpt", safe_serialization=True)
    assert port.from_pretrained(tmp_path / "ckpt").generation_config.num_beams == 2
    os.remove(tmp_path / "ckpt" / "generation_config.json")
    fallback = port.from_pretrained(tmp_path / "ckpt")
    assert fallback.generation_config == GenerationConfig.from_model_config(fallback.config)
