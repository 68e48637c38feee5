"""`save_pretrained` / `from_pretrained` on the architecture classes (`BertModel`, `GPT2LMHeadModel`, ...)
in every port: transformers 5's folders load, the ports' folders load in transformers 5, the halves of an
encoder-decoder saved alone join into the same model, and bad folders are refused."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest

from encdec.config import CONFIG_NAME, EncoderDecoderConfig
from encdec.errors import ConfigError
from encdec.weights.component import read_component_folder, write_component_folder
from encdec.weights.names import init_weights
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import PAIRS, arch_config, assert_close, hf_run, quiet_transformers, random_state, to_numpy

PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}
NATIVE = {"pt": "pytorch_model.bin", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
# (class, model_type, is a decoder): the decoders are causal, without cross-attention here.
CLASSES = {
    "BertModel": ("bert", False),
    "BertLMHeadModel": ("bert", True),
    "GPT2LMHeadModel": ("gpt2", True),
    "RobertaForCausalLM": ("roberta", True),
    "GPT2Model": ("gpt2", False),
}
SLOW = ("RobertaForCausalLM", "GPT2Model")


# transformers' Flax name of the BERT decoder (PyTorch and TF: BertLMHeadModel).
FRAMEWORK_NAMES = {("flax", "BertLMHeadModel"): "BertForCausalLM"}


def arch_class(port, name: str):
    name = FRAMEWORK_NAMES.get((port.name, name), name)
    return getattr(importlib.import_module(f"encdec.{port.name}"), PREFIX[port.name] + name)


def outputs(port, model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The logits of a model with an LM head, else the last hidden state, as numpy."""
    with port.no_grad():
        out = model(**port.tensors(input_ids=ids, attention_mask=mask))
    return port.numpy(out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state)


def transformers_model(name: str, model_type: str, decoder: bool, seed: int):
    """transformers 5's class with random weights, biases and LayerNorms perturbed so a dropped one shows."""
    import torch
    import transformers

    quiet_transformers()
    config = arch_config(model_type, np.random.default_rng(seed), is_decoder=decoder)
    torch.manual_seed(seed)
    model = getattr(transformers, name)(transformers.AutoConfig.for_model(**config.to_dict())).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model


def batch(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(4, vocab, (2, 6))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    return ids, mask


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CLASSES]
)
def test_folders_go_both_ways_between_transformers_and_the_port(port, name, tmp_path):
    transformers = pytest.importorskip("transformers")
    model_type, decoder = CLASSES[name]
    reference = transformers_model(name, model_type, decoder, seed=len(name))
    reference.save_pretrained(tmp_path / "hf")
    ids, mask = batch(reference.config.vocab_size)
    field = "logits" if decoder else "last_hidden_state"
    expected = to_numpy(getattr(hf_run(reference, input_ids=ids, attention_mask=mask), field))

    # transformers' own folder, in the port.
    model = arch_class(port, name).from_pretrained(tmp_path / "hf")
    got = outputs(port, model, ids, mask)
    assert_close(f"{name} from transformers' folder", got, expected)

    # The port's safetensors folder, in transformers: every weight found, no other.
    model.save_pretrained(tmp_path / "safe", safe_serialization=True)
    loaded, info = getattr(transformers, name).from_pretrained(tmp_path / "safe", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert_close(f"transformers' {name} from the port's folder",
                 to_numpy(getattr(hf_run(loaded.eval(), input_ids=ids, attention_mask=mask), field)), expected)

    # The port's own format (by default in TF and Flax, as their composites), back in the port.
    model.save_pretrained(tmp_path / "native", **({"safe_serialization": False} if port.name == "pt" else {}))
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == sorted([CONFIG_NAME, NATIVE[port.name]])
    again = arch_class(port, name).from_pretrained(tmp_path / "native")
    np.testing.assert_array_equal(outputs(port, again, ids, mask), got)


@pytest.mark.parametrize("pair", ["bert2gpt2", pytest.param("roberta2roberta", marks=pytest.mark.slow)])
def test_the_halves_saved_alone_join_into_the_same_model(port, pair, tmp_path):
    rng = np.random.default_rng(11)
    enc_type, dec_type = PAIRS[pair]
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        arch_config(enc_type, rng, hidden=16), arch_config(dec_type, rng, hidden=16),
        decoder_start_token_id=2, pad_token_id=1,
    )
    model = port.from_state(config, random_state(config, 3))
    if port.name == "flax":
        # Linen modules hold no params: the halves save the model's.
        model.get_encoder().save_pretrained(tmp_path / "enc", params=model.params["encoder"])
        model.get_decoder().save_pretrained(tmp_path / "dec", params=model.params["decoder"])
    else:
        model.encoder.save_pretrained(tmp_path / "enc")
        model.decoder.save_pretrained(tmp_path / "dec")
    joined = port.model_class().from_encoder_decoder_pretrained(
        tmp_path / "enc", tmp_path / "dec", decoder_start_token_id=2, pad_token_id=1
    )
    ids, mask = batch(config.encoder.vocab_size)
    arrays = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=np.array([[2, 7, 9], [2, 5, 6]]))
    got = port.numpy(port.forward(joined, **arrays).logits)
    np.testing.assert_allclose(got, port.numpy(port.forward(model, **arrays).logits), rtol=0, atol=1e-6)


