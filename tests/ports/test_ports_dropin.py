"""Code written against transformers' encoder-decoder classes behaves the same on encdec's: the
conveniences it reads (`num_parameters`, `dtype`, `device`), generation that follows `model.config`,
the output flags of the halves' configs, forward's extra kwargs, configs changed after construction,
and an encoder pooler that the seq2seq loss does not train. transformers 5's PyTorch
EncoderDecoderModel on the same config and weights is the reference where it defines the behaviour."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from encdec.config import GenerationConfig
from encdec.errors import ConfigError, InputError
from port_backends import backend, one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import hf_model, hf_run, joined_config, random_batch, random_state


def _batch(config, seed=3):
    return random_batch(config, np.random.default_rng(seed), 2, 6, 4, "right")


def _pooler_numel(hf) -> int:
    return sum(p.numel() for name, p in hf.named_parameters() if name.startswith("encoder.pooler."))


def test_num_parameters_counts_as_transformers(port):
    config = joined_config("bert2bert", 11)  # encoder and decoder of different widths: enc_to_dec_proj too
    state = random_state(config, 11)
    model, hf = port.model_class()(config=config), hf_model(config, state)
    assert model.num_parameters() == hf.num_parameters()
    assert model.num_parameters(exclude_embeddings=True) == hf.num_parameters(exclude_embeddings=True)
    # The pooler is not trained by encdec's PyTorch and TF models (transformers trains it, to no effect);
    # Flax marks nothing untrainable.
    untrained = 0 if port.name == "flax" else _pooler_numel(hf)
    assert model.num_parameters(only_trainable=True) == hf.num_parameters(only_trainable=True) - untrained
    if port.name != "flax":  # transformers' Flax model had no `encoder` / `decoder` attributes either
        assert model.encoder is not None and model.decoder is not None


def test_device_and_dtype_as_transformers():
    torch = pytest.importorskip("torch")
    from encdec.pt import EncoderDecoderModel

    config = joined_config("bert2bert", 12)
    model = EncoderDecoderModel.from_state(config, random_state(config, 12))
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    model = model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16


def _check_generation_follows_the_model_config(port, tmp_path):
    config = joined_config("bert2bert", 13)  # built with the start token 2 and pad 1
    model = port.from_state(config, random_state(config, 13))
    start, pad = 7, 5
    model.config.decoder_start_token_id = start
    model.config.pad_token_id = pad
    ids = _batch(config)["input_ids"]
    assert (port.generated_ids(model, ids, max_length=4)[:, 0] == start).all()
    port.save_pretrained(model, tmp_path)
    with open(os.path.join(tmp_path, "generation_config.json")) as f:
        saved = json.load(f)
    assert saved["decoder_start_token_id"] == start and saved["pad_token_id"] == pad
    loaded = port.from_pretrained(tmp_path)
    assert loaded.generation_config.pad_token_id == pad
    assert (port.generated_ids(loaded, ids, max_length=4)[:, 0] == start).all()


def test_generation_follows_the_model_config(tmp_path):
    """Set only `model.config` (as transformers' documentation page does); generate, save, reload and
    generate again: the new start and pad tokens are used and written to generation_config.json."""
    _check_generation_follows_the_model_config(backend("pt"), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tf", "flax"])
def test_generation_follows_the_model_config_compiled(name, tmp_path):
    """The same in the ports that compile generation (XLA: slow)."""
    _check_generation_follows_the_model_config(backend(name), tmp_path)


def test_a_generation_config_set_by_the_user_stops_following():
    config = joined_config("bert2bert", 14)
    made = GenerationConfig.from_model_config(config)
    config.decoder_start_token_id, config.max_length = 9, 33
    assert made.follow(config).decoder_start_token_id == 9 and made.max_length == 33
    made.num_beams = 2  # the user's own setting: from now on the model config no longer overrides it
    config.decoder_start_token_id = 4
    assert made.follow(config).decoder_start_token_id == 9 and made.num_beams == 2
    assert GenerationConfig(decoder_start_token_id=6).follow(config).decoder_start_token_id == 6


# (config, attribute, value, call kwargs): a flag set on one half's config (or the joined one) after construction.
FLAG_CASES = [
    ("encoder", "output_attentions", True, {}),
    ("encoder", "output_hidden_states", True, {}),
    ("decoder", "output_attentions", True, {}),
    ("decoder", "output_hidden_states", True, {}),
    ("encoder", "output_hidden_states", True, {"output_hidden_states": False}),  # the call's value wins
    ("decoder", "output_attentions", True, {"output_hidden_states": True}),
    ("joined", "return_dict", False, {}),
]
_OPTIONAL = ("encoder_attentions", "encoder_hidden_states", "decoder_attentions", "cross_attentions",
             "decoder_hidden_states")


def _present(out):
    if isinstance(out, tuple):
        return ("tuple", len(out))
    return {k: None if getattr(out, k) is None else len(getattr(out, k)) for k in _OPTIONAL}


def test_output_flags_of_the_configs_as_transformers(port):
    if port.name == "flax":
        pytest.skip("the Flax port compiles once per flag combination: test_output_flags_in_flax (slow)")
    _check_output_flags(port)


@pytest.mark.slow
def test_output_flags_in_flax():
    _check_output_flags(backend("flax"))


def _check_output_flags(port):
    config = joined_config("bert2bert", 15)
    state = random_state(config, 15)
    model, hf = port.from_state(config, state), hf_model(config, state)
    hf.set_attn_implementation("eager")  # transformers 5 returns attentions only from its eager path
    b = _batch(config)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    for role, name, value, call in FLAG_CASES:
        if port.name == "flax" and name == "return_dict":
            continue  # the Flax port's outputs have no tuple form
        targets = [(model.config if role == "joined" else getattr(model.config, role)),
                   (hf.config if role == "joined" else getattr(hf.config, role))]
        for target in targets:
            setattr(target, name, value)
        try:
            expected = _present(hf_run(hf, **inputs, **call))
            got = _present(port.forward(model, **inputs, **call))
        finally:
            for target in targets:
                setattr(target, name, not value)
        assert got == expected, f"{port.name}: {role}.{name}={value} {call}"


@pytest.mark.parametrize("role", ["encoder", "decoder"])
def test_a_config_changed_after_construction_is_checked_when_building(port, role):
    config = joined_config("bert2bert", 16)
    state = random_state(config, 16)
    getattr(config, role).position_embedding_type = "relative_key_query"
    with pytest.raises(ConfigError, match="relative position embeddings"):
        port.from_state(config, state)
    with pytest.raises(ConfigError, match="relative position embeddings"):
        port.model_class()(config=config)


def test_extra_kwargs_are_routed_as_transformers(port):
    if port.name == "flax":
        pytest.skip("transformers' Flax __call__ took no extra kwargs")
    config = joined_config("bert2bert", 17)
    state = random_state(config, 17)
    model, hf = port.from_state(config, state), hf_model(config, state)
    b = _batch(config)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    positions = np.tile(np.arange(3, 7, dtype=np.int64), (2, 1))  # [B, T], not the default 0..T-1
    got = port.numpy(port.forward(model, **inputs, decoder_position_ids=positions).logits)
    expected = hf_run(hf, **inputs, decoder_position_ids=positions).logits.numpy()
    default = port.numpy(port.forward(model, **inputs).logits)
    assert not np.allclose(got, default, atol=1e-3)  # the kwarg reached the decoder
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)
    for name in ("decoder_inputs_embeds", "head_mask"):
        with pytest.raises(InputError, match=name):
            port.forward(model, **inputs, **{name: b["input_ids"]})


def _assert_pooler_kept_but_not_trained(port, model, state):
    pooler = [name for name in state if name.startswith("encoder.pooler.")]
    assert pooler and all(np.array_equal(model.canonical_state()[name], state[name]) for name in pooler)
    if port.name == "pt":
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        frozen = [p for name, p in model.named_parameters() if name.startswith("encoder.pooler.")]
        assert frozen and not any(id(p) in trainable for p in frozen)
        assert all(p.requires_grad for name, p in model.named_parameters() if not name.startswith("encoder.pooler."))
    elif port.name == "tf":
        trainable = {id(v) for v in model.trainable_variables}
        frozen = model.encoder.pooler.weights
        assert frozen and trainable and not any(id(v) in trainable for v in frozen)
    else:
        pytest.skip("Flax params carry no trainable mark; the optimizer decides")


def test_the_pooler_is_kept_but_not_trained(port):
    config = joined_config("bert2bert", 18)
    state = random_state(config, 18)
    model = port.model_class()(config=config)
    model.load_canonical_state(state)
    _assert_pooler_kept_but_not_trained(port, model, state)


def test_a_loaded_pooler_is_not_trained(port, tmp_path):
    config = joined_config("bert2bert", 19)
    state = random_state(config, 19)
    port.save_pretrained(port.from_state(config, state), tmp_path)
    _assert_pooler_kept_but_not_trained(port, port.from_pretrained(tmp_path), state)
