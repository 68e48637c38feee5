"""`TFEncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder, in Keras 3.

Weights move in and out only through the core (`encdec.weights`): a numpy dict keyed
by canonical name. The layer tree mirrors the PyTorch module tree, so walking it
gives each Keras variable its canonical name (`_named_variables`); the spec then
gives its h5 name and layout. Tied parameters (the LM head and the word embeddings,
`tie_encoder_decoder`) are one Keras variable reached under several names.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Mapping
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from ..config import (
    ArchConfig,
    EncoderDecoderConfig,
    GENERATION_CONFIG_NAME,
    GenerationConfig,
    load_arch_config,
    split_role_kwargs,
)
from ..errors import CheckpointError, ConfigError, InputError
from ..weights.names import TF_ROOT_SCOPE, ModelSpec, init_weights, model_spec, resize_decoder_vocab
from .bert import TFBertLMHeadModel, TFBertModel
from .bert_generation import TFBertGenerationDecoder, TFBertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _cross_entropy, _dense, _named_variables, check_input_ids
from .gpt2 import TFGPT2LMHeadModel
from .roberta import TFRobertaForCausalLM, TFRobertaModel

logger = logging.getLogger("encdec")

ENCODER_CLASSES = {"bert": TFBertModel, "roberta": TFRobertaModel, "bert-generation": TFBertGenerationEncoder}
DECODER_CLASSES = {
    "bert": TFBertLMHeadModel,
    "roberta": TFRobertaForCausalLM,
    "bert-generation": TFBertGenerationDecoder,
    "gpt2": TFGPT2LMHeadModel,
}

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


def shift_tokens_right(input_ids, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]):
    """Labels `[B, T]` -> decoder inputs `[B, T]`: start token, then the labels shifted right, -100 -> pad."""
    if decoder_start_token_id is None:
        raise ConfigError(
            "decoder_start_token_id is not set; expected model.config.decoder_start_token_id to be the id the "
            "decoder starts from (e.g. the [CLS] id for BERT)"
        )
    if pad_token_id is None:
        raise ConfigError(
            "pad_token_id is not set; expected model.config.pad_token_id, which replaces -100 in the shifted labels"
        )
    input_ids = tf.convert_to_tensor(input_ids)
    start = tf.fill(tf.stack([tf.shape(input_ids)[0], 1]), tf.cast(decoder_start_token_id, input_ids.dtype))
    shifted = tf.concat([start, input_ids[:, :-1]], axis=1)
    return tf.where(tf.equal(shifted, -100), tf.cast(pad_token_id, input_ids.dtype), shifted)


def _build_encoder(config: ArchConfig) -> keras.Model:
    return ENCODER_CLASSES[config.model_type](config, name="encoder")


def _build_decoder(config: ArchConfig, shared: Optional[keras.Model] = None) -> keras.Model:
    return DECODER_CLASSES[config.model_type](config, shared=shared, name="decoder")


def _is_eager(*tensors) -> bool:
    return tf.executing_eagerly() or all(isinstance(t, np.ndarray) for t in tensors if t is not None)


class TFEncoderDecoderModel(keras.Model):
    """An encoder (`TFBertModel`, `TFRobertaModel`, `TFBertGenerationEncoder`) and a decoder with an LM head.

    `TFEncoderDecoderModel(config=...)` is a random model drawn by `init_weights(config, seed=0)`
    (the same model in every port); `TFEncoderDecoderModel(encoder=..., decoder=...)` joins
    two Keras models. Checkpoints load from and save to transformers' formats.
    `compile()` needs no loss: the model's own loss (from `labels`) is trained.
    """

    main_input_name = "input_ids"

    def __init__(
        self,
        config: Optional[EncoderDecoderConfig] = None,
        encoder: Optional[keras.Model] = None,
        decoder: Optional[keras.Model] = None,
        **kwargs: Any,
    ) -> None:
        state = kwargs.pop("_state", None)  # from_pretrained's weights, instead of a random draw
        kwargs.setdefault("name", TF_ROOT_SCOPE)
        super().__init__(**kwargs)
        if config is None:
            if encoder is None or decoder is None:
                raise ConfigError("TFEncoderDecoderModel needs a config, or both an encoder and a decoder model")
            config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        if not isinstance(config, EncoderDecoderConfig):
            raise ConfigError(f"config is a {type(config).__name__}; expected an EncoderDecoderConfig")
        if config.tie_encoder_decoder and decoder is not None:
            raise ConfigError(
                "tie_encoder_decoder=True builds the decoder on the encoder's weights; expected no decoder model "
                "(pass the config, or load with from_encoder_decoder_pretrained)"
            )
        self.config = config
        given = {"encoder": encoder is not None, "decoder": decoder is not None}
        self.encoder = encoder if encoder is not None else _build_encoder(config.encoder)
        if hasattr(self.encoder, "get_output_embeddings"):
            raise ConfigError(
                f"the encoder {type(self.encoder).__name__} has an LM head; expected a bare encoder model"
            )
        self.decoder = decoder if decoder is not None else _build_decoder(
            config.decoder, self.encoder if config.tie_encoder_decoder else None
        )
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
            self._assign_state(state)
        elif not all(given.values()) or config.needs_projection:
            fresh = init_weights(config, seed=0)
            self._assign_state(
                {k: v for k, v in fresh.items() if not given.get(k.split(".", 1)[0], False)}, partial=True
            )
        self.generation_config = GenerationConfig.from_model_config(config)
        self.built = True

    # ------------------------------------------------------------------ weights

    def _bind_variables(self) -> dict:
        """Each stored parameter of the spec -> the Keras variable that holds it (in the TF layout)."""
        named = _named_variables(self)
        missing = [p.name for p in self.spec if p.name not in named]
        extra = [name for name in named if name not in self.spec.by_name]
        if missing or extra:
            raise AssertionError(
                f"the Keras layers do not match the parameter spec: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for p in self.spec:
            shape = tuple(named[p.name].shape)
            if shape != p.tf_shape:
                raise AssertionError(f"{p.name}: Keras variable has shape {shape}; the spec says {p.tf_shape}")
        return {p.name: named[p.name] for p in self.spec}

    @property
    def _variables_by_name(self) -> dict:
        return self._untracked.variables_by_name

    @property
    def _generation_functions(self) -> dict:
        return self._untracked.generation_functions

    def _assign_state(self, state: Mapping, partial: bool = False) -> None:
        """Put numpy tensors (canonical names and layouts, stored parameters only) into the variables."""
        missing = [p.name for p in self.spec if p.name not in state]
        if missing and not partial:
            raise CheckpointError(f"no value for {len(missing)} parameter(s), e.g. {missing[:5]}; expected all of them")
        for name, array in state.items():
            spec = self.spec.by_name.get(name)
            if spec is None:
                raise CheckpointError(f"{name}: not a parameter of this model; expected one of the spec's names")
            array = np.asarray(array)
            if tuple(array.shape) != spec.shape:
                raise CheckpointError(f"{name}: shape {tuple(array.shape)}; expected {spec.shape}")
            variable = self._variables_by_name[name]
            variable.assign(spec.to_tf(array).astype(variable.dtype, copy=False))

    def _numpy_state(self) -> dict:
        """The stored parameters as numpy arrays in the canonical layout, by canonical name (tied names left out)."""
        return {p.name: p.from_tf(self._variables_by_name[p.name].numpy()) for p in self.spec}

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs: Any) -> "TFEncoderDecoderModel":
        """Load a checkpoint folder written by transformers or encdec, in any of the four formats."""
        from ..weights.convert import load_state

        directory = os.fspath(directory)
        config = kwargs.pop("config", None) or EncoderDecoderConfig.from_pretrained(directory)
        fmt = kwargs.pop("fmt", None)
        for key, value in kwargs.items():
            setattr(config, key, value)
        state, _report = load_state(directory, model_spec(config), fmt=fmt)
        model = cls(config=config, _state=state)
        if os.path.isfile(os.path.join(directory, GENERATION_CONFIG_NAME)):
            model.generation_config = GenerationConfig.from_pretrained(directory)
        return model

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        decoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        *,
        init_seed: int = 0,
        **kwargs: Any,
    ) -> "TFEncoderDecoderModel":
        """Join a pretrained encoder folder and a pretrained decoder folder (any of the four formats).

        `encoder_*` / `decoder_*` kwargs update the encoder / decoder config (`encoder_config=` /
        `decoder_config=` give a config); the others update the joined config. What the
        checkpoints lack (cross-attention, often the decoder's LM head) is drawn with
        `init_weights(config, init_seed)` and logged by name.
        """
        from ..weights.convert import load_component

        parts = split_role_kwargs(kwargs)
        configs, paths = {}, {}
        for role, path in (
            ("encoder", encoder_pretrained_model_name_or_path),
            ("decoder", decoder_pretrained_model_name_or_path),
        ):
            options = parts[role]
            if path is None:
                raise ConfigError(f"no {role} given; expected {role}_pretrained_model_name_or_path")
            paths[role] = os.fspath(path)
            config = options.pop("config", None)
            config = config.copy() if config is not None else load_arch_config(paths[role])
            for key, value in options.items():
                setattr(config, key, value)
            if role == "encoder" and (config.is_decoder or config.add_cross_attention):
                logger.info(
                    "%s: loading a decoder config as the encoder; cross-attention and the causal mask are off",
                    paths[role],
                )
                config.is_decoder = False
                config.add_cross_attention = False
            if role == "decoder" and not (config.is_decoder and config.add_cross_attention):
                logger.info(
                    "%s: loading as a decoder; cross-attention layers are added and drawn at random", paths[role]
                )
                config.is_decoder = True
                config.add_cross_attention = True
            configs[role] = config
        config = EncoderDecoderConfig.from_encoder_decoder_configs(configs["encoder"], configs["decoder"], **kwargs)

        full = init_weights(config, seed=init_seed)
        drawn = []
        for role in ("encoder", "decoder"):
            state, report = load_component(paths[role], getattr(config, role), role)
            for name, array in state.items():
                full[f"{role}.{name}"] = array
            drawn += [f"{role}.{name}" for name in report.missing]
        spec = model_spec(config)
        if config.needs_projection:
            drawn += [p.name for p in spec if p.name.startswith("enc_to_dec_proj.")]
        drawn = [name for name in drawn if name in spec.by_name]
        model = cls(config=config, _state={p.name: full[p.name] for p in spec})
        if drawn:
            logger.warning(
                "%d parameter(s) are not in the pretrained checkpoints and were newly initialised "
                "(init_weights, seed %d): %s",
                len(drawn),
                init_seed,
                ", ".join(drawn),
            )
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = False,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write weights (`tf_model.h5` in transformers' Keras 2 layout, or `model.safetensors` with
        `safe_serialization=True`), config.json and generation_config.json.

        The folder is written to a temporary sibling and renamed into place, so a failure
        leaves any previous checkpoint there whole; weight files of the previous
        checkpoint (any format) are not carried over, so the folder holds one set of weights.
        """
        from ..weights.convert import save_state
        from ..weights.formats import is_weight_file
        from ..weights.io import atomic_directory, parse_size

        fmt = "safetensors" if safe_serialization else "tf"
        shard_size = parse_size(max_shard_size) if max_shard_size is not None else None
        state = self._numpy_state()
        config = self.config.copy()
        config.architectures = ["EncoderDecoderModel"]
        with atomic_directory(save_directory, keep=lambda name: not is_weight_file(name)) as tmp:
            save_state(state, self.spec, tmp, fmt, shard_size=shard_size)
            config.save_pretrained(tmp)
            self.generation_config.save_pretrained(tmp)

    # ------------------------------------------------------------------ accessors

    def get_encoder(self) -> keras.Model:
        return self.encoder

    def get_decoder(self) -> keras.Model:
        return self.decoder

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> keras.layers.Layer:
        return self.decoder.get_output_embeddings()

    def resize_token_embeddings(self, new_num_tokens: int) -> keras.layers.Embedding:
        """Give the decoder a vocabulary of `new_num_tokens`: word embeddings, LM head and its bias.

        Kept rows keep their values; new rows are drawn as `init_weights` draws them
        (N(0, initializer_range), seed 0; biases 0). Ties are kept; with
        `tie_encoder_decoder` the shared table is the encoder's too, so both vocabularies
        change. The rebuilt layers replace the old ones (compile again before training).
        Returns the decoder's new input embedding.
        """
        if not isinstance(new_num_tokens, int) or new_num_tokens <= 0:
            raise ConfigError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
        if new_num_tokens == self.config.decoder.vocab_size:
            return self.decoder.get_input_embeddings()
        config, new_state = resize_decoder_vocab(self.config, self._numpy_state(), new_num_tokens)
        self.config = config
        if config.tie_encoder_decoder:
            self._replace_layer("encoder", _build_encoder(config.encoder))
        self._replace_layer(
            "decoder", _build_decoder(config.decoder, self.encoder if config.tie_encoder_decoder else None)
        )
        self.spec = model_spec(config)
        self._untracked.variables_by_name = self._bind_variables()
        self._assign_state(new_state)
        self._generation_functions.clear()
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

    def _decoder_position_limit(self) -> int:
        base = self.decoder.base_model
        if hasattr(base, "embeddings"):
            return base.embeddings._position_limit()
        return base.config.n_positions

    def _check_inputs(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                      encoder_outputs, past_key_values, labels):
        """Every shape and id range checked before any work (eagerly on the host; in a graph, as assertions)."""
        cfg = self.config
        if input_ids is None and encoder_outputs is None:
            raise InputError("no encoder input; expected input_ids or encoder_outputs")
        if decoder_input_ids is None and labels is None:
            raise InputError("no decoder input; expected decoder_input_ids or labels")
        if input_ids is not None:
            check_input_ids(input_ids, cfg.encoder.vocab_size, None, "input_ids")
            batch_shape = tuple(input_ids.shape)
            if attention_mask is not None and tuple(attention_mask.shape) != batch_shape and _is_eager(attention_mask):
                raise InputError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected {batch_shape} like input_ids"
                )
        else:
            states = encoder_outputs[0]
            batch_shape = tuple(states.shape[:2])
            if len(states.shape) != 3 or states.shape[-1] != cfg.encoder.hidden_size:
                raise InputError(
                    f"encoder_outputs[0] has shape {tuple(states.shape)}; expected [batch, length, "
                    f"{cfg.encoder.hidden_size}]"
                )
            if attention_mask is not None and tuple(attention_mask.shape) != batch_shape and _is_eager(attention_mask):
                raise InputError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected {batch_shape} "
                    "like encoder_outputs"
                )
        batch = batch_shape[0]
        if labels is not None:
            _check_labels(labels, batch, cfg.decoder.vocab_size)
        if decoder_input_ids is not None:
            check_input_ids(decoder_input_ids, cfg.decoder.vocab_size, None, "decoder_input_ids")
            if batch is not None and decoder_input_ids.shape[0] not in (None, batch):
                raise InputError(
                    f"decoder_input_ids has batch size {decoder_input_ids.shape[0]}; expected {batch} like the "
                    "encoder input"
                )
            if labels is not None and tuple(labels.shape) != tuple(decoder_input_ids.shape) and _is_eager(labels):
                raise InputError(
                    f"labels has shape {tuple(labels.shape)}; expected {tuple(decoder_input_ids.shape)} like "
                    "decoder_input_ids"
                )
        length = (decoder_input_ids if decoder_input_ids is not None else labels).shape[1]
        past = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        limit = self._decoder_position_limit()
        if length is not None and past is not None and past + length > limit:
            raise InputError(
                f"the decoder input has length {length} after {past} cached tokens; the decoder's position table "
                f"covers {limit} tokens, expected at most {limit} in all"
            )
        if decoder_attention_mask is not None and _is_eager(decoder_attention_mask):
            expected = (batch, past + length)
            if tuple(decoder_attention_mask.shape) != expected:
                raise InputError(
                    f"decoder_attention_mask has shape {tuple(decoder_attention_mask.shape)}; expected "
                    f"{expected} (batch, cached + new decoder tokens)"
                )

    def _encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_attentions=False, output_hidden_states=False, training=False):
        kwargs = dict(
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
        output_attentions=False,
        output_hidden_states=False,
        return_dict=True,
        training=False,
    ):
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
            )
        input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, labels = (
            tf.convert_to_tensor(t) if t is not None else None
            for t in (input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, labels)
        )
        self._check_inputs(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                           encoder_outputs, past_key_values, labels)
        if encoder_outputs is None:
            encoder_outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids,
                                           output_attentions, output_hidden_states, training)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
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
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
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
        return y_pred.loss + tf.add_n(self.losses) if self.losses else y_pred.loss

    # ------------------------------------------------------------------ generation

    def generate(self, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None, **kwargs):
        """Greedy, sampling or beam search, with transformers 5's semantics (see `encdec.tf.generation`).

        Compiled with XLA by default (`jit_compile=False` runs eagerly); the compiled
        function is kept per generation settings and reused.
        """
        from .generation import generate

        return generate(self, input_ids, attention_mask, generation_config, **kwargs)

    def serving_generate_function(self, generation_config: Optional[GenerationConfig] = None,
                                  jit_compile: bool = True, **kwargs) -> tf.types.experimental.GenericFunction:
        """A `tf.function(input_ids, attention_mask) -> dict` for `tf.saved_model.save`.

        Inputs are `[batch, length]` int32 (any batch and length). The dict holds
        `sequences` `[batch * num_return_sequences, max_length]` int32 (padded past
        `length`), `length` (int32: how many columns `generate` would return) and, for
        beam search, `sequences_scores`. Sampling draws from a fixed seed given as `seed=`.
        """
        from .generation import _beam_options, _generation_function, _make_plan, _returned_hypotheses

        seed = int(kwargs.pop("seed", 0))
        base = generation_config if generation_config is not None else self.generation_config
        explicit_max_length = "max_length" in kwargs or base.max_length != GenerationConfig.defaults["max_length"]
        config = base.update(**kwargs)
        plan = _make_plan(self, config, explicit_max_length)
        inner = _generation_function(self, plan, False, False, jit_compile)
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec], autograph=False)
        def serve(input_ids, attention_mask):
            start = tf.fill(tf.stack([tf.shape(input_ids)[0], 1]), plan.start)  # [B, 1]: the decoder prompt
            out = inner(input_ids, attention_mask, start, tf.constant(seed, tf.int64),
                        *_beam_options(config, plan.max_length))
            if plan.num_beams == 1:
                return {"sequences": out["sequences"], "length": out["length"]}
            returned = _returned_hypotheses(out, config.num_return_sequences, plan.max_length)
            return {k: returned[k] for k in ("sequences", "length", "sequences_scores")}

        return serve


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


def _check_labels(labels, batch, vocab_size: int) -> None:
    """Labels are `[batch, length]` ids in `[0, vocab_size)`, or -100 (ignored)."""
    if labels.shape.rank != 2 or (batch is not None and labels.shape[0] not in (None, batch)):
        raise InputError(f"labels has shape {tuple(labels.shape)}; expected [{batch}, target length]")
    if tf.executing_eagerly():
        values = labels.numpy()
        valid = (values == -100) | ((values >= 0) & (values < vocab_size))
        if not valid.all():
            raise InputError(
                f"labels holds {int(values[~valid][0])}; expected ids in [0, {vocab_size}) or -100 (ignored)"
            )
        return
    valid = tf.equal(labels, -100) | ((labels >= 0) & (labels < tf.cast(vocab_size, labels.dtype)))
    tf.debugging.Assert(tf.reduce_all(valid), [f"labels hold ids outside [0, {vocab_size}) other than -100"])
