"""`TFEncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder, in Keras 3.

Weights move in and out only through the core (`encdec.weights`): a numpy dict keyed
by canonical name. The layer tree mirrors the PyTorch module tree, so each stored
name of the spec (`encdec.weights.names.model_spec`) leads, attribute by attribute,
to the Keras variable that holds it; the spec gives its TF layout. Tied parameters
(the LM head and the word embeddings, `tie_encoder_decoder`) are one Keras variable
reached under several names.

The port contract (`from_state`, `canonical_state`, `load_canonical_state`, `encode`,
`init_cache`, `decode_step`, `reorder_cache`) is the one every port has; compiled
generation (`encdec.tf.generation`) runs on it.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from ..config import ArchConfig, EncoderDecoderConfig, GenerationConfig
from ..errors import ConfigError, InputError
from ..generation import plan_generation
from ..inputs import (IGNORE_INDEX, SET_BY_MODEL, check_decoder_inputs, check_encoder_inputs, check_encoder_outputs,
                      check_model_inputs, check_shift_config, output_flags, route_half_kwargs)
from ..loading import as_encoder_decoder_config
from ..port_model import EncoderDecoderMixin
from ..weights.names import TF_ROOT_SCOPE, ModelSpec, ParamSpec, init_weights, model_spec
from .bart import TFBartForCausalLM
from .bert import TFBertLMHeadModel, TFBertModel
from .bert_generation import TFBertGenerationDecoder, TFBertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _as_index_tensor, _cross_entropy, _dense, _host_facts
from .electra import TFElectraForCausalLM, TFElectraModel
from .gpt2 import TFGPT2LMHeadModel
from .roberta import (TFCamembertForCausalLM, TFCamembertModel, TFRobertaForCausalLM, TFRobertaModel,
                      TFXLMRobertaForCausalLM, TFXLMRobertaModel)
from .rembert import TFRemBertForCausalLM, TFRemBertModel

logger = logging.getLogger("encdec")

ENCODER_CLASSES = {"bert": TFBertModel, "roberta": TFRobertaModel, "xlm-roberta": TFXLMRobertaModel,
                   "camembert": TFCamembertModel, "bert-generation": TFBertGenerationEncoder, "electra": TFElectraModel,
                   "rembert": TFRemBertModel}
DECODER_CLASSES = {"bert": TFBertLMHeadModel, "roberta": TFRobertaForCausalLM, "xlm-roberta": TFXLMRobertaForCausalLM,
                   "camembert": TFCamembertForCausalLM, "bert-generation": TFBertGenerationDecoder,
                   "electra": TFElectraForCausalLM, "rembert": TFRemBertForCausalLM, "gpt2": TFGPT2LMHeadModel,
                   "bart": TFBartForCausalLM}

# The inputs `call` takes, also as the keys of a dict passed as its first argument (Keras' `fit`).
_CALL_INPUTS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "decoder_input_ids",
    "decoder_attention_mask",
    "encoder_outputs",
    "past_key_values",
    "labels",
)

# What `call` passes each half itself: the core's set, and Keras' `training` and the cache's write index.
_SET_BY_MODEL = SET_BY_MODEL | {"training", "cache_index"}


def shift_tokens_right(input_ids, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]):
    """Labels `[B, T]` -> decoder inputs `[B, T]`: start token, then the labels shifted right, -100 -> pad.

    TensorFlow ops, so that it also runs on the symbolic labels of Keras' `fit`; the rule
    and the config check are the core's (`encdec.inputs.shift_tokens_right`).
    """
    pad_token_id, decoder_start_token_id = check_shift_config(pad_token_id, decoder_start_token_id)
    input_ids = tf.convert_to_tensor(input_ids)
    start = tf.fill(tf.stack([tf.shape(input_ids)[0], 1]), tf.cast(decoder_start_token_id, input_ids.dtype))
    shifted = tf.concat([start, input_ids[:, :-1]], axis=1)
    return tf.where(tf.equal(shifted, IGNORE_INDEX), tf.cast(pad_token_id, input_ids.dtype), shifted)


def _build_encoder(config: ArchConfig, shared: Optional[keras.Model] = None) -> keras.Model:
    config.validate()  # an attribute set after the config was made is checked as the constructor checks it
    encoder = ENCODER_CLASSES[config.model_type](config, shared=shared, name="encoder")
    if getattr(encoder, "pooler", None) is not None:
        # The pooler does not reach the seq2seq loss: not trainable, so that `fit` neither warns about
        # its missing gradients nor lets an optimizer (weight decay) move it. It is still saved and loaded.
        encoder.pooler.trainable = False
    return encoder


def _build_decoder(config: ArchConfig) -> keras.Model:
    config.validate()
    return DECODER_CLASSES[config.model_type](config, name="decoder")


def _build_pair(config: EncoderDecoderConfig) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder) of `config`. With `tie_encoder_decoder` the encoder is built on the decoder's base
    model, as transformers 4.57 ties them: the encoder's shared layers are the decoder's."""
    if config.tie_encoder_decoder:
        # Keras variables belong to their layers, so the tie shares the layers, and with them how they compute.
        differ = [k for k in ("hidden_act", "layer_norm_eps") if getattr(config.encoder, k, None) != getattr(
            config.decoder, k, None)]
        if differ:
            raise ConfigError(f"tie_encoder_decoder in the TF port shares the layers, so the halves must compute "
                              f"alike; they differ in {', '.join(differ)}; expected equal values")
    decoder = _build_decoder(config.decoder)
    # EncoderDecoderConfig allows the tie only for one BERT-like architecture on both sides.
    return _build_encoder(config.encoder, shared=decoder.base_model if config.tie_encoder_decoder else None), decoder