def test_a_decoder_class_loads_an_encoders_folder_and_draws_what_it_lacks(port, tmp_path, caplog):
    config = arch_config("bert", np.random.default_rng(4))
    encoder = init_weights(config, seed=1, role="encoder")
    write_component_folder(tmp_path / "enc", encoder, config, "base", "BertModel", "safetensors")
    with caplog.at_level(logging.WARNING, logger="encdec"):
        decoder = arch_class(port, "BertLMHeadModel").from_pretrained(
            tmp_path / "enc", is_decoder=True, add_cross_attention=True
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cls.predictions.transform.dense.weight" in logged and "crossattention.self.query.weight" in logged
    # What the port holds, read back through its save: the encoder's body, the rest init_weights' draw.
    decoder.save_pretrained(tmp_path / "dec", safe_serialization=True)
    held = read_component_folder(tmp_path / "dec", "bert", "lm", "BertLMHeadModel")
    assert held.config.is_decoder and held.config.add_cross_attention and held.drawn == []
    drawn = init_weights(held.config, seed=0, role="decoder")
    for name, array in held.state.items():
        body = name[len("bert."):]
        expected = encoder[body] if body in encoder else drawn[name]
        np.testing.assert_array_equal(array, expected, err_msg=name)


def test_bad_folders_are_refused_naming_the_file(port, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty / CONFIG_NAME}: file not found; expected"):
        arch_class(port, "BertModel").from_pretrained(empty)
    gpt2 = arch_config("gpt2", np.random.default_rng(2))
    write_component_folder(tmp_path / "gpt2", init_weights(gpt2, role="decoder"), gpt2, "lm", "GPT2LMHeadModel",
                           "safetensors")
    decoder_class = arch_class(port, "BertLMHeadModel")  # FlaxBertForCausalLM in Flax, as transformers names it
    with pytest.raises(ConfigError, match=f"{tmp_path / 'gpt2' / CONFIG_NAME}: model_type 'gpt2' cannot be "
                                          f"loaded into {decoder_class.__name__}; expected model_type 'bert'"):
        decoder_class.from_pretrained(tmp_path / "gpt2")


@pytest.mark.parametrize("name", ["BertLMHeadModel", "GPT2LMHeadModel"])
def test_encoder_states_given_to_a_decoder_without_cross_attention_are_a_config_error(port, name, tmp_path):
    """The same mistake gets the same error in every architecture and port: the config lacks cross-attention."""
    model_type, _ = CLASSES[name]
    config = arch_config(model_type, np.random.default_rng(5), is_decoder=True)
    assert not config.add_cross_attention
    write_component_folder(tmp_path, init_weights(config, role="decoder"), config, "lm", name, "safetensors")
    model = arch_class(port, name).from_pretrained(tmp_path)
    ids, mask = batch(config.vocab_size)
    states = np.zeros((2, 3, config.hidden_size), np.float32)
    with pytest.raises(ConfigError, match="given to a layer without cross-attention; expected a decoder config "
                                          "with add_cross_attention=True"):
        model(**port.tensors(input_ids=ids, attention_mask=mask, encoder_hidden_states=states))
