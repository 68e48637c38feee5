"""`FlaxEncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder.

The model is a wrapper (not a Linen module) that holds `params`, a nested dict
whose paths are the Flax names of `encdec.weights.names` (transformers'
flax_model.msgpack layout), around an inner Linen module. Its `__call__`,
`encode` and `decode` are pure in `params`; weights move in and out only through
the core (`encdec.weights`), converted between canonical and Flax layout by the
spec (`ParamSpec.to_flax` / `from_flax`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .. import inputs
from ..loading import as_encoder_decoder_config
from ..config import EncoderDecoderConfig, GenerationConfig
from ..errors import InputError
from ..port_model import EncoderDecoderMixin, GradientCheckpointingMixin
from ..weights.names import (
    ModelSpec,
    ParamSpec,
    init_weights,
    model_spec,
    output_projection_name,
    word_embedding_name,
)
from ..weights.state import nested_leaf, nested_state, put_nested, tied_flax_paths, with_tied
from .bart import FlaxBartForCausalLM
from .bert import FlaxBertForCausalLM, FlaxBertModel
from .common import _cross_entropy
from .bert_generation import FlaxBertGenerationDecoder, FlaxBertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _fact, _is_concrete, _reorder_cache
from .electra import FlaxElectraForCausalLM, FlaxElectraModel
from .gpt2 import FlaxGPT2LMHeadModel
from .roberta import (FlaxCamembertForCausalLM, FlaxCamembertModel, FlaxRobertaForCausalLM, FlaxRobertaModel,
                      FlaxXLMRobertaForCausalLM, FlaxXLMRobertaModel)
from .rembert import FlaxRemBertForCausalLM, FlaxRemBertModel

_ENCODERS = {"bert": FlaxBertModel, "roberta": FlaxRobertaModel, "xlm-roberta": FlaxXLMRobertaModel,
             "camembert": FlaxCamembertModel, "bert-generation": FlaxBertGenerationEncoder, "electra": FlaxElectraModel,
             "rembert": FlaxRemBertModel}
_DECODERS = {"bert": FlaxBertForCausalLM, "roberta": FlaxRobertaForCausalLM, "xlm-roberta": FlaxXLMRobertaForCausalLM,
             "camembert": FlaxCamembertForCausalLM, "bert-generation": FlaxBertGenerationDecoder,
             "electra": FlaxElectraForCausalLM, "rembert": FlaxRemBertForCausalLM, "gpt2": FlaxGPT2LMHeadModel,
             "bart": FlaxBartForCausalLM}


def shift_tokens_right(input_ids, pad_token_id, decoder_start_token_id):
    """`[B, T]` labels -> decoder inputs: `decoder_start_token_id`, then the labels but the last,
    with -100 (ignored labels) replaced by `pad_token_id`. Concrete labels are shifted on the host
    (`encdec.inputs.shift_tokens_right`); traced ones (inside a user's jit) in the graph."""
    if not isinstance(input_ids, jax.core.Tracer):
        return inputs.shift_tokens_right(input_ids, pad_token_id, decoder_start_token_id)
    pad, start = inputs.check_shift_config(pad_token_id, decoder_start_token_id)
    shifted = jnp.concatenate([jnp.full_like(input_ids[:, :1], start), input_ids[:, :-1]], axis=1)
    return jnp.where(shifted == inputs.IGNORE_INDEX, pad, shifted)


# ---------------------------------------------------------------------------
# Canonical state <-> Flax params: the core's nested-dict bridge (`encdec.weights.state`).


def _put_state(params: dict, spec: ModelSpec, state: dict, partial: bool = False) -> dict:
    """`put_nested` with each leaf moved to the device (device_put moves the bytes; jnp.asarray would
    compile a copy program per shape)."""
    return put_nested(params, spec, state, jax.device_put, partial)


class _FlaxEncoderDecoderModule(nn.Module):
    """The Linen module behind FlaxEncoderDecoderModel: `encoder`, `decoder`, optional `enc_to_dec_proj`."""

    config: EncoderDecoderConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        remat = dict(gradient_checkpointing=self.gradient_checkpointing)
        self.encoder = _ENCODERS[cfg.encoder.model_type](cfg.encoder, self.dtype, **remat)
        self.decoder = _DECODERS[cfg.decoder.model_type](cfg.decoder, self.dtype, **remat)
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

    def _decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, decoder_attention_mask,
                decoder_position_ids, past_key_values, output_attentions, output_hidden_states, deterministic):
        # With a cache the cross-attention keys/values and the encoder mask are in it; the encoder
        # states are not needed.
        projected = None
        if past_key_values is None:
            projected = self._project(encoder_hidden_states)
        elif encoder_attention_mask is None:
            encoder_attention_mask = past_key_values["encoder_attention_mask"]
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

    def _init_cache(self, batch_size, max_length, encoder_hidden_states, encoder_attention_mask):
        """A cache for `max_length` decoder tokens: zero self-attention keys/values `[batch_size, H, L, D]`
        (batch_size = n * B: n rows per batch item), the cross-attention keys/values of the (projected)
        encoder states `[B, H, S, D]`, and the encoder mask `[B, S]` (or None) the cross-attention applies."""
        cfg = self.config.decoder
        cross = self.decoder._cross_key_values(self._project(encoder_hidden_states))
        zeros = jnp.zeros((batch_size, cfg.num_attention_heads, max_length, cfg.head_dim), self.dtype)
        layers = tuple({"key": zeros, "value": zeros, "cross_key": k, "cross_value": v} for k, v in cross)
        return {"index": jnp.zeros((), jnp.int32), "encoder_attention_mask": encoder_attention_mask, "layers": layers}

    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, decoder_input_ids,
                 decoder_attention_mask, decoder_position_ids, output_attentions=False, output_hidden_states=False,
                 deterministic=True):
        enc = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states, deterministic
        )
        dec = self._decode(decoder_input_ids, enc.last_hidden_state, attention_mask, decoder_attention_mask,
                           decoder_position_ids, None, output_attentions, output_hidden_states, deterministic)
        return Seq2SeqLMOutput(
            logits=dec.logits,
            decoder_hidden_states=dec.hidden_states,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
            encoder_last_hidden_state=enc.last_hidden_state,
            encoder_hidden_states=enc.hidden_states,
            encoder_attentions=enc.attentions,
        )


