"""The canonical state's check and the Flax params tree bridge (`encdec.weights.state`), numpy only.

Expected trees come from transformers: the bert2bert fixture holds the same model
saved by transformers' PyTorch (`model.safetensors`, canonical) and Flax
(`flax_model.msgpack`, nested) classes, read by the independent readers of core_refs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import msgpack
from core_refs import FIXTURES, _flatten, _flax_ext, _unchunk, read_flax, read_safetensors

from encdec.config import BertConfig, EncoderDecoderConfig, read_json
from encdec.errors import CheckpointError, ConfigError
from encdec.weights.names import init_weights, model_spec, vocab_changes
from encdec.weights.state import check_state, count_parameters, nested_leaf, nested_state, put_nested, tied_flax_paths, with_tied


def _tiny(tie: bool = False) -> EncoderDecoderConfig:
    arch = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=8, max_position_embeddings=16)
    return EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch, tie_encoder_decoder=tie)


@pytest.fixture(scope="module")
def hf_bert2bert():
    folder = FIXTURES / "bert2bert"
    config = EncoderDecoderConfig.from_dict(read_json(folder / "config.json"))
    return model_spec(config), read_safetensors(folder), read_flax(folder)


def test_put_nested_builds_transformers_flax_tree(hf_bert2bert):
    spec, pt_state, flax_flat = hf_bert2bert
    state = {p.name: pt_state[p.name] for p in spec}  # the stored names (the file also holds tied ones)
    placed = []
    tree = put_nested({}, spec, state, place=lambda a: placed.append(a) or a)
    flat = _flatten(tree)
    assert set(flat) == set(flax_flat)
    for path, value in flax_flat.items():
        np.testing.assert_array_equal(flat[path], value, err_msg=path)
    assert len(placed) == len(spec) and all(a.flags.c_contiguous for a in placed)


def test_nested_state_reads_transformers_flax_tree(hf_bert2bert):
    spec, pt_state, _ = hf_bert2bert
    raw = (FIXTURES / "bert2bert" / "flax_model.msgpack").read_bytes()
    state = nested_state(spec, _unchunk(msgpack.unpackb(raw, ext_hook=_flax_ext, raw=False, strict_map_key=False)))
    assert set(state) == {p.name for p in spec}
    for name, value in state.items():
        np.testing.assert_array_equal(value, pt_state[name], err_msg=name)
        assert value.flags.writeable


def test_put_nested_keeps_the_tree_and_the_leaf_dtypes():
    config = _tiny()
    spec = model_spec(config)
    tree = put_nested({}, spec, init_weights(config, seed=0))
    tree["encoder"]["pooler"]["dense"]["bias"] = np.zeros(8, np.float16)
    name = "encoder.pooler.dense.bias"
    new = put_nested(tree, spec, {name: np.full(8, 2.0, np.float64)}, partial=True)
    assert new["encoder"]["pooler"]["dense"]["bias"].dtype == np.float16  # the replaced leaf's dtype
    np.testing.assert_array_equal(new["encoder"]["pooler"]["dense"]["bias"], 2.0)
    assert not tree["encoder"]["pooler"]["dense"]["bias"].any()  # the given tree is not changed
    kernel = ("encoder", "pooler", "dense", "kernel")
    assert _flatten(new)["/".join(kernel)] is _flatten(tree)["/".join(kernel)]  # other leaves shared
    assert put_nested({}, spec, {name: np.ones(8, np.float64)}, partial=True)["encoder"]["pooler"]["dense"][
        "bias"].dtype == np.float64  # a new path keeps the value's dtype


def test_check_state_refuses_what_does_not_fit():
    config = _tiny()
    spec = model_spec(config)
    state = init_weights(config, seed=0)
    check_state(spec, state)
    name = "decoder.bert.embeddings.word_embeddings.weight"
    message = f"{name}: the state's tensor has shape (3, 2); the model's has (20, 8)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        check_state(spec, dict(state, **{name: np.zeros((3, 2))}))
    with pytest.raises(CheckpointError, match=r"^encoder\.no_such\.weight: not a stored parameter of this model"):
        check_state(spec, {"encoder.no_such.weight": np.zeros(2)}, partial=True)
    tied = "decoder.cls.predictions.decoder.weight"
    with pytest.raises(CheckpointError, match=rf"^{re.escape(tied)} is tied to {re.escape(name)} .*expected the "
                                              rf"stored name {re.escape(name)} only$"):
        check_state(spec, {tied: state[name]}, partial=True)
    with pytest.raises(CheckpointError, match=rf"^the state lacks 1 stored tensor\(s\), e\.g\. \['{name}'\]"):
        check_state(spec, {k: v for k, v in state.items() if k != name})
    check_state(spec, {name: state[name]}, partial=True)
    with pytest.raises(CheckpointError, match="the state's tensor has shape"):  # checked before anything is built
        put_nested({}, spec, {name: np.zeros(3)}, partial=True)


def test_nested_leaf_refuses_missing_and_misshapen_entries():
    config = _tiny()
    spec = model_spec(config)
    tree = put_nested({}, spec, init_weights(config, seed=0))
    p = spec.by_name["encoder.pooler.dense.weight"]
    assert nested_leaf(tree, p) is tree["encoder"]["pooler"]["dense"]["kernel"]
    del tree["encoder"]["pooler"]["dense"]["kernel"]
    with pytest.raises(CheckpointError, match="params have no entry encoder/pooler/dense/kernel"):
        nested_state(spec, tree)
    tree["encoder"]["pooler"]["dense"]["kernel"] = np.zeros((8, 3))
    with pytest.raises(CheckpointError, match=r"params entry encoder/pooler/dense/kernel has shape \(8, 3\); "
                                              r"expected \(8, 8\)"):
        nested_state(spec, tree)


def test_tied_paths_share_the_encoder_leaf():
    spec = model_spec(_tiny(tie=True))
    paths = dict(tied_flax_paths(spec))
    word = ("decoder", "bert", "embeddings", "word_embeddings", "embedding")
    assert paths[word] == ("encoder", "embeddings", "word_embeddings", "embedding")
    # The decoder's body shares every encoder tensor but the pooler, which it has not.
    assert len(paths) == len([p for p in spec if p.name.startswith("encoder.")]) - 2
    assert not any(target[:2] == ("decoder", "cls") for target in paths)  # the LM head's tie is the modules'
    assert tied_flax_paths(model_spec(_tiny())) == []

    leaf = np.ones(3)
    tree = {"encoder": {"a": leaf}, "decoder": {"b": {"c": 1}}}
    full = with_tied(tree, [(("decoder", "b", "a"), ("encoder", "a"))])
    assert full["decoder"]["b"]["a"] is leaf and full["decoder"]["b"]["c"] == 1
    assert tree == {"encoder": {"a": leaf}, "decoder": {"b": {"c": 1}}}  # the given tree is not changed
    assert with_tied(tree, []) is tree


def test_spec_lookups_for_tied_names():
    spec = model_spec(_tiny(tie=True))
    word = "encoder.embeddings.word_embeddings.weight"
    copies = spec.decoder_copies()
    assert copies[word] == "decoder.bert.embeddings.word_embeddings.weight"
    assert "encoder.pooler.dense.weight" not in copies
    assert sorted(spec.names_of(word)) == sorted(
        [word, "decoder.bert.embeddings.word_embeddings.weight", "decoder.cls.predictions.decoder.weight"])
    assert model_spec(_tiny()).decoder_copies() == {}


@pytest.mark.parametrize("bad", [0, -3, 2.0, "8", None])
def test_vocab_changes(bad):
    config = _tiny()
    assert vocab_changes(config, 21) and not vocab_changes(config, 20)
    with pytest.raises(ConfigError, match=rf"new_num_tokens must be a positive int, got {re.escape(repr(bad))}"):
        vocab_changes(config, bad)


def test_count_parameters_counts_each_stored_tensor_once():
    config = _tiny(tie=True)
    spec = model_spec(config)
    sizes = {p.name: int(np.prod(p.shape)) for p in spec}
    assert count_parameters(spec) == sum(sizes.values()) == spec.num_parameters()
    tables = [p.name for p in spec if p.kind == "embedding"]
    assert tables and count_parameters(spec, exclude_embeddings=True) == sum(sizes.values()) - sum(
        sizes[n] for n in tables)
    pooler = {n for n in sizes if ".pooler." in n}
    assert pooler
    trainable = set(sizes) - pooler
    assert count_parameters(spec, trainable=trainable) == sum(sizes[n] for n in trainable)
    assert count_parameters(spec, True, trainable) == sum(sizes[n] for n in trainable if n not in tables)
