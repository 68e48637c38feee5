"""`FlaxEncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder.

The model is a wrapper (not a Linen module) that holds `params`, a nested dict
whose paths are the Flax names of `encdec.weights.names` (transformers'
flax_model.msgpack layout), around an inner Linen module. Its `__call__`,
`encode` and `decode` are pure in `params`; weights move in and out only through
the core (`encdec.weights`), converted between canonical and Flax layout by the
spec (`ParamSpec.to_flax` / `from_flax`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..config import (
    GENERATION_CONFIG_NAME,
    EncoderDecoderConfig,
    GenerationConfig,
    load_arch_config,
    split_role_kwargs,
)
from ..errors import CheckpointError, ConfigError, InputError
from ..weights.names import BASE_MODEL_PREFIX, ModelSpec, init_weights, model_spec, resize_decoder_vocab
from .bert import FlaxBertLMHeadModel, FlaxBertModel, _cross_entropy
from .bert_generation import FlaxBertGenerationDecoder, FlaxBertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _is_concrete, check_input_ids
from .gpt2 import FlaxGPT2LMHeadModel
from .roberta import FlaxRobertaForCausalLM, FlaxRobertaModel

logger = logging.getLogger("encdec.flax")

_ENCODERS = {"bert": FlaxBertModel, "roberta": FlaxRobertaModel, "bert-generation": FlaxBertGenerationEncoder}
_DECODERS = {
    "bert": FlaxBertLMHeadModel,
    "roberta": FlaxRobertaForCausalLM,
    "bert-generation": FlaxBertGenerationDecoder,
    "gpt2": FlaxGPT2LMHeadModel,
}


# The canonical name of each decoder's vocabulary projection (stored only when untied).
_HEAD_PROJECTION = {
    "bert": "cls.predictions.decoder.weight",
    "roberta": "lm_head.decoder.weight",
    "bert-generation": "lm_head.decoder.weight",
    "gpt2": "lm_head.weight",
}


def shift_tokens_right(input_ids, pad_token_id, decoder_start_token_id):
    """`[B, T]` labels -> decoder inputs: `decoder_start_token_id`, then the labels but the last,
    with -100 (ignored labels) replaced by `pad_token_id`."""
    if decoder_start_token_id is None:
        raise ConfigError(
            "decoder_start_token_id is not set; expected config.decoder_start_token_id to build decoder inputs "
            "from labels"
        )
    if pad_token_id is None:
        raise ConfigError("pad_token_id is not set; expected config.pad_token_id to replace -100 in shifted labels")
    # numpy for concrete labels (no device work before the model runs), jnp inside a trace.
    xp = jnp if isinstance(input_ids, jax.core.Tracer) else np
    input_ids = xp.asarray(input_ids)
    start = xp.full_like(input_ids[:, :1], decoder_start_token_id)
    shifted = xp.concatenate([start, input_ids[:, :-1]], axis=1)
    return xp.where(shifted == -100, pad_token_id, shifted)


# ---------------------------------------------------------------------------
# Canonical state <-> Flax params (the bridge to the numpy core).


def _state_to_params(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict:
    """Canonical `{name: array}` -> nested Flax params `{"encoder": {"embeddings": ...}}` (jax arrays)."""
    params: dict = {}
    for p in spec:
        if p.name not in state:
            raise CheckpointError(f"parameter {p.name} is missing from the state; expected every name of the spec")
        array = np.asarray(state[p.name])
        if tuple(array.shape) != p.shape:
            raise CheckpointError(f"parameter {p.name} has shape {tuple(array.shape)}; expected {p.shape}")
        array = p.to_flax(array)
        node = params
        *parents, leaf = p.flax_path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        # device_put moves the bytes; jnp.asarray would compile a copy program per shape.
        node[leaf] = jax.device_put(np.ascontiguousarray(array))
    return params


def _param_leaf(params: dict, p):
    """The array at `p.flax_path`, its presence and shape checked (nothing copied)."""
    node = params
    for key in p.flax_path.split("/"):
        if not isinstance(node, dict) or key not in node:
            raise CheckpointError(f"params have no entry {p.flax_path} (parameter {p.name}); expected every path of the spec")
        node = node[key]
    if tuple(np.shape(node)) != p.flax_shape:
        raise CheckpointError(f"params entry {p.flax_path} has shape {tuple(np.shape(node))}; expected {p.flax_shape}")
    return node


def _params_to_state(spec: ModelSpec, params: dict) -> dict[str, np.ndarray]:
    """Nested Flax params -> canonical `{name: numpy array}`; every spec path must be there."""
    return {p.name: p.from_flax(np.asarray(_param_leaf(params, p))) for p in spec}


def _tied_paths(config: EncoderDecoderConfig, spec: ModelSpec) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(tied Flax path, stored Flax path) of the decoder tensors `tie_encoder_decoder` shares with the encoder.

    A decoder base-model tensor `decoder.<base>.X` is the encoder's `encoder.X`; in
    Flax paths, `decoder/<base>/...` is the encoder's `encoder/...`. The LM head's
    tie to the word embeddings is done by the modules themselves.
    """
    if not config.tie_encoder_decoder:
        return []
    base = BASE_MODEL_PREFIX[config.decoder.model_type]
    out = []
    for t in spec.tied:
        if t.name.startswith(f"decoder.{base}.") and t.source.startswith("encoder."):
            source = spec.by_name[t.source].flax_path
            target = f"decoder/{base}/" + source[len("encoder/"):]
            out.append((tuple(target.split("/")), tuple(source.split("/"))))
    return out


