"""Code written against transformers' loaders, with only the import changed: its loading kwargs
(`torch_dtype`, `device_map`, `attn_implementation`, `from_pt`...), its config objects and its PyTorch
modules, in each port. transformers' own classes are the reference: they build the models, read the
folders encdec writes and hold the weights encdec must end up with.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import transformers

from encdec.config import EncoderDecoderConfig
from encdec.errors import ConfigError
from encdec.pt import EncoderDecoderModel

SMALL = dict(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
             max_position_embeddings=44)
SPECIALS = dict(decoder_start_token_id=2, pad_token_id=0)
# What transformers' loaders take and a config.json never holds.
LOADING_KEYS = {"torch_dtype", "device_map", "attn_implementation", "from_pt", "from_tf", "from_flax",
                "encoder_from_pt", "decoder_from_tf"}


def hf_halves(seed: int = 0):
    """A transformers BertModel and a cross-attending BertLMHeadModel, each with its own config object."""
    torch.manual_seed(seed)
    encoder = transformers.BertModel(transformers.BertConfig(**SMALL)).eval()
    decoder = transformers.BertLMHeadModel(
        transformers.BertConfig(**SMALL, is_decoder=True, add_cross_attention=True)).eval()
    return encoder, decoder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A model folder transformers wrote, and transformers' model."""
    folder = tmp_path_factory.mktemp("hf")
    encoder, decoder = hf_halves()
    model = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    model.config.update(SPECIALS)
    model.save_pretrained(folder)
    return folder, model


def batch():
    ids = torch.tensor([[5, 9, 11, 3], [7, 8, 3, 0]])
    return dict(input_ids=ids, attention_mask=(ids != 0).long(), decoder_input_ids=torch.tensor([[2, 6, 7], [2, 9, 0]]))


def saved_config(model, folder) -> dict:
    model.save_pretrained(folder)
    return json.loads((folder / "config.json").read_text())


# ---------------------------------------------------------------- PyTorch: dtype, device, attention


@pytest.mark.parametrize("kwargs", [dict(torch_dtype=torch.bfloat16), dict(torch_dtype="bfloat16"),
                                    dict(dtype=torch.bfloat16)], ids=["torch_dtype", "string", "dtype"])
def test_torch_dtype_makes_the_parameters_that_dtype_and_saves_as_transformers_does(hf_folder, tmp_path, kwargs):
    folder, _ = hf_folder
    model = EncoderDecoderModel.from_pretrained(folder, **kwargs)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    data = saved_config(model, tmp_path / "saved")
    assert data["dtype"] == "bfloat16" and not LOADING_KEYS & set(data)
    # transformers reads the dtype back from config.json.
    assert transformers.EncoderDecoderModel.from_pretrained(tmp_path / "saved", dtype="auto").dtype == torch.bfloat16


def test_torch_dtype_auto_is_the_checkpoints(hf_folder, tmp_path):
    folder, hf = hf_folder
    reference = transformers.EncoderDecoderModel.from_pretrained(folder).to(torch.float16)
    reference.save_pretrained(tmp_path / "half")
    model = EncoderDecoderModel.from_pretrained(tmp_path / "half", torch_dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    assert {p.dtype for p in EncoderDecoderModel.from_pretrained(folder, torch_dtype="auto").parameters()} == {
        torch.float32}


@pytest.mark.parametrize("device_map", ["cpu", "auto", torch.device("cpu"), {"": "cpu"}])
def test_device_map_puts_the_model_on_one_device(hf_folder, device_map):
    model = EncoderDecoderModel.from_pretrained(hf_folder[0], device_map=device_map)
    expected = "cuda" if device_map == "auto" and torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in model.parameters()} == {expected}