# A ParamSpec's kind -> the attribute of the Keras layer (ours, or LayerNormalization / Embedding) holding it.
_KERAS_LEAF = {
    "dense": "kernel", "bias": "bias", "conv1d": "weight", "conv1d_bias": "bias", "embedding": "embeddings",
    "norm_weight": "gamma", "norm_bias": "beta", "output_embedding": "embeddings",  # RemBERT's output table
}


def _variable(root: keras.layers.Layer, param: ParamSpec) -> keras.Variable:
    """The Keras variable of a stored parameter, found by following its canonical name through the layer tree.

    Each dotted part is an attribute (a list index for `layer.3` / `h.3`); a layer class
    whose PyTorch attribute name is taken by Keras (`output`) maps it in `_torch_names`.
    The leaf comes from the parameter's kind (`_KERAS_LEAF`).
    """
    node: Any = root
    for part in param.name.split(".")[:-1]:
        if isinstance(node, (list, tuple)):
            node = node[int(part)]
            continue
        renamed = {torch: keras_name for keras_name, torch in getattr(type(node), "_torch_names", {}).items()}
        node = getattr(node, renamed.get(part, part))
    return getattr(node, _KERAS_LEAF[param.kind])


def _last_hidden_state(encoder_outputs):
    """Encoder states `[B, S, H]` from a BaseModelOutput, a tuple whose first item they are, or a tensor."""
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs.last_hidden_state
    if isinstance(encoder_outputs, (tuple, list)):
        return encoder_outputs[0]
    return encoder_outputs


