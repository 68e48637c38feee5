"""Gradient checkpointing, as transformers has it: `gradient_checkpointing_enable()` leaves the loss
and the gradients as they are, and the layers really are recomputed in backward.

PyTorch: the architecture classes (and the encoder-decoder) through `torch.utils.checkpoint`, active
only in training mode with gradients enabled. Flax: each layer wrapped in `nn.remat` (a `checkpoint`
primitive in the gradient's jaxpr). TF: transformers' TF classes had none, and neither has the port
(tests/test_mirror.py lists it).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from encdec.config import BertConfig, BertGenerationConfig, GPT2Config, RobertaConfig
from ports_lib import joined_config, random_batch

VOCAB, HIDDEN, LAYERS, BATCH, LENGTH, SOURCE = 50, 32, 2, 2, 7, 5


def decoder_config(model_type: str, **overrides):
    """A tiny cross-attending decoder (hidden 32, 2 layers, dropout on)."""
    common = dict(vocab_size=VOCAB, pad_token_id=1, is_decoder=True, add_cross_attention=True)
    if model_type == "gpt2":
        return GPT2Config(n_embd=HIDDEN, n_head=4, n_layer=LAYERS, n_positions=16, **common, **overrides)
    cls = {"bert": BertConfig, "roberta": RobertaConfig, "bert-generation": BertGenerationConfig}[model_type]
    return cls(hidden_size=HIDDEN, num_attention_heads=4, num_hidden_layers=LAYERS, intermediate_size=37,
               max_position_embeddings=20, **common, **overrides)


def batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, (BATCH, LENGTH))
    mask = np.ones((BATCH, LENGTH), np.int64)
    mask[1, -2:] = 0  # padding on one row
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": np.where(mask == 1, ids, -100),
        "encoder_hidden_states": rng.standard_normal((BATCH, SOURCE, HIDDEN)).astype(np.float32),
    }


# -- PyTorch --------------------------------------------------------------------------------------

PT_DECODERS = [("BertLMHeadModel", "bert"), ("RobertaForCausalLM", "roberta"),
               ("BertGenerationDecoder", "bert-generation"), ("GPT2LMHeadModel", "gpt2")]


def _pt_layers(model):
    """The repeated layers of an architecture model (BERT's `encoder.layer`, GPT-2's `h`)."""
    base = getattr(model, "base_model", model)
    return base.encoder.layer if hasattr(base, "encoder") else base.h


class _CountForwards:
    """Counts the forward calls of `layers` (forward hooks do not see checkpoint's recomputation)."""

    def __init__(self, layers) -> None:
        self.layers, self.calls = list(layers), 0

    def __enter__(self):
        for layer in self.layers:
            layer.forward = self._counting(layer.forward)
        return self

    def _counting(self, forward):
        def counted(*args, **kwargs):
            self.calls += 1
            return forward(*args, **kwargs)

        return counted

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            del layer.forward  # the class's forward again


def _pt_run(model, arrays, seed: int = 0, layers=None):
    """(loss, gradients by parameter name, forward calls of the layers) of one training step."""
    import torch

    with _CountForwards(_pt_layers(model) if layers is None else layers) as counter:
        model.zero_grad()
        torch.manual_seed(seed)  # the same dropout masks in both runs
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        out = model(**t)
        loss = out.loss if "labels" in t else out.last_hidden_state.pow(2).mean()  # an encoder: any scalar
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, counter.calls


def _pt_assert_same(plain, checkpointed):
    import torch

    (loss, grads, _), (loss_ck, grads_ck, _) = plain, checkpointed
    torch.testing.assert_close(loss_ck, loss, rtol=0, atol=0)
    assert sorted(grads_ck) == sorted(grads)
    for name in grads:
        torch.testing.assert_close(grads_ck[name], grads[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("class_name,model_type", PT_DECODERS)
def test_pt_checkpointing_keeps_loss_and_gradients_and_recomputes_the_layers(class_name, model_type):
    torch = pytest.importorskip("torch")
    import encdec.pt

    torch.manual_seed(0)
    model = getattr(encdec.pt, class_name)(decoder_config(model_type)).train()
    arrays = batch()
    plain = _pt_run(model, arrays)
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing and model.base_model.is_gradient_checkpointing
    checkpointed = _pt_run(model, arrays)
    _pt_assert_same(plain, checkpointed)
    # Every layer runs once in forward, and once more in backward when checkpointed.
    assert (plain[2], checkpointed[2]) == (LAYERS, 2 * LAYERS)

    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert _pt_run(model, arrays)[2] == LAYERS


def test_pt_checkpointing_is_off_in_eval_mode_and_without_grad():
    torch = pytest.importorskip("torch")
    from encdec.pt import BertModel, GPT2LMHeadModel

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=4,
                                   num_hidden_layers=LAYERS, intermediate_size=37, max_position_embeddings=20))
    inputs = {k: batch()[k] for k in ("input_ids", "attention_mask")}
    encoder.gradient_checkpointing_enable({"use_reentrant": False})
    encoder.train()
    assert _pt_run(encoder, inputs)[2] == 2 * LAYERS  # an encoder body checkpoints too
    encoder.eval()
    assert _pt_run(encoder, inputs)[2] == LAYERS
    decoder = GPT2LMHeadModel(decoder_config("gpt2")).train()
    decoder.gradient_checkpointing_enable()
    t = {k: torch.from_numpy(v) for k, v in batch().items()}
    with torch.no_grad():
        out = decoder(**t, use_cache=True)
    assert out.past_key_values is not None  # nothing recomputed: the cache is kept
    assert decoder(**t, use_cache=True).past_key_values is None  # recomputing: no cache, as transformers


def test_composite_pt_gradient_checkpointing_enable_reaches_encoder_and_decoder():
    """The encoder-decoder's switch turns on both halves."""
    pytest.importorskip("torch")
    from encdec.pt import EncoderDecoderModel

    config = joined_config("bert2gpt2", 0)
    model = EncoderDecoderModel(config=config).train()
    b = random_batch(config, np.random.default_rng(0), 2, 6, 5, "right")
    t = {k: np.asarray(b[k], np.int64) for k in ("input_ids", "attention_mask", "labels")}

    layers = [*model.encoder.encoder.layer, *model.decoder.transformer.h]
    plain = _pt_run(model, t, layers=layers)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = _pt_run(model, t, layers=layers)
    _pt_assert_same(plain, checkpointed)
    assert checkpointed[2] == 2 * plain[2]


# -- Flax -----------------------------------------------------------------------------------------

FLAX_DECODERS = [("FlaxBertForCausalLM", "bert"), ("FlaxRobertaForCausalLM", "roberta"),
                 ("FlaxBertGenerationDecoder", "bert-generation"), ("FlaxGPT2LMHeadModel", "gpt2")]


def _flax_loss(module, arrays):
    """value_and_grad of the decoder's loss, in training mode (dropout on), of (params, dropout rng)."""
    import jax

    def loss(params, rng):
        out = module.apply({"params": params}, arrays["input_ids"], arrays["attention_mask"],
                           encoder_hidden_states=arrays["encoder_hidden_states"], labels=arrays["labels"],
                           deterministic=False, rngs={"dropout": rng})
        return out.loss

    return jax.value_and_grad(loss)


def _flax_params(module, arrays, abstract: bool):
    """The module's params: their shapes only (`jax.eval_shape`, nothing computed) when `abstract`."""
    import jax

    def init(key):
        return module.init(key, arrays["input_ids"], arrays["attention_mask"],
                           encoder_hidden_states=arrays["encoder_hidden_states"])["params"]

    key = jax.random.PRNGKey(0)
    return jax.eval_shape(init, key) if abstract else init(key)


def _checkpoints(jaxpr) -> int:
    """How many times a jaxpr applies JAX's rematerialisation primitive (`remat2`; `checkpoint` in
    other JAX versions): once per checkpointed layer."""
    return len(re.findall(r"\b(?:remat2?|checkpoint)\[", str(jaxpr)))


def _flax_decoder(class_name: str, model_type: str):
    import encdec.flax

    return getattr(encdec.flax, class_name)(decoder_config(model_type, hidden_dropout_prob=0.1))


@pytest.mark.parametrize("class_name,model_type", FLAX_DECODERS)
def test_flax_checkpointing_remats_the_layers_and_keeps_the_params(class_name, model_type):
    jax = pytest.importorskip("jax")

    arrays, rng = batch(), jax.random.PRNGKey(1)
    plain = _flax_decoder(class_name, model_type)
    checkpointed = plain.gradient_checkpointing_enable()
    assert (plain.is_gradient_checkpointing, checkpointed.is_gradient_checkpointing) == (False, True)
    assert not checkpointed.gradient_checkpointing_disable().is_gradient_checkpointing
    params = _flax_params(plain, arrays, abstract=True)
    assert jax.tree_util.tree_structure(_flax_params(checkpointed, arrays, abstract=True)) == \
        jax.tree_util.tree_structure(params)  # the same parameter paths
    assert _checkpoints(jax.make_jaxpr(_flax_loss(plain, arrays))(params, rng)) == 0
    assert _checkpoints(jax.make_jaxpr(_flax_loss(checkpointed, arrays))(params, rng)) == LAYERS


@pytest.mark.slow  # two compiled backward passes per class: ~10 s each on an idle CPU
@pytest.mark.parametrize("class_name,model_type", [FLAX_DECODERS[0], FLAX_DECODERS[3]])
def test_flax_checkpointing_keeps_loss_and_gradients(class_name, model_type):
    jax = pytest.importorskip("jax")

    arrays, rng = batch(), jax.random.PRNGKey(1)
    plain = _flax_decoder(class_name, model_type)
    params = _flax_params(plain, arrays, abstract=False)
    loss, grads = _flax_loss(plain, arrays)(params, rng)
    loss_ck, grads_ck = _flax_loss(plain.gradient_checkpointing_enable(), arrays)(params, rng)
    np.testing.assert_allclose(loss_ck, loss, rtol=1e-6)
    flat, flat_ck = jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves_with_path(grads_ck)
    assert [p for p, _ in flat_ck] == [p for p, _ in flat]
    for (path, g), (_, g_ck) in zip(flat, flat_ck):
        np.testing.assert_allclose(g_ck, g, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_flax_checkpointing_takes_no_options():
    pytest.importorskip("jax")
    from encdec.errors import ConfigError
    from encdec.flax import FlaxGPT2Model

    with pytest.raises(ConfigError, match="gradient_checkpointing_kwargs"):
        FlaxGPT2Model(decoder_config("gpt2")).gradient_checkpointing_enable({"use_reentrant": False})


def test_composite_flax_gradient_checkpointing_enable_remats_encoder_and_decoder():
    """The encoder-decoder's switch turns on both halves."""
    jax = pytest.importorskip("jax")
    from encdec.flax import FlaxEncoderDecoderModel
    from encdec.flax.training import loss_fn

    config = joined_config("bert2gpt2", 0)
    model = FlaxEncoderDecoderModel(config)
    b = random_batch(config, np.random.default_rng(0), 2, 6, 5, "right")
    arrays = {k: np.asarray(b[k]) for k in ("input_ids", "attention_mask", "labels")}
    rng = jax.random.PRNGKey(0)

    def checkpoints():
        """How many layers the gradient's jaxpr rematerialises."""
        grad = jax.grad(lambda p: loss_fn(model, p, arrays, rng, train=True))
        return _checkpoints(jax.make_jaxpr(grad)(model.params))

    assert checkpoints() == 0 and not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    layers = config.encoder.num_hidden_layers + config.decoder.n_layer
    assert checkpoints() == layers
    model.gradient_checkpointing_disable()
    assert checkpoints() == 0