def test_device_map_errors(hf_folder):
    with pytest.raises(ConfigError, match="device_map=.*multi-device placement is the job of the distributed API"):
        EncoderDecoderModel.from_pretrained(hf_folder[0], device_map={"encoder": 0, "decoder": "cpu"})
    missing = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"device_map='cuda:{missing}': this machine has {missing} CUDA device"):
        EncoderDecoderModel.from_pretrained(hf_folder[0], device_map=f"cuda:{missing}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_map_cuda_puts_the_model_on_the_gpu(hf_folder, tmp_path):
    model = EncoderDecoderModel.from_pretrained(hf_folder[0], device_map="cuda", torch_dtype=torch.float16)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cuda", torch.float16)}
    assert saved_config(model, tmp_path / "cuda")["dtype"] == "float16"


def test_loading_options_never_reach_config_json(hf_folder, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="encdec"):
        model = EncoderDecoderModel.from_pretrained(hf_folder[0], device_map="cpu", attn_implementation="sdpa",
                                                    from_pt=True, from_tf=False, from_flax=False)
    assert any("from_pt, from_tf, from_flax: ignored" in r.getMessage() for r in caplog.records)
    assert model.config._attn_implementation == "sdpa"
    data = saved_config(model, tmp_path / "m")
    assert not LOADING_KEYS & (set(data) | set(data["encoder"]) | set(data["decoder"]))
    assert "_attn_implementation" not in json.dumps(data)


def test_unknown_kwarg_is_an_error_with_the_closest_name(hf_folder):
    with pytest.raises(ConfigError, match="unknown keyword argument 'torch_dytpe'.*did you mean 'torch_dtype'"):
        EncoderDecoderModel.from_pretrained(hf_folder[0], torch_dytpe=torch.bfloat16)
    with pytest.raises(ConfigError, match="attn_implementation='flash_attention_2': expected one of"):
        EncoderDecoderModel.from_pretrained(hf_folder[0], attn_implementation="flash_attention_2")


def test_eager_attention_computes_the_softmax_explicitly(hf_folder, monkeypatch):
    from encdec.pt import common

    sdpa = common.F.scaled_dot_product_attention
    model = EncoderDecoderModel.from_pretrained(hf_folder[0], attn_implementation="eager")
    calls = []
    monkeypatch.setattr(common.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    with torch.no_grad():
        eager = model(**batch()).logits
    assert not calls
    with torch.no_grad():
        reference = hf_folder[1](**batch()).logits
    np.testing.assert_allclose(eager.numpy(), reference.numpy(), atol=1e-5)


# ---------------------------------------------------------------- transformers' objects


def test_transformers_config_objects_are_taken(hf_folder):
    folder, hf = hf_folder
    given = transformers.EncoderDecoderConfig.from_pretrained(folder)
    config = EncoderDecoderModel.from_pretrained(folder, config=given).config
    for side in ("encoder", "decoder"):
        for key in ("hidden_size", "num_hidden_layers", "is_decoder", "add_cross_attention", "vocab_size"):
            assert getattr(getattr(config, side), key) == getattr(getattr(given, side), key), (side, key)
    assert config.decoder_start_token_id == 2 and config.decoder.add_cross_attention
    enc, dec = transformers.BertConfig(**SMALL), transformers.BertConfig(**SMALL)
    ours = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    theirs = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(transformers.BertConfig(**SMALL),
                                                                            transformers.BertConfig(**SMALL))
    for side in ("encoder", "decoder"):
        for key, value in getattr(ours, side).to_dict().items():
            if key in getattr(theirs, side).to_dict():
                assert value == getattr(theirs, side).to_dict()[key], (side, key)
    assert not enc.is_decoder and not dec.add_cross_attention  # the caller's objects stay as they were


def test_transformers_modules_join_in_pytorch(hf_folder):
    encoder, decoder = hf_halves(seed=1)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_model=encoder, decoder_model=decoder,
                                                                torch_dtype="float32", **SPECIALS)
    reference = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    reference.config.update(SPECIALS)
    with torch.no_grad():
        np.testing.assert_allclose(model(**batch()).logits.numpy(), reference(**batch()).logits.numpy(), atol=1e-5)


def test_generic_attributes_transformers_5_still_has_match_its_defaults():
    ours, theirs = EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**SMALL), transformers.BertConfig(**SMALL)).encoder, transformers.PretrainedConfig()
    for key in ("return_dict", "output_attentions", "output_hidden_states", "chunk_size_feed_forward",
                "problem_type", "num_labels"):
        assert getattr(ours, key) == getattr(theirs, key), key


# ---------------------------------------------------------------- TF and Flax


def _port(name):
    if name == "tf":
        pytest.importorskip("tensorflow")
        from encdec.tf import TFBertModel, TFEncoderDecoderModel

        return TFEncoderDecoderModel, TFBertModel
    pytest.importorskip("flax")
    from encdec.flax import FlaxBertModel, FlaxEncoderDecoderModel

    return FlaxEncoderDecoderModel, FlaxBertModel


@pytest.mark.slow
@pytest.mark.parametrize("port", ["tf", "flax"])
def test_tf_and_flax_take_transformers_objects_and_their_own_models(port, hf_folder, tmp_path):
    model_class, bert_class = _port(port)
    encoder, decoder = hf_halves(seed=2)
    model = model_class.from_encoder_decoder_pretrained(encoder_model=encoder, decoder_model=decoder,
                                                        encoder_from_pt=True, **SPECIALS)
    state = model.canonical_state()
    for name, tensor in encoder.state_dict().items():
        if f"encoder.{name}" in state:
            np.testing.assert_array_equal(state[f"encoder.{name}"], tensor.numpy(), err_msg=name)
    for name, tensor in decoder.state_dict().items():
        if f"decoder.{name}" in state:
            np.testing.assert_array_equal(state[f"decoder.{name}"], tensor.numpy(), err_msg=name)
    # The port's own architecture model as the encoder.
    encoder.save_pretrained(tmp_path / "bert")
    own = bert_class.from_pretrained(tmp_path / "bert")
    joined = model_class.from_encoder_decoder_pretrained(encoder_model=own, decoder_model=decoder, **SPECIALS)
    np.testing.assert_array_equal(joined.canonical_state()["encoder.embeddings.word_embeddings.weight"],
                                  encoder.embeddings.word_embeddings.weight.detach().numpy())
    loaded = model_class.from_pretrained(hf_folder[0], config=transformers.EncoderDecoderConfig.from_pretrained(
        hf_folder[0]), dtype="float32", from_pt=True)
    assert loaded.config.decoder_start_token_id == 2
    for key in ("device_map", "attn_implementation"):
        with pytest.raises(ConfigError, match=f"^{key}= is an option of the PyTorch loader"):
            model_class.from_pretrained(hf_folder[0], **{key: "auto" if key == "device_map" else "eager"})
    with pytest.raises(ConfigError, match=r"encoder_model is a builtins\.str; expected a model of this port"):
        model_class.from_encoder_decoder_pretrained(encoder_model="bert", decoder_model=decoder)


@pytest.mark.slow
def test_flax_dtype_is_the_computation_dtype():
    pytest.importorskip("flax")
    import jax.numpy as jnp

    from encdec.flax import FlaxEncoderDecoderModel

    encoder, decoder = hf_halves(seed=3)
    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_model=encoder, decoder_model=decoder,
                                                                    dtype="bfloat16", **SPECIALS)
    assert model.dtype == jnp.bfloat16