class TFEncoderDecoderModel(EncoderDecoderMixin, keras.Model):
    """An encoder (`TFBertModel`, `TFRobertaModel`, `TFBertGenerationEncoder`) and a decoder with an LM head.

    `TFEncoderDecoderModel(config=...)` is a random model drawn by `init_weights(config, seed=0)`
    (the same model in every port); `TFEncoderDecoderModel(encoder=..., decoder=...)` joins
    two Keras models. Checkpoints load from and save to transformers' formats.
    `compile()` needs no loss: the model's own loss (from `labels`) is trained.
    """

    main_input_name = "input_ids"
    _port = "tf"

    def __init__(
        self,
        config: Optional[EncoderDecoderConfig] = None,
        encoder: Optional[keras.Model] = None,
        decoder: Optional[keras.Model] = None,
        **kwargs: Any,
    ) -> None:
        state = kwargs.pop("_state", None)  # from_state's weights, instead of a random draw
        kwargs.setdefault("name", TF_ROOT_SCOPE)
        super().__init__(**kwargs)
        if config is None:
            if encoder is None or decoder is None:
                raise ConfigError("TFEncoderDecoderModel needs a config, or both an encoder and a decoder model")
            config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        config = as_encoder_decoder_config(config)
        config.validate()  # attributes set after construction are refused as the constructors refuse them
        if config.tie_encoder_decoder and (encoder is not None or decoder is not None):
            raise ConfigError(
                "tie_encoder_decoder=True builds the encoder on the decoder's weights; expected no encoder or "
                "decoder model (pass the config, or load with from_encoder_decoder_pretrained)"
            )
        self.config = config
        given = {"encoder": encoder is not None, "decoder": decoder is not None}
        if encoder is None or decoder is None:
            built_encoder, built_decoder = _build_pair(config)
            encoder = encoder if encoder is not None else built_encoder
            decoder = decoder if decoder is not None else built_decoder
        self.encoder = encoder
        if hasattr(self.encoder, "get_output_embeddings"):
            raise ConfigError(
                f"the encoder {type(self.encoder).__name__} has an LM head; expected a bare encoder model"
            )
        self.decoder = decoder
        if not getattr(self.decoder.config, "add_cross_attention", False):
            raise ConfigError(
                f"the decoder {type(self.decoder).__name__} has no cross-attention; expected a decoder config with "
                "is_decoder=True and add_cross_attention=True"
            )
        self.enc_to_dec_proj = (
            _dense(config.decoder.hidden_size, config.encoder.hidden_size, "enc_to_dec_proj")
            if config.needs_projection
            else None
        )
        self.spec: ModelSpec = model_spec(config)
        # Plain Python state, out of Keras' tracking (a dict of variables set as an attribute would
        # be tracked as more weights of the model): the variable of each stored parameter by
        # canonical name (TF layout: dense kernels [in, out]), and the compiled generation
        # functions by static signature (see generation.py).
        self._untracked = types.SimpleNamespace(variables_by_name={}, generation_functions={})
        self._untracked.variables_by_name = self._bind_variables()
        if state is not None:
            self.load_canonical_state(state)
        elif not all(given.values()) or config.needs_projection:
            fresh = init_weights(config, seed=0)
            self.load_canonical_state(
                {k: v for k, v in fresh.items() if not given.get(k.split(".", 1)[0], False)}, partial=True
            )
        self.generation_config = GenerationConfig.from_model_config(config)
        self.built = True

    # ------------------------------------------------------------------ weights

    def _bind_variables(self) -> dict:
        """Each stored parameter of the spec -> the Keras variable that holds it (in the TF layout)."""
        bound = {}
        for p in self.spec:
            try:
                variable = _variable(self, p)
            except (AttributeError, IndexError, ValueError) as error:
                raise AssertionError(f"{p.name}: no Keras variable at this name ({error})") from None
            shape = tuple(variable.shape)
            if shape != p.shape_in("tf"):
                raise AssertionError(f"{p.name}: Keras variable has shape {shape}; the spec says {p.shape_in('tf')}")
            bound[p.name] = variable
        if len({id(v) for v in bound.values()}) != len(bound):
            raise AssertionError("two stored parameters of the spec share one Keras variable")
        return bound

    @property
    def _variables_by_name(self) -> dict:
        return self._untracked.variables_by_name

    @property
    def _generation_functions(self) -> dict:
        return self._untracked.generation_functions

    @classmethod
    def from_state(cls, config: EncoderDecoderConfig, state: Mapping, dtype=None) -> "TFEncoderDecoderModel":
        """A model holding `state`: canonical numpy tensors, every stored name of `model_spec(config)`.

        The TF port computes in float32: `dtype` may be None or float32.
        """
        if dtype is not None and tf.as_dtype(dtype) != tf.float32:
            raise ConfigError(f"dtype {dtype!r}: the TensorFlow port computes in float32; expected None or float32")
        return cls(config=config, _state=state)

    def _native_array(self, param: ParamSpec) -> np.ndarray:
        """The variable of `param` (a stored ParamSpec) as numpy, in the TF layout."""
        return self._variables_by_name[param.name].numpy()

    def _assign_canonical(self, state: Mapping) -> None:
        """Assign checked canonical tensors to the model's variables (kept: an optimizer's slots stay bound)."""
        for name, array in state.items():
            variable = self._variables_by_name[name]
            native = self.spec.by_name[name].to_native(np.asarray(array), "tf")
            variable.assign(native.astype(variable.dtype, copy=False))

    @classmethod
    def _build_from_state(cls, config: EncoderDecoderConfig, state: Mapping, options, owned: bool):
        """`from_state` of a loaded `state` (assigned to new variables, so `owned` changes nothing);
        `dtype="auto"` is float32, the port's only dtype."""
        return cls.from_state(config, state, None if options.dtype == "auto" else options.dtype)

    def _rebuild(self, new_state: dict) -> None:
        """New Keras layers for the resized config (the decoder, and the encoder when tied), bound and
        given `new_state`; the compiled generation functions traced the old ones."""
        encoder, decoder = _build_pair(self.config)
        if self.config.tie_encoder_decoder:
            self._replace_layer("encoder", encoder)
        self._replace_layer("decoder", decoder)
        self._untracked.variables_by_name = self._bind_variables()
        self.load_canonical_state(new_state)
        self._generation_functions.clear()

    def _decoder_word_embeddings(self) -> keras.layers.Embedding:
        return self.decoder.get_input_embeddings()

    def _replace_layer(self, name: str, layer: keras.layers.Layer) -> None:
        """Swap a sublayer, so that the old one's variables leave `self.weights` (Keras keeps reassigned ones)."""
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            self._tracker.untrack(getattr(self, name))
            setattr(self, name, layer)
        finally:
            if locked:
                self._tracker.lock()

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                      encoder_outputs, past_key_values, labels, token_type_ids, position_ids):
        """Every input checked before any work: the core's rule on what the host sees (values eagerly;
        shapes and dtypes inside a graph), and in a graph the labels' values as an assertion."""
        past = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        states = _last_hidden_state(encoder_outputs) if encoder_outputs is not None else None
        check_model_inputs(
            self.config, *map(_host_facts, (input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                                            states, labels, token_type_ids, position_ids)),
            past_length=past or 0,
        )
        if labels is not None and not tf.executing_eagerly():
            vocab = self.config.decoder.vocab_size
            wide = tf.cast(labels, tf.int64)
            valid = tf.equal(wide, IGNORE_INDEX) | ((wide >= 0) & (wide < vocab))
            tf.debugging.Assert(tf.reduce_all(valid), [f"labels hold ids outside [0, {vocab}) other than -100"])

    def _encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_attentions=False, output_hidden_states=False, training=False, **extra):
        kwargs = dict(
            extra,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(input_ids, **kwargs)

    def _project(self, encoder_hidden_states):
        """Encoder states in the decoder's width: `[B, S, H_enc]` -> `[B, S, H_dec]`."""
        if self.enc_to_dec_proj is not None:
            return self.enc_to_dec_proj(encoder_hidden_states)
        return encoder_hidden_states

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        training=False,
        **kwargs,
    ):
        """As transformers' call: an output flag left None is each half's config's, `return_dict` None the
        joined config's; extra kwargs go to the encoder, `decoder_`-prefixed ones (unprefixed) to the decoder."""
        if isinstance(input_ids, Mapping):
            # A dict of inputs as the first argument, as Keras' fit/evaluate pass a batch.
            unknown = sorted(set(input_ids) - set(_CALL_INPUTS))
            if unknown:
                raise InputError(f"unknown input(s) {unknown}; expected some of {list(_CALL_INPUTS)}")
            return self.call(
                **input_ids,
                use_cache=use_cache,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=return_dict,
                training=training,
                **kwargs,
            )
        encoder_kwargs, decoder_kwargs = route_half_kwargs(
            kwargs, {"encoder": self.encoder, "decoder": self.decoder}, "call", _SET_BY_MODEL
        )
        encoder_flags = output_flags(self.config.encoder, output_attentions, output_hidden_states)
        decoder_flags = output_flags(self.config.decoder, output_attentions, output_hidden_states)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        self._check_inputs(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                           encoder_outputs, past_key_values, labels, token_type_ids, position_ids)
        attention_mask, decoder_attention_mask = (
            tf.convert_to_tensor(t) if t is not None else None for t in (attention_mask, decoder_attention_mask)
        )
        input_ids, decoder_input_ids, labels = map(_as_index_tensor, (input_ids, decoder_input_ids, labels))
        if encoder_outputs is None:
            encoder_outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids,
                                           *encoder_flags, training, **encoder_kwargs)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=_last_hidden_state(encoder_outputs))
        encoder_hidden_states = self._project(encoder_outputs.last_hidden_state)

        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            if decoder_attention_mask is None:
                # transformers masks the decoder's pad tokens when it makes the decoder inputs from labels
                decoder_attention_mask = tf.cast(
                    tf.not_equal(decoder_input_ids, self.config.pad_token_id), decoder_input_ids.dtype
                )

        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=decoder_flags[0],
            output_hidden_states=decoder_flags[1],
            training=training,
            **decoder_kwargs,
        )
        logits = decoder_outputs.logits
        out = Seq2SeqLMOutput(
            loss=_cross_entropy(logits, labels) if labels is not None else None,
            logits=logits,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return out if return_dict else out.to_tuple()

    # ------------------------------------------------------------------ the port contract

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               output_attentions=False, output_hidden_states=False) -> BaseModelOutput:
        """The encoder's own output for `input_ids` `[B, S]` (not projected to the decoder width);
        inputs checked first."""
        check_encoder_inputs(self.config, *map(_host_facts, (input_ids, attention_mask, token_type_ids, position_ids)))
        return self._encode(input_ids, attention_mask, token_type_ids, position_ids,
                            output_attentions, output_hidden_states)

    def init_cache(self, batch_size, max_length, encoder_outputs, encoder_attention_mask=None) -> dict:
        """A cache for `max_length` decoder tokens over `encoder_outputs` (`encode`'s output, or the
        encoder states `[B, S, H_enc]`), with their mask `[B, S]` (None: every position attended).

        The states are projected to the decoder width and each layer's cross-attention keys
        and values computed once, here. `batch_size` is the self-attention rows: B, or n * B
        (n rows per batch item, item by item: the beams of a beam search); the cross keys/values
        and the mask stay per batch item, not repeated n times: an item's rows attend them
        together (`_fold_beams_attend`). Returns `{"index": 0, "encoder_attention_mask": [B, S]
        or None, "layers": ({"key", "value": [batch_size, H, max_length, D] zeros, "cross_key",
        "cross_value": [B, H, S, D]}, ...)}`.
        """
        states = tf.convert_to_tensor(_last_hidden_state(encoder_outputs))
        check_encoder_outputs(self.config, _host_facts(states), _host_facts(encoder_attention_mask))
        known = states.shape[0]
        if isinstance(batch_size, (int, np.integer)) and (batch_size < 1 or (known is not None and batch_size % known)):
            raise InputError(
                f"batch_size is {batch_size}; expected a positive multiple of the encoder output's batch {known}"
            )
        if isinstance(max_length, (int, np.integer)) and not 0 < max_length <= self.config.decoder.max_positions:
            raise InputError(
                f"max_length is {max_length}; expected 1 to {self.config.decoder.max_positions} (the decoder's "
                "position table)"
            )
        cross = self.decoder.base_model._cross_attention_cache(self._project(states))  # per layer [B, H, S, D]
        dec = self.config.decoder
        empty = tf.zeros(tf.stack([batch_size, dec.num_attention_heads, max_length, dec.head_dim]), states.dtype)
        mask = None if encoder_attention_mask is None else tf.convert_to_tensor(encoder_attention_mask)
        return {
            "index": tf.constant(0, tf.int32),
            "encoder_attention_mask": mask,
            "layers": tuple({"key": empty, "value": empty, "cross_key": key, "cross_value": value}
                            for key, value in cross),
        }

    def decode_step(self, decoder_input_ids, cache: dict, decoder_position_ids=None) -> tuple:
        """`[B, T]` new tokens after the `cache["index"]` cached ones -> (logits `[B, T, V]`, the cache with
        the tokens' keys and values written and `index` advanced by T).

        Inputs are checked first (eagerly with their values; compiled, their shapes):
        ids in the vocabulary, the tokens fit the cache and the position table.
        """
        index = cache["index"]
        layers = cache["layers"]
        cache_length = layers[0]["key"].shape[2]
        traced = not tf.executing_eagerly()
        check_decoder_inputs(
            self.config, _host_facts(decoder_input_ids), layers[0]["key"].shape[0],
            decoder_position_ids=_host_facts(decoder_position_ids),
            past_length=0 if traced else int(index), cache_length=None if traced else cache_length,
        )
        ids = _as_index_tensor(decoder_input_ids)
        out = self.decoder(
            ids,
            position_ids=_as_index_tensor(decoder_position_ids),
            encoder_attention_mask=cache["encoder_attention_mask"],
            past_key_values=tuple((l["key"], l["value"], l["cross_key"], l["cross_value"]) for l in layers),
            use_cache=True,
            cache_index=index,
        )
        new_layers = tuple(
            dict(layer, key=present[0], value=present[1]) for layer, present in zip(layers, out.past_key_values)
        )
        return out.logits, dict(cache, index=index + tf.shape(ids)[1], layers=new_layers)

    def reorder_cache(self, cache: dict, rows) -> dict:
        """The cache of the self-attention rows `rows` `[N]`, in that order (beam search: each beam
        continues from the row it extends). Cross keys/values and the encoder mask follow the rows
        when they have as many rows as the self-attention keys (known when traced); kept per batch
        item otherwise (then `rows` must stay within each row's batch item, as beam search's do).
        """
        rows = tf.convert_to_tensor(rows)
        first = cache["layers"][0]
        self_rows, cross_rows = first["key"].shape[0], first["cross_key"].shape[0]
        follow = self_rows is not None and self_rows == cross_rows
        layers = []
        for layer in cache["layers"]:
            names = ("key", "value", "cross_key", "cross_value") if follow else ("key", "value")
            layers.append(dict(layer, **{name: tf.gather(layer[name], rows) for name in names}))
        mask = cache["encoder_attention_mask"]
        if follow and mask is not None:
            mask = tf.gather(mask, rows)
        return dict(cache, encoder_attention_mask=mask, layers=tuple(layers))

    # ------------------------------------------------------------------ Keras training

    def train_step(self, data):
        return super().train_step(_with_labels(data))

    def test_step(self, data):
        return super().test_step(_with_labels(data))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The model's own loss (from the batch's `labels`), so that `compile()` needs none."""
        if sample_weight is not None:
            raise InputError("sample_weight is not supported; expected -100 in labels for positions to ignore")
        if y_pred.loss is None:
            raise InputError(
                "no labels to compute the loss from; expected a 'labels' entry or (inputs, labels) batches"
            )
        loss = y_pred.loss + tf.add_n(self.losses) if self.losses else y_pred.loss
        # Keras sums the replicas' losses (and reports the sum unscaled): each replica gives its share.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    # ------------------------------------------------------------------ generation

    def serving_generate_function(self, generation_config: Optional[GenerationConfig] = None,
                                  jit_compile: bool = True, **kwargs) -> tf.types.experimental.GenericFunction:
        """A `tf.function(input_ids, attention_mask) -> dict` for `tf.saved_model.save`.

        Inputs are `[batch, length]` int32 (any batch and length). The dict holds
        `sequences` `[batch * num_return_sequences, max_length]` int32 (padded past
        `length`), `length` (int32: how many columns `generate` would return) and, for
        beam search, `sequences_scores`. Sampling draws from a fixed seed given as `seed=`.
        """
        from .generation import _beam_options, _generation_function, _returned_hypotheses

        seed = int(kwargs.pop("seed", 0))
        setup = plan_generation(self.config, generation_config, self.generation_config, kwargs, None, 1,
                                port_options=())
        plan = setup.plan
        inner = _generation_function(self, plan, False, False, jit_compile)
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec], autograph=False)
        def serve(input_ids, attention_mask):
            start = tf.fill(tf.stack([tf.shape(input_ids)[0], 1]), plan.start_token_id)  # [B, 1]: the decoder prompt
            out = inner(input_ids, attention_mask, start, tf.constant(seed, tf.int64), *_beam_options(setup))
            if plan.num_beams == 1:
                return {"sequences": out["sequences"], "length": out["length"]}
            returned = _returned_hypotheses(out, plan.num_return_sequences, plan.max_length)
            return {k: returned[k] for k in ("sequences", "length", "sequences_scores")}

        return serve

    # ------------------------------------------------------------------ transformers' conveniences

    def _trainable_names(self) -> set:
        """The stored names whose variable is among Keras' trainable variables."""
        trainable = {id(v) for v in self.trainable_variables}
        return {name for name, v in self._variables_by_name.items() if id(v) in trainable}


def _with_labels(data):
    """A Keras batch as one dict of `call`'s inputs: `(inputs, labels)` pairs get their labels in the dict."""
    if isinstance(data, (tuple, list)):
        if len(data) == 3 and data[2] is not None:
            raise InputError("sample_weight is not supported; expected -100 in labels for positions to ignore")
        inputs, labels = data[0], data[1] if len(data) > 1 else None
        if not isinstance(inputs, Mapping):
            inputs = {"input_ids": inputs}
        if labels is not None:
            inputs = dict(inputs, labels=labels)
        return inputs
    return data