def _with_tied(params: dict, tied) -> dict:
    """`params` plus, at each tied path, the stored array (the same array: gradients add up)."""
    if not tied:
        return params
    params = dict(params)
    for target, source in tied:
        value = params
        for key in source:
            value = value[key]
        node = params
        for key in target[:-1]:
            node[key] = dict(node.get(key, {}))
            node = node[key]
        node[target[-1]] = value
    return params


class _FlaxEncoderDecoderModule(nn.Module):
    """The Linen module behind FlaxEncoderDecoderModel: `encoder`, `decoder`, optional `enc_to_dec_proj`."""

    config: EncoderDecoderConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        self.encoder = _ENCODERS[cfg.encoder.model_type](cfg.encoder, self.dtype)
        self.decoder = _DECODERS[cfg.decoder.model_type](cfg.decoder, self.dtype)
        if cfg.needs_projection:
            self.enc_to_dec_proj = nn.Dense(cfg.decoder.hidden_size, dtype=self.dtype)

    def _project(self, encoder_hidden_states):
        # [B, S, encoder hidden] -> [B, S, decoder hidden] when the widths differ.
        return self.enc_to_dec_proj(encoder_hidden_states) if self.config.needs_projection else encoder_hidden_states

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states, deterministic):
        kwargs = dict(
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(input_ids, **kwargs)

    def _decode(
        self,
        decoder_input_ids,
        encoder_hidden_states,
        encoder_attention_mask,
        decoder_attention_mask,
        decoder_position_ids,
        past_key_values,
        output_attentions,
        output_hidden_states,
        deterministic,
    ):
        # With a cache the cross-attention keys/values are in it; the encoder states are not needed.
        projected = None
        if past_key_values is None:
            projected = self._project(encoder_hidden_states)
        return self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=projected,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )

    def _init_cache(self, encoder_hidden_states, max_length):
        """A cache for `max_length` decoder tokens: zero self-attention keys/values `[B, H, L, D]`
        and the cross-attention keys/values of the (projected) encoder states `[B, H, S, D]`."""
        cfg = self.config.decoder
        cross = self.decoder._cross_key_values(self._project(encoder_hidden_states))
        batch = encoder_hidden_states.shape[0]
        zeros = jnp.zeros((batch, cfg.num_attention_heads, max_length, cfg.head_dim), self.dtype)
        layers = tuple({"key": zeros, "value": zeros, "cross_key": k, "cross_value": v} for k, v in cross)
        return {"index": jnp.zeros((), jnp.int32), "layers": layers}

    def __call__(
        self,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        decoder_input_ids,
        decoder_attention_mask,
        decoder_position_ids,
        output_attentions=False,
        output_hidden_states=False,
        deterministic=True,
    ):
        enc = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states, deterministic
        )
        dec = self._decode(
            decoder_input_ids,
            enc.last_hidden_state,
            attention_mask,
            decoder_attention_mask,
            decoder_position_ids,
            None,
            output_attentions,
            output_hidden_states,
            deterministic,
        )
        return Seq2SeqLMOutput(
            logits=dec.logits,
            decoder_hidden_states=dec.hidden_states,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
            encoder_last_hidden_state=enc.last_hidden_state,
            encoder_hidden_states=enc.hidden_states,
            encoder_attentions=enc.attentions,
        )


