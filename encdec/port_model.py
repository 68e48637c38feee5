"""What the three `EncoderDecoderModel` classes share around their framework: written once; numpy only.

`EncoderDecoderModel` (PyTorch), `TFEncoderDecoderModel` (Keras) and
`FlaxEncoderDecoderModel` inherit `EncoderDecoderMixin`: loading and saving
transformers' folders, the canonical state in and out, resizing the vocabulary,
counting parameters, transformers' accessors, `generate` and the
`generation_config` attribute. The PyTorch and Flax classes also inherit
`GradientCheckpointingMixin` (transformers' TF models had no gradient
checkpointing, and neither has the TF port). Each mixin calls small hooks that
the port writes in its framework; a port overrides a public method only where its
signature differs (transformers' per-framework defaults and options).
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any, Mapping, Optional

from .config import EncoderDecoderConfig, GenerationConfig
from .loading import split_loading_kwargs
from .weights.names import model_spec, resize_decoder_vocab, vocab_changes
from .weights.pretrained import GivenHalf, join_pretrained, read_pretrained, write_model_folder
from .weights.state import check_state, count_parameters


class EncoderDecoderMixin:
    """The framework-neutral methods of an encoder-decoder model holding `config` and `spec`
    (`encdec.weights.names.model_spec(config)`).

    A port gives:

    - `_port`: "pt", "tf" or "flax". The port `encdec.loading` resolves loading options
      for, the layout of the port's arrays (`ParamSpec.to_canonical`), and the weights
      format `save_pretrained` writes without `safe_serialization` (its framework's own).
    - `_build_from_state(config, state, options, owned, **framework_options)`, a
      classmethod: the model holding a canonical `state` (every stored name, or all
      but those of the halves given as `encoder=` / `decoder=`, see `_kept_halves`),
      built with the resolved loading `options` (`options.dtype` may still be "auto").
      `owned`: the arrays were read for this model alone, so they may become its
      parameters without a copy. `framework_options` are the arguments one port's
      loaders add (Flax's `compiler_options`).
    - `_native_array(param)`: the stored parameter `param` (a `ParamSpec`) as a numpy copy
      in the port's layout.
    - `_assign_canonical(state)`: copy a checked canonical `state` into the parameters.
    - `_rebuild(state)`: rebuild the model for its new `config` and `spec` (set before the
      call) from the canonical `state` of that config.
    - `_decoder_word_embeddings()`: what `resize_token_embeddings` returns, the decoder's
      word embeddings as the framework holds them.
    - `_trainable_names()`: the stored names the framework trains (None: all of them).

    and may override `_kept_halves(kwargs)` and `_saved_config()` (see each).
    """

    _port: str

    generation_config = GenerationConfig.model_attribute()

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, fmt: Optional[str] = None, dtype=None,
                        config=None, **kwargs):
        """Load a checkpoint folder written by transformers or encdec.

        Any of the four formats, sharded or not (`fmt` = "safetensors", "pt", "tf" or
        "flax" picks one when a folder holds several). `config` may be encdec's or a
        transformers config. transformers' loading options of the framework are taken out
        of the kwargs (`encdec.loading.split_loading_kwargs`): `dtype=` in every port (as
        `from_state` takes it, or "auto" for the checkpoint's; the TF port computes in
        float32 whatever the checkpoint holds), and PyTorch's own `torch_dtype=`,
        `device_map=` and `attn_implementation=` (a ConfigError in TF and Flax, whose
        transformers loaders did not take them); the `from_*` format flags are ignored.
        The other kwargs set attributes of the config; an unknown one is a ConfigError.
        The folder's generation_config.json, when there, becomes `generation_config`.
        PyTorch returns the model in eval mode, as transformers does.
        """
        return cls._load_pretrained(directory, fmt, dtype, config, kwargs)

    @classmethod
    def _load_pretrained(cls, directory: str | os.PathLike, fmt: Optional[str], dtype: Any, config: Any,
                         kwargs: Mapping[str, Any], **framework_options: Any):
        """`from_pretrained`, with the arguments one port's loader adds (`framework_options`)."""
        options, folder = read_pretrained(directory, cls._port, kwargs, fmt=fmt, dtype=dtype, config=config)
        # The state was read for this model alone.
        model = cls._build_from_state(folder.config, folder.state, options, owned=True, **framework_options)
        if folder.generation_config is not None:
            model.generation_config = folder.generation_config
        return model

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        decoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        *,
        init_seed: int = 0,
        **kwargs,
    ):
        """Join a pretrained encoder folder and a pretrained decoder folder (any of the four formats).

        `encoder_*` / `decoder_*` kwargs set that half's config (`encoder_config=` /
        `decoder_config=`: a config, encdec's or transformers'; `encoder_model=` /
        `decoder_model=`: a model of this port or transformers' PyTorch one instead of a
        folder, which keeps its weights); the others set the joined config. The loading
        options are `from_pretrained`'s. What no checkpoint holds (cross-attention, often
        the LM head, `enc_to_dec_proj`) is drawn with `init_weights(config, init_seed)` and
        logged by name (`encdec.weights.pretrained.join_pretrained`).
        """
        model, _drawn = cls._join_pretrained(encoder_pretrained_model_name_or_path,
                                             decoder_pretrained_model_name_or_path, init_seed, kwargs)
        return model

    @classmethod
    def _join_pretrained(cls, encoder_path: Optional[str | os.PathLike], decoder_path: Optional[str | os.PathLike],
                         init_seed: int, kwargs: Mapping[str, Any], **framework_options: Any) -> tuple[Any, list]:
        """(`from_encoder_decoder_pretrained`'s model, the canonical names drawn for it), with the
        arguments one port's loader adds (`framework_options`)."""
        kwargs = dict(kwargs)
        options = split_loading_kwargs(kwargs, cls._port)
        kept = cls._kept_halves(kwargs)
        config, state, drawn = join_pretrained(encoder_path, decoder_path, kwargs, init_seed,
                                               given={role: GivenHalf(half.config) for role, half in kept.items()})
        return cls._build_from_state(config, state, options, owned=False, **kept, **framework_options), drawn

    @classmethod
    def _kept_halves(cls, kwargs: dict) -> dict:
        """The models given as `encoder_model=` / `decoder_model=` that the joined model holds as they
        are, by role, popped out of `kwargs`; they reach `_build_from_state` as `encoder=` /
        `decoder=`. No half by default: `join_pretrained` saves each given model and reads it back."""
        return {}

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = False,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write the weights, config.json and generation_config.json.

        The weights are `model.safetensors` with `safe_serialization`, else the
        framework's own file (`pytorch_model.bin`, `tf_model.h5` in transformers' Keras 2
        layout, `flax_model.msgpack`); the default is transformers' for the framework
        (safetensors in PyTorch, the own file in TF and Flax). They are split into shards
        of at most `max_shard_size` (bytes, or a size such as "5GB") when given. The
        folder is written to a temporary sibling and renamed into place, so a failure
        leaves any previous checkpoint there whole; weight files of the previous
        checkpoint (any format) are not carried over, so the folder holds one set of
        weights, and a config value that is not JSON is a ConfigError before anything
        is written (`encdec.weights.pretrained.write_model_folder`).
        """
        self._write_folder(save_directory, self.canonical_state(), safe_serialization, max_shard_size)

    def _write_folder(self, save_directory: str | os.PathLike, state: Mapping[str, Any], safe_serialization: bool,
                      max_shard_size: Optional[int | str]) -> None:
        """`save_pretrained` of the canonical `state`."""
        write_model_folder(save_directory, state, self.spec, self._saved_config(), self.generation_config,
                           "safetensors" if safe_serialization else self._port, max_shard_size)

    def _saved_config(self) -> EncoderDecoderConfig:
        """The config `save_pretrained` writes: the model's by default."""
        return self.config

    # ------------------------------------------------------------------ the canonical state

    def canonical_state(self) -> dict:
        """The stored parameters as numpy arrays in the canonical layout (copies: changing them leaves
        the model as it was), by canonical name (tied names left out)."""
        return {p.name: p.to_canonical(self._native_array(p), self._port) for p in self.spec}

    def load_canonical_state(self, state: Mapping, partial: bool = False) -> None:
        """Copy canonical numpy tensors into the model's parameters, each cast to its parameter's
        dtype (and device): PyTorch's parameters and Keras' variables stay the same objects (an
        optimizer keeps them), Flax's `params` become a new tree of the same paths and dtypes.

        Every stored name is needed unless `partial`. CheckpointError for a tied or
        unknown name, a wrong shape (naming the tensor and both shapes) or a missing
        name, before anything is copied.
        """
        check_state(self.spec, state, partial)
        self._assign_canonical(state)

    def resize_token_embeddings(self, new_num_tokens: int):
        """Give the decoder a vocabulary of `new_num_tokens`: word embeddings, LM head and its bias.

        Kept rows keep their values; new rows are drawn as `init_weights` draws them
        (N(0, initializer_range), seed 0; biases 0). Ties are kept; with
        `tie_encoder_decoder` the shared table is the encoder's too, so both vocabularies
        change. The rebuilt layers replace the old ones (a Keras model is compiled again
        before training), and compiled generation functions (TF, Flax) are dropped. ConfigError
        unless `new_num_tokens` is a positive int. Returns the decoder's new input
        embedding (Flax: its word-embedding table).
        """
        if vocab_changes(self.config, new_num_tokens):
            config, state = resize_decoder_vocab(self.config, self.canonical_state(), new_num_tokens)
            self.config = config
            self.spec = model_spec(config)
            self._rebuild(state)
        return self._decoder_word_embeddings()

    # ------------------------------------------------------------------ transformers' conveniences

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """How many numbers the stored parameters hold, each tied one once, as transformers counts:
        only those the framework trains with `only_trainable` (PyTorch's `requires_grad`, Keras'
        trainable variables; Flax marks nothing untrainable, the optimizer decides, so there it
        changes nothing), without the embedding tables with `exclude_embeddings`. What a
        framework keeps besides the parameters (Keras' dropout seed states) is not counted."""
        return count_parameters(self.spec, exclude_embeddings, self._trainable_names() if only_trainable else None)

    def get_encoder(self):
        """The encoder half."""
        return self.encoder

    def get_decoder(self):
        """The decoder half, with its LM head."""
        return self.decoder

    def get_input_embeddings(self):
        """The encoder's word embeddings."""
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self):
        """The decoder's projection to the vocabulary (the word embeddings when tied)."""
        return self.decoder.get_output_embeddings()

    def generate(self, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
                 decoder_input_ids=None, **options):
        """Greedy, sampling or beam search, with transformers 5's semantics.

        What a call means is decided by the core (`encdec.generation.plan_generation`);
        the loop, the options only one framework takes and what is returned are the
        port's `generate` (`encdec.pt.generation`, `encdec.tf.generation`,
        `encdec.flax.generation`). TF compiles the search with XLA by default
        (`jit_compile=False` runs eagerly) and Flax runs the whole loop under one
        `jax.jit` (sampling from `prng_key=` or `seed=`); both keep the compiled function
        per generation settings, so a second call with the same shapes compiles nothing.
        """
        generation = import_module(f"{__package__}.{self._port}.generation")
        return generation.generate(self, input_ids, attention_mask, generation_config, decoder_input_ids, **options)


class GradientCheckpointingMixin:
    """transformers' gradient checkpointing switches of the PyTorch and Flax model classes. A port gives
    `_switch_gradient_checkpointing(enable, gradient_checkpointing_kwargs)` (turn it on or off in both
    halves) and `_gradient_checkpointing_on()` (whether some half has it on)."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """Recompute every encoder and decoder layer in backward instead of keeping what it computed,
        as transformers does: PyTorch with `torch.utils.checkpoint` (in training mode with gradients
        on; `gradient_checkpointing_kwargs` go to it), Flax with `nn.remat` (which takes none)."""
        self._switch_gradient_checkpointing(True, gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        """Turn gradient checkpointing off: backward uses what each layer kept."""
        self._switch_gradient_checkpointing(False, None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether gradient checkpointing is on (in either half)."""
        return self._gradient_checkpointing_on()