def _int32(x):
    """Concrete ids or masks as int32 numpy (one compiled program for every integer dtype, and no
    device work before the model runs); None and traced arrays pass through."""
    return x if x is None or isinstance(x, jax.core.Tracer) else np.asarray(x, np.int32)


def _cache_facts(cache: dict) -> tuple[int, int]:
    """(cached tokens, cache length) of a cache; the index counts as 0 when traced."""
    index = cache["index"]
    return (int(index) if _is_concrete(index) else 0), cache["layers"][0]["key"].shape[2]


def _last_hidden_state(encoder_outputs):
    """The encoder states `[B, S, H]` of `encode`'s output (or of a tuple holding them first)."""
    return encoder_outputs[0] if isinstance(encoder_outputs, tuple) else encoder_outputs.last_hidden_state


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


class FlaxEncoderDecoderModel(EncoderDecoderMixin, GradientCheckpointingMixin):
    """An encoder-decoder model in Flax: `params` plus pure `__call__`, `encode`, `decode`, `generate`.

    `FlaxEncoderDecoderModel(config, seed=0, dtype=jnp.float32)` draws the weights with
    the core's `init_weights(config, seed)`, so a seed gives the same model in every
    port. `dtype` is the computation dtype (float32 or bfloat16); the params keep
    their own dtype, and softmax and LayerNorm statistics run in float32.
    """

    _port = "flax"

    def __init__(
        self,
        config: EncoderDecoderConfig,
        seed: int = 0,
        dtype=jnp.float32,
        params: Optional[dict] = None,
        compiler_options: Optional[dict] = None,
    ):
        config = as_encoder_decoder_config(config)
        config.validate()  # attributes set after construction are refused as the constructors refuse them
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.spec = model_spec(config)
        self.module = _FlaxEncoderDecoderModule(config, self.dtype)
        self.generation_config = GenerationConfig.from_model_config(config)
        self._tied = tied_flax_paths(self.spec)
        if params is None:
            params = _put_state({}, self.spec, init_weights(config, seed))
        else:
            for p in self.spec:  # every path present, with its shape
                nested_leaf(params, p)
        self.params = params
        # XLA options of every function the model compiles (e.g. {"xla_backend_optimization_level": 0}
        # compiles faster on CPU); None: XLA's defaults.
        self.compiler_options = compiler_options
        self._compile()

    def _compile(self) -> None:
        """The jitted functions of the model; made again when the module changes (they traced the old one)."""
        flags = ("output_attentions", "output_hidden_states", "train")
        self._jit_forward = self._jit(self._forward, static_argnames=flags)
        self._jit_encode = self._jit(self._encode, static_argnames=flags)
        self._jit_decode = self._jit(self._decode, static_argnames=flags)
        self._jit_init_cache = self._jit(self._init_cache, static_argnames=("batch_size", "max_length"))
        self._jit_decode_step = self._jit(self._decode_step)
        self._jit_reorder_cache = self._jit(_reorder_cache)
        self._generate_fns: dict = {}

    def _jit(self, fn, **kwargs):
        return _Compiled(fn, self.compiler_options, **kwargs)

    # -- pure functions of params (jitted once per instance) -------------------------

    def _variables(self, params):
        return {"params": with_tied(params, self._tied)}

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

    def _init_cache(self, params, batch_size, max_length, encoder_hidden_states, encoder_attention_mask):
        return self.module.apply(
            self._variables(params),
            batch_size,
            max_length,
            encoder_hidden_states,
            encoder_attention_mask,
            method=_FlaxEncoderDecoderModule._init_cache,
        )

    def _decode_step(self, params, decoder_input_ids, cache, decoder_position_ids):
        """`decode_step` as a pure function of params (the generation loops call it under their jit)."""
        out = self._decode(params, decoder_input_ids, None, None, None, decoder_position_ids, cache, None)
        return out.logits, out.past_key_values

    # -- the transformers Flax API ---------------------------------------------------

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        decoder_position_ids=None,
        labels=None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        params: Optional[dict] = None,
        dropout_rng=None,
        train: bool = False,
    ) -> Seq2SeqLMOutput:
        """Encode `input_ids` `[B, S]`, decode `decoder_input_ids` `[B, T]` -> logits `[B, T, V]`.

        With `labels` and no `decoder_input_ids`, the decoder inputs are the labels
        shifted right (-100 -> pad) and the decoder mask marks their non-pad tokens;
        `loss` is the mean cross-entropy over labels that are not -100. An output flag left None
        is each half's config's (`config.encoder.output_attentions`, ...), as in transformers;
        `return_dict=False` gives `to_tuple()` (None: `config.return_dict`, default True).
        """
        enc = inputs.output_flags(self.config.encoder, output_attentions, output_hidden_states)
        dec = inputs.output_flags(self.config.decoder, output_attentions, output_hidden_states)
        inputs.check_model_inputs(
            self.config, _fact(input_ids), _fact(attention_mask), _fact(decoder_input_ids),
            _fact(decoder_attention_mask), None, _fact(labels), _fact(token_type_ids), _fact(position_ids),
            _fact(decoder_position_ids),
        )
        if decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            if decoder_attention_mask is None:
                # transformers masks the decoder's pad tokens when it makes the decoder inputs from labels
                decoder_attention_mask = decoder_input_ids != self.config.pad_token_id
        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        out = self._jit_forward(
            self.params if params is None else params,
            _int32(input_ids),
            _int32(attention_mask),
            _int32(token_type_ids),
            _int32(position_ids),
            _int32(decoder_input_ids),
            _int32(decoder_attention_mask),
            _int32(decoder_position_ids),
            _int32(labels),
            dropout_rng,
            output_attentions=enc[0] or dec[0],
            output_hidden_states=enc[1] or dec[1],
            train=train,
        )
        # One program computes both halves' outputs; each half keeps those its flags ask for.
        out = out.replace(**{k: getattr(out, k) if keep else None for k, keep in (
            ("encoder_attentions", enc[0]), ("encoder_hidden_states", enc[1]), ("decoder_attentions", dec[0]),
            ("cross_attentions", dec[0]), ("decoder_hidden_states", dec[1]))})
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return out if return_dict else out.to_tuple()

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
        inputs.check_encoder_inputs(self.config, _fact(input_ids), _fact(attention_mask), _fact(token_type_ids),
                                    _fact(position_ids))
        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        return self._jit_encode(
            self.params if params is None else params,
            _int32(input_ids),
            _int32(attention_mask),
            _int32(token_type_ids),
            _int32(position_ids),
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
        encoder_hidden_states = _last_hidden_state(encoder_outputs)
        batch = np.shape(encoder_hidden_states)[0]
        past_length, cache_length = (0, None) if past_key_values is None else _cache_facts(past_key_values)
        inputs.check_decoder_inputs(
            self.config, _fact(decoder_input_ids), batch, _fact(decoder_attention_mask), _fact(decoder_position_ids),
            past_length=past_length, cache_length=cache_length, mask_length=cache_length,
        )
        inputs.check_mask(_fact(encoder_attention_mask), np.shape(encoder_hidden_states)[:2], "encoder_attention_mask",
                          "like encoder_outputs")
        return self._jit_decode(
            self.params if params is None else params,
            _int32(decoder_input_ids),
            encoder_hidden_states,
            _int32(encoder_attention_mask),
            _int32(decoder_attention_mask),
            _int32(decoder_position_ids),
            past_key_values,
            dropout_rng,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            train=train,
        )

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs, encoder_attention_mask=None,
                   params: Optional[dict] = None) -> dict:
        """A fixed-size cache for `max_length` decoder tokens over `encoder_outputs` (from `encode`, `[B, S,
        H_enc]`): `{"index": int32 [], "encoder_attention_mask": [B, S] or None, "layers": ({"key", "value":
        [batch_size, H, L, D], "cross_key", "cross_value": [B, H, S, D]}, ...)}`, cross keys/values computed
        once. `batch_size` is B or n * B (n rows per batch item, item by item: beam search's beams); the
        cross keys/values and the mask stay per item: its rows attend them together (`_fold_beams_attend`)."""
        encoder_hidden_states = _last_hidden_state(encoder_outputs)
        batch = np.shape(encoder_hidden_states)[0]
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1 or batch_size % batch:
            raise InputError(
                f"batch_size is {batch_size!r}; expected a positive multiple of the encoder output's batch {batch}"
            )
        inputs.check_mask(_fact(encoder_attention_mask), np.shape(encoder_hidden_states)[:2], "encoder_attention_mask",
                          "like encoder_outputs")
        limit = self.config.decoder.max_positions
        if max_length > limit:
            raise InputError(
                f"max_length {max_length} is longer than the decoder's position table ({limit} tokens); "
                f"expected max_length <= {limit}"
            )
        return self._jit_init_cache(
            self.params if params is None else params,
            batch_size=int(batch_size),
            max_length=max_length,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=_int32(encoder_attention_mask),
        )

    def decode_step(self, decoder_input_ids, cache: dict, decoder_position_ids=None, params: Optional[dict] = None):
        """`[B, T]` tokens after the `cache["index"]` cached ones -> (logits `[B, T, V]`, the cache with
        its index advanced by T). The cache comes from `init_cache` or an earlier `decode_step`."""
        past_length, cache_length = _cache_facts(cache)
        inputs.check_decoder_inputs(
            self.config, _fact(decoder_input_ids), cache["layers"][0]["key"].shape[0], None,
            _fact(decoder_position_ids), past_length=past_length, cache_length=cache_length,
        )
        return self._jit_decode_step(
            self.params if params is None else params, _int32(decoder_input_ids), cache, _int32(decoder_position_ids)
        )

    def reorder_cache(self, cache: dict, rows) -> dict:
        """The cache with its self-attention rows `[N]` reordered (beam search: row i continues from
        row `rows[i]`). Cross keys/values and the encoder mask follow the rows when they have as many
        rows as the self-attention keys; kept per batch item otherwise (then `rows` must stay within
        each row's batch item, as beam search's do)."""
        return self._jit_reorder_cache(cache, _int32(rows))

    # -- weights ---------------------------------------------------------------------

    @classmethod
    def from_state(cls, config: EncoderDecoderConfig, state: dict, dtype=None) -> "FlaxEncoderDecoderModel":
        """A model holding `state`: canonical numpy tensors (transformers' PyTorch names and layouts),
        exactly the stored names of `model_spec(config)`. `dtype` is the computation dtype (float32 if None)."""
        config = as_encoder_decoder_config(config)
        params = _put_state({}, model_spec(config), state)
        return cls(config, dtype=jnp.float32 if dtype is None else dtype, params=params)

    def _native_array(self, param: ParamSpec) -> np.ndarray:
        """The params leaf of `param` (a stored ParamSpec) as a numpy copy, in the Flax layout."""
        return np.array(nested_leaf(self.params, param))

    def _assign_canonical(self, state: dict) -> None:
        """`params` with the checked canonical tensors put in (same tree, same dtypes)."""
        self.params = _put_state(self.params, self.spec, state, partial=True)  # load_canonical_state checked it

    @classmethod
    def from_pretrained(cls, directory, *, fmt: Optional[str] = None, dtype=None,
                        config=None, compiler_options: Optional[dict] = None,
                        **kwargs):
        """As `EncoderDecoderMixin.from_pretrained`; `dtype` is the computation dtype as in transformers'
        Flax (a jnp dtype, its name, or "auto": the checkpoint's; default float32), params keep their
        dtype; `compiler_options` are the constructor's."""
        # JAX takes XLA options when it compiles: the loaders hand them to the model they build.
        return cls._load_pretrained(directory, fmt, dtype, config, kwargs, compiler_options=compiler_options)

    @classmethod
    def _build_from_state(cls, config: EncoderDecoderConfig, state: dict, options, owned: bool,
                          compiler_options: Optional[dict] = None) -> "FlaxEncoderDecoderModel":
        """The model of a loaded `state`, its arrays put on the device (copied, so `owned` changes nothing)."""
        from ..loading import resolve_dtype

        return cls(config, dtype=resolve_dtype(options, config, state) or jnp.float32,
                   params=_put_state({}, model_spec(config), state), compiler_options=compiler_options)

    def save_pretrained(
        self,
        save_directory,
        params: Optional[dict] = None,
        safe_serialization: bool = False,
        max_shard_size=None,
    ) -> None:
        """As `EncoderDecoderMixin.save_pretrained`, of `params` when given (default: the model's)."""
        # transformers' Flax API is functional in the params: any params tree saves with the model's config.
        self._write_folder(save_directory, nested_state(self.spec, self.params if params is None else params),
                           safe_serialization, max_shard_size)

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
        """As `EncoderDecoderMixin.from_encoder_decoder_pretrained`; `dtype` and `compiler_options` as in
        `from_pretrained`. The names drawn are also listed in `initialised_parameters`."""
        # transformers' Flax loader took the computation dtype (default float32); JAX takes the XLA options.
        model, drawn = cls._join_pretrained(encoder_pretrained_model_name_or_path,
                                            decoder_pretrained_model_name_or_path, init_seed,
                                            dict(kwargs, dtype=dtype), compiler_options=compiler_options)
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
        return self._param_by_name(word_embedding_name(self.config.encoder, "encoder"), params)

    def get_output_embeddings(self, params: Optional[dict] = None):
        """The decoder's output projection `[V, H]` (the word-embedding table when tied)."""
        name = self.spec.stored_name(output_projection_name(self.config.decoder))
        array = self._param_by_name(name, params)
        return array.T if self.spec.by_name[name].kind == "dense" else array  # Flax kernels are [H, V]

    def _param_by_name(self, name: str, params: Optional[dict] = None):
        """The params entry holding canonical `name` (its stored source when tied)."""
        return nested_leaf(self.params if params is None else params, self.spec.by_name[self.spec.stored_name(name)])

    def _rebuild(self, state: dict) -> None:
        """The model made again for its resized config, with `state` as params; the generation config
        and the compiled functions' cache (then emptied) are kept."""
        generation_config, fns = self.generation_config, self._generate_fns
        self.__init__(self.config, dtype=self.dtype, params=_put_state({}, self.spec, state),
                      compiler_options=self.compiler_options)
        self.generation_config = generation_config
        fns.clear()

    def _decoder_word_embeddings(self):
        return self._param_by_name(word_embedding_name(self.config.decoder))

    # -- transformers' conveniences ----------------------------------------------------

    def _trainable_names(self) -> None:
        """None: Flax marks nothing untrainable (the optimizer decides)."""
        return None

    def _switch_gradient_checkpointing(self, enable: bool, gradient_checkpointing_kwargs: Optional[dict]) -> None:
        """The module with every encoder and decoder layer in nn.remat or not, compiled again."""
        if enable:
            self.get_encoder().gradient_checkpointing_enable(gradient_checkpointing_kwargs)  # checks the kwargs
        self.module = self.module.clone(gradient_checkpointing=enable)
        self._compile()

    def _gradient_checkpointing_on(self) -> bool:
        return self.module.gradient_checkpointing