def _max_positions(cfg) -> int:
    """How many tokens an architecture's position table covers."""
    if cfg.model_type == "roberta":
        return cfg.max_position_embeddings - cfg.pad_token_id - 1
    return cfg.max_position_embeddings


def _host(x, dtype=None):
    """A concrete array as numpy (`dtype` if given) so that preparing inputs compiles nothing;
    None and traced arrays (inside a user's jit) pass through."""
    if x is None or isinstance(x, jax.core.Tracer):
        return x
    return np.asarray(x, dtype)


def _ids(x):
    return _host(x, np.int32)


def _check_mask(name, mask, shape):
    if mask is not None and tuple(np.shape(mask)) != tuple(shape):
        raise InputError(f"{name} has shape {tuple(np.shape(mask))}; expected {tuple(shape)}")


def _check_batch(name, array, batch):
    if array is not None and np.shape(array)[0] != batch:
        raise InputError(f"{name} has batch size {np.shape(array)[0]}; expected {batch}, the batch size of input_ids")


class _Compiled:
    """`jax.jit(fn)` with the model's XLA options when called at top level; inside a user's
    transformation (jit, grad, vmap: some argument is traced), a plain nested jit, since JAX
    takes compiler options only at top level."""

    def __init__(self, fn, compiler_options: Optional[dict], **jit_kwargs) -> None:
        self.top = jax.jit(fn, compiler_options=compiler_options, **jit_kwargs)
        self.nested = jax.jit(fn, **jit_kwargs) if compiler_options else self.top

    def __call__(self, *args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        traced = any(isinstance(x, jax.core.Tracer) for x in leaves)
        return (self.nested if traced else self.top)(*args, **kwargs)

    def _cache_size(self) -> int:
        return self.top._cache_size() + (self.nested._cache_size() if self.nested is not self.top else 0)


class FlaxEncoderDecoderModel:
    """An encoder-decoder model in Flax: `params` plus pure `__call__`, `encode`, `decode`, `generate`.

    `FlaxEncoderDecoderModel(config, seed=0, dtype=jnp.float32)` draws the weights with
    the core's `init_weights(config, seed)`, so a seed gives the same model in every
    port. `dtype` is the computation dtype (float32 or bfloat16); the params keep
    their own dtype, and softmax and LayerNorm statistics run in float32.
    """

    def __init__(
        self,
        config: EncoderDecoderConfig,
        seed: int = 0,
        dtype=jnp.float32,
        params: Optional[dict] = None,
        compiler_options: Optional[dict] = None,
    ):
        if not isinstance(config, EncoderDecoderConfig):
            raise ConfigError(f"config is a {type(config).__name__}; expected an EncoderDecoderConfig")
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.spec = model_spec(config)
        self.module = _FlaxEncoderDecoderModule(config, self.dtype)
        self.generation_config = GenerationConfig.from_model_config(config)
        self._tied = _tied_paths(config, self.spec)
        if params is None:
            params = _state_to_params(self.spec, init_weights(config, seed))
        else:
            for p in self.spec:  # every path present, with its shape
                _param_leaf(params, p)
        self.params = params
        # XLA options of every function the model compiles (e.g. {"xla_backend_optimization_level": 0}
        # compiles faster on CPU); None: XLA's defaults.
        self.compiler_options = compiler_options
        flags = ("output_attentions", "output_hidden_states", "train")
        self._jit_forward = self._jit(self._forward, static_argnames=flags)
        self._jit_encode = self._jit(self._encode, static_argnames=flags)
        self._jit_decode = self._jit(self._decode, static_argnames=flags)
        self._jit_init_cache = self._jit(self._init_cache, static_argnames=("max_length",))
        self._generate_fns: dict = {}

    def _jit(self, fn, **kwargs):
        return _Compiled(fn, self.compiler_options, **kwargs)

    # -- pure functions of params (jitted once per instance) -------------------------

    def _variables(self, params):
        return {"params": _with_tied(params, self._tied)}

    @staticmethod
    def _rngs(dropout_rng, train):
        if not train:
            return {}
        if dropout_rng is None:
            raise InputError("train=True needs dropout_rng (a jax.random key); expected dropout_rng=jax.random.key(...)")
        return {"dropout": dropout_rng}

    def _forward(self, params, input_ids, attention_mask, token_type_ids, position_ids, decoder_input_ids,
                 decoder_attention_mask, decoder_position_ids, labels, dropout_rng,
                 output_attentions=False, output_hidden_states=False, train=False):
        out = self.module.apply(
            self._variables(params),
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            decoder_input_ids,
            decoder_attention_mask,
            decoder_position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=not train,
            rngs=self._rngs(dropout_rng, train),
        )
        if labels is not None:
            out = out.replace(loss=_cross_entropy(out.logits, labels))
        return out

    def _encode(self, params, input_ids, attention_mask, token_type_ids, position_ids, dropout_rng,
                output_attentions=False, output_hidden_states=False, train=False):
        return self.module.apply(
            self._variables(params),
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            output_attentions,
            output_hidden_states,
            not train,
            rngs=self._rngs(dropout_rng, train),
            method=_FlaxEncoderDecoderModule._encode,
        )

    def _decode(self, params, decoder_input_ids, encoder_hidden_states, encoder_attention_mask,
                decoder_attention_mask, decoder_position_ids, past_key_values, dropout_rng,
                output_attentions=False, output_hidden_states=False, train=False):
        return self.module.apply(
            self._variables(params),
            decoder_input_ids,
            encoder_hidden_states,
            encoder_attention_mask,
            decoder_attention_mask,
            decoder_position_ids,
            past_key_values,
            output_attentions,
            output_hidden_states,
            not train,
            rngs=self._rngs(dropout_rng, train),
            method=_FlaxEncoderDecoderModule._decode,
        )

    def _init_cache(self, params, encoder_hidden_states, max_length):
        return self.module.apply(
            self._variables(params), encoder_hidden_states, max_length, method=_FlaxEncoderDecoderModule._init_cache
        )

    # -- input checks (on the host, before any work) --------------------------------

    def _check_encoder_inputs(self, input_ids, attention_mask, token_type_ids, position_ids):
        enc = self.config.encoder
        check_input_ids(input_ids, enc.vocab_size, _max_positions(enc), "input_ids")
        shape = np.shape(input_ids)
        _check_mask("attention_mask", attention_mask, shape)
        if token_type_ids is not None:
            if enc.model_type == "bert-generation":
                raise InputError("bert-generation has no token types; expected token_type_ids=None")
            _check_mask("token_type_ids", token_type_ids, shape)
            check_input_ids(token_type_ids, enc.type_vocab_size, name="token_type_ids")
        if position_ids is not None:
            if tuple(np.shape(position_ids)) not in (tuple(shape), (1, shape[1])):
                raise InputError(f"position_ids has shape {tuple(np.shape(position_ids))}; expected {tuple(shape)}")
            check_input_ids(position_ids, enc.max_position_embeddings, name="position_ids")

    def _check_decoder_inputs(self, decoder_input_ids, decoder_attention_mask, decoder_position_ids, batch, cache):
        dec = self.config.decoder
        max_positions = _max_positions(dec) if cache is None else None
        check_input_ids(decoder_input_ids, dec.vocab_size, max_positions, "decoder_input_ids")
        _check_batch("decoder_input_ids", decoder_input_ids, batch)
        shape = np.shape(decoder_input_ids)
        if cache is not None:
            cache_length = cache["layers"][0]["key"].shape[2]
            _check_mask("decoder_attention_mask", decoder_attention_mask, (shape[0], cache_length))
            index = cache["index"]
            if _is_concrete(index) and int(index) + shape[1] > cache_length:
                raise InputError(
                    f"decoder_input_ids adds {shape[1]} tokens to a cache holding {int(index)} of {cache_length}; "
                    f"expected at most {cache_length - int(index)} (make the cache longer with init_cache)"
                )
        else:
            _check_mask("decoder_attention_mask", decoder_attention_mask, shape)
        if decoder_position_ids is not None:
            if tuple(np.shape(decoder_position_ids)) not in (tuple(shape), (1, shape[1])):
                raise InputError(
                    f"decoder_position_ids has shape {tuple(np.shape(decoder_position_ids))}; expected {tuple(shape)}"
                )
            check_input_ids(decoder_position_ids, dec.max_position_embeddings, name="decoder_position_ids")

    def _check_labels(self, labels, decoder_input_ids):
        if labels is None:
            return
        if np.ndim(labels) != 2:
            raise InputError(f"labels has shape {tuple(np.shape(labels))}; expected [batch, target length]")
        if decoder_input_ids is not None and tuple(np.shape(labels)) != tuple(np.shape(decoder_input_ids)):
            raise InputError(
                f"labels has shape {tuple(np.shape(labels))}; expected {tuple(np.shape(decoder_input_ids))} like "
                "decoder_input_ids"
            )
        if _is_concrete(labels) and np.size(labels):
            values = np.asarray(labels)
            vocab = self.config.decoder.vocab_size
            bad = values[(values != -100) & ((values < 0) | (values >= vocab))]
            if bad.size:
                raise InputError(f"labels hold {int(bad[0])}; expected ids in [0, {vocab}) or -100 (ignored)")

    # -- the transformers Flax API ---------------------------------------------------

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        decoder_position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        params: Optional[dict] = None,
        dropout_rng=None,
        train: bool = False,
    ) -> Seq2SeqLMOutput:
        """Encode `input_ids` `[B, S]`, decode `decoder_input_ids` `[B, T]` -> logits `[B, T, V]`.

        With `labels` and no `decoder_input_ids`, the decoder inputs are the labels
        shifted right (-100 -> pad) and the decoder mask marks their non-pad tokens;
        `loss` is the mean cross-entropy over labels that are not -100.
        """
        self._check_encoder_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        batch = np.shape(input_ids)[0]
        self._check_labels(labels, decoder_input_ids)
        if labels is not None:
            _check_batch("labels", labels, batch)
        if decoder_input_ids is None:
            if labels is None:
                raise InputError("decoder_input_ids and labels are both None; expected one of them")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            if decoder_attention_mask is None:
                # transformers masks the decoder's pad tokens when it makes the decoder inputs from labels
                decoder_attention_mask = decoder_input_ids != self.config.pad_token_id
        self._check_decoder_inputs(decoder_input_ids, decoder_attention_mask, decoder_position_ids, batch, None)
        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        return self._jit_forward(
            self.params if params is None else params,
            _ids(input_ids),
            _ids(attention_mask),
            _ids(token_type_ids),
            _ids(position_ids),
            _ids(decoder_input_ids),
            _ids(decoder_attention_mask),
            _ids(decoder_position_ids),
            _ids(labels),
            dropout_rng,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            train=train,
        )

    def encode(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        params: Optional[dict] = None,
        dropout_rng=None,
        train: bool = False,
    ) -> BaseModelOutput:
        """The encoder's outputs for `input_ids` `[B, S]` (not yet projected to the decoder's width)."""
        self._check_encoder_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        return self._jit_encode(
            self.params if params is None else params,
            _ids(input_ids),
            _ids(attention_mask),
            _ids(token_type_ids),
            _ids(position_ids),
            dropout_rng,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            train=train,
        )

    def decode(
        self,
        decoder_input_ids,
        encoder_outputs,
        encoder_attention_mask=None,
        decoder_attention_mask=None,
        decoder_position_ids=None,
        past_key_values: Optional[dict] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        params: Optional[dict] = None,
        dropout_rng=None,
        train: bool = False,
    ):
        """Decode `decoder_input_ids` `[B, T]` against `encoder_outputs` (from `encode`).

        With `past_key_values` (from `init_cache`, or a previous `decode`) the T new
        tokens follow the cached ones, `decoder_attention_mask` (if any) covers the
        whole cache `[B, max_length]`, and the output's `past_key_values` is the
        updated cache.
        """
        encoder_hidden_states = encoder_outputs[0] if isinstance(encoder_outputs, tuple) else encoder_outputs.last_hidden_state
        batch = np.shape(encoder_hidden_states)[0]
        self._check_decoder_inputs(decoder_input_ids, decoder_attention_mask, decoder_position_ids, batch, past_key_values)
        _check_mask("encoder_attention_mask", encoder_attention_mask, np.shape(encoder_hidden_states)[:2])
        return self._jit_decode(
            self.params if params is None else params,
            _ids(decoder_input_ids),
            encoder_hidden_states,
            _ids(encoder_attention_mask),
            _ids(decoder_attention_mask),
            _ids(decoder_position_ids),
            past_key_values,
            dropout_rng,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            train=train,
        )

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs, params: Optional[dict] = None) -> dict:
        """A fixed-size cache for `max_length` decoder tokens: `{"index", "layers": ({"key", "value",
        "cross_key", "cross_value"}, ...)}`, the cross-attention keys/values computed once from
        `encoder_outputs`."""
        encoder_hidden_states = encoder_outputs[0] if isinstance(encoder_outputs, tuple) else encoder_outputs.last_hidden_state
        if np.shape(encoder_hidden_states)[0] != batch_size:
            raise InputError(
                f"encoder_outputs have batch size {np.shape(encoder_hidden_states)[0]}; expected batch_size={batch_size}"
            )
        limit = _max_positions(self.config.decoder)
        if max_length > limit:
            raise InputError(
                f"max_length {max_length} is longer than the decoder's position table ({limit} tokens); "
                f"expected max_length <= {limit}"
            )
        return self._jit_init_cache(self.params if params is None else params, encoder_hidden_states, max_length=max_length)

    def generate(self, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
                 **kwargs):
        """Greedy, sampling or beam search with transformers 5's semantics, the whole loop under one
        `jax.jit` (see `encdec.flax.generation.generate`). Sampling draws from `prng_key=` (a
        `jax.random` key) or `seed=`. A second call with the same shapes and structural options
        compiles nothing."""
        from .generation import generate

        return generate(self, input_ids, attention_mask, generation_config, **kwargs)

    # -- weights ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory, *, dtype=jnp.float32, fmt: Optional[str] = None,
                        compiler_options: Optional[dict] = None, **kwargs):
        """Load a checkpoint folder written by transformers or encdec, in any of the four formats
        (`fmt` picks one when several are there). kwargs set keys of the config."""
        from ..weights.convert import load_state

        directory = os.fspath(directory)
        config = kwargs.pop("config", None) or EncoderDecoderConfig.from_pretrained(directory)
        for key, value in kwargs.items():
            setattr(config, key, value)
        spec = model_spec(config)
        state, _report = load_state(directory, spec, fmt=fmt)
        model = cls(config, dtype=dtype, params=_state_to_params(spec, state), compiler_options=compiler_options)
        if os.path.isfile(os.path.join(directory, GENERATION_CONFIG_NAME)):
            model.generation_config = GenerationConfig.from_pretrained(directory)
        return model

    def save_pretrained(
        self,
        save_directory,
        params: Optional[dict] = None,
        safe_serialization: bool = False,
        max_shard_size=None,
    ) -> None:
        """Write weights (`flax_model.msgpack`, or `model.safetensors` with `safe_serialization`),
        config.json and generation_config.json.

        The folder is written to a temporary sibling and renamed into place, so a
        failure leaves any previous checkpoint there whole; weight files of the
        previous checkpoint are not carried into the new one.
        """
        from ..weights.convert import save_state
        from ..weights.formats import is_weight_file
        from ..weights.io import atomic_directory, parse_size

        fmt = "safetensors" if safe_serialization else "flax"
        shard_size = parse_size(max_shard_size) if max_shard_size is not None else None
        state = _params_to_state(self.spec, self.params if params is None else params)
        config = self.config.copy()
        config.architectures = ["EncoderDecoderModel"]
        with atomic_directory(save_directory, keep=lambda name: not is_weight_file(name)) as tmp:
            save_state(state, self.spec, tmp, fmt, shard_size=shard_size)
            config.save_pretrained(tmp)
            self.generation_config.save_pretrained(tmp)

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path=None,
        decoder_pretrained_model_name_or_path=None,
        *,
        init_seed: int = 0,
        dtype=jnp.float32,
        compiler_options: Optional[dict] = None,
        **kwargs,
    ) -> "FlaxEncoderDecoderModel":
        """Join a pretrained encoder folder and a pretrained decoder folder (any of the four formats).

        `encoder_*` / `decoder_*` kwargs update the encoder / decoder config
        (`encoder_config=` / `decoder_config=` give a config); the others, and
        `decoder_start_token_id`, update the joined config. What the checkpoints lack
        (cross-attention, often the LM head, `enc_to_dec_proj`) is drawn with
        `init_weights(config, init_seed)` and logged by name; `initialised_parameters`
        lists it.
        """
        from ..weights.convert import load_component

        parts = split_role_kwargs(kwargs)
        joined = kwargs
        configs, paths = {}, {}
        for role, path in (("encoder", encoder_pretrained_model_name_or_path),
                           ("decoder", decoder_pretrained_model_name_or_path)):
            if path is None:
                raise ConfigError(f"no {role} given; expected {role}_pretrained_model_name_or_path")
            paths[role] = os.fspath(path)
            options = parts[role]
            config = options.pop("config", None)
            config = config.copy() if config is not None else load_arch_config(paths[role])
            for key, value in options.items():
                setattr(config, key, value)
            if role == "encoder" and (config.is_decoder or config.add_cross_attention):
                logger.info("%s: loading a decoder config as the encoder; cross-attention and the causal mask are off",
                            paths[role])
                config.is_decoder = False
                config.add_cross_attention = False
            configs[role] = config
        config = EncoderDecoderConfig.from_encoder_decoder_configs(configs["encoder"], configs["decoder"], **joined)
        spec = model_spec(config)
        state = init_weights(config, seed=init_seed)
        drawn = []
        for role in ("encoder", "decoder"):
            loaded, report = load_component(paths[role], getattr(config, role), role)
            for name, array in loaded.items():
                state[f"{role}.{name}"] = array
            drawn += [f"{role}.{name}" for name in report.missing]
        drawn += [p.name for p in spec if p.name.startswith("enc_to_dec_proj.")]
        drawn = [name for name in drawn if name in spec.by_name]
        if drawn:
            logger.warning(
                "%d parameter(s) are not in the pretrained checkpoints and were newly initialised "
                "(init_weights, seed %d): %s",
                len(drawn), init_seed, ", ".join(drawn),
            )
        model = cls(config, dtype=dtype, params=_state_to_params(spec, state), compiler_options=compiler_options)
        model.initialised_parameters = drawn
        return model

    # -- accessors (the PyTorch port's) ------------------------------------------------

    def get_encoder(self) -> nn.Module:
        """The encoder's Linen module (unbound; its params are `params["encoder"]`)."""
        return _ENCODERS[self.config.encoder.model_type](self.config.encoder, self.dtype)

    def get_decoder(self) -> nn.Module:
        """The decoder's Linen module (unbound; its params are `params["decoder"]`)."""
        return _DECODERS[self.config.decoder.model_type](self.config.decoder, self.dtype)

    def get_input_embeddings(self, params: Optional[dict] = None):
        """The encoder's word-embedding table `[V, H]`."""
        return self._param_by_name("encoder.embeddings.word_embeddings.weight", params)

    def get_output_embeddings(self, params: Optional[dict] = None):
        """The decoder's output projection `[V, H]` (the word-embedding table when tied)."""
        name = "decoder." + _HEAD_PROJECTION[self.config.decoder.model_type]
        if name not in self.spec.by_name:
            name = self.spec.tied_by_name[name].source
        array = self._param_by_name(name, params)
        return array.T if self.spec.by_name[name].kind == "dense" else array  # Flax kernels are [H, V]

    def _param_by_name(self, name: str, params: Optional[dict] = None):
        node = self.params if params is None else params
        for key in self.spec.by_name[name].flax_path.split("/"):
            node = node[key]
        return node

    def resize_token_embeddings(self, new_num_tokens: int):
        """Give the decoder a vocabulary of `new_num_tokens`: word embeddings, LM head and its bias.

        Kept rows keep their values; new rows are drawn as `init_weights` draws them
        (seed 0; biases 0). With `tie_encoder_decoder` the shared table is the
        encoder's too, so both vocabularies change. Returns the decoder's new
        word-embedding table.
        """
        if not isinstance(new_num_tokens, int) or new_num_tokens <= 0:
            raise ConfigError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
        if new_num_tokens != self.config.decoder.vocab_size:
            old = _params_to_state(self.spec, self.params)
            config, state = resize_decoder_vocab(self.config, old, new_num_tokens)
            generation_config = self.generation_config
            fns = self._generate_fns
            self.__init__(config, dtype=self.dtype, params=_state_to_params(model_spec(config), state),
                          compiler_options=self.compiler_options)
            self.generation_config = generation_config
            fns.clear()
        base = BASE_MODEL_PREFIX[self.config.decoder.model_type]
        table = "wte" if self.config.decoder.model_type == "gpt2" else "embeddings.word_embeddings"
        name = f"decoder.{base}.{table}.weight"
        if name not in self.spec.by_name:  # tie_encoder_decoder: the decoder uses the encoder's table
            name = self.spec.tied_by_name[name].source
        return self._param_by_name(name)
