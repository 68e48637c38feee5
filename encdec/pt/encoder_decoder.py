"""`EncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder, as in transformers.

Weights move in and out only through the core (`encdec.weights`): a numpy dict
keyed by canonical name, which `_assign_state` / `_numpy_state` bridge to the
module's parameters. Tied parameters (the LM head and the word embeddings, the
LM head's two bias names, `tie_encoder_decoder`) are one `nn.Parameter` under
several names, exactly as the core's spec lists them.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import (
    ArchConfig,
    EncoderDecoderConfig,
    GENERATION_CONFIG_NAME,
    GenerationConfig,
    load_arch_config,
    split_role_kwargs,
)
from ..errors import CheckpointError, ConfigError, InputError
from ..weights.names import ModelSpec, init_weights, model_spec, resize_decoder_vocab
from .bert import BertLMHeadModel, BertModel
from .bert_generation import BertGenerationDecoder, BertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _Linear, check_input_ids
from .gpt2 import GPT2LMHeadModel
from .roberta import RobertaForCausalLM, RobertaModel

logger = logging.getLogger("encdec")

ENCODER_CLASSES = {"bert": BertModel, "roberta": RobertaModel, "bert-generation": BertGenerationEncoder}
DECODER_CLASSES = {
    "bert": BertLMHeadModel,
    "roberta": RobertaForCausalLM,
    "bert-generation": BertGenerationDecoder,
    "gpt2": GPT2LMHeadModel,
}


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]):
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
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def _build_encoder(config: ArchConfig) -> nn.Module:
    return ENCODER_CLASSES[config.model_type](config)


def _build_decoder(config: ArchConfig) -> nn.Module:
    return DECODER_CLASSES[config.model_type](config)


def _set_parameter(root: nn.Module, name: str, param: nn.Parameter) -> None:
    *path, leaf = name.split(".")
    module = root
    for part in path:
        module = getattr(module, part)
    setattr(module, leaf, param)


def _to_torch(array: np.ndarray, dtype: Optional[torch.dtype]) -> torch.Tensor:
    """A numpy array (float32/16, bfloat16 from ml_dtypes) as a tensor of `dtype`, sharing memory when it can."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()  # torch may not alias read-only (memory-mapped) buffers
    if array.dtype.name == "bfloat16":
        tensor = torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    return tensor if dtype is None else tensor.to(dtype)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


class EncoderDecoderModel(nn.Module):
    """An encoder (`BertModel`, `RobertaModel`, `BertGenerationEncoder`) and a decoder with an LM head.

    `EncoderDecoderModel(config=...)` is a random model drawn by `init_weights(config, seed=0)`
    (the same model in every port); `EncoderDecoderModel(encoder=..., decoder=...)`
    joins two modules. Checkpoints load from and save to transformers' formats.
    """

    main_input_name = "input_ids"

    def __init__(
        self,
        config: Optional[EncoderDecoderConfig] = None,
        encoder: Optional[nn.Module] = None,
        decoder: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if config is None:
            if encoder is None or decoder is None:
                raise ConfigError("EncoderDecoderModel needs a config, or both an encoder and a decoder module")
            config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        if not isinstance(config, EncoderDecoderConfig):
            raise ConfigError(f"config is a {type(config).__name__}; expected an EncoderDecoderConfig")
        self.config = config
        self.spec: ModelSpec = model_spec(config)
        drawn = encoder is None or decoder is None or config.needs_projection
        init = init_weights(config, seed=0) if drawn else None

        built = {}
        with torch.device("meta"):
            # Built without memory; every parameter is assigned from `init` or the given modules below.
            if encoder is None:
                encoder = built["encoder"] = _build_encoder(config.encoder)
            if decoder is None:
                decoder = built["decoder"] = _build_decoder(config.decoder)
            self.enc_to_dec_proj = (
                _Linear(config.encoder.hidden_size, config.decoder.hidden_size) if config.needs_projection else None
            )
        if hasattr(encoder, "get_output_embeddings"):
            raise ConfigError(f"the encoder {type(encoder).__name__} has an LM head; expected a bare encoder model")
        if not getattr(decoder.config, "add_cross_attention", False):
            raise ConfigError(
                f"the decoder {type(decoder).__name__} has no cross-attention; expected a decoder config with "
                "is_decoder=True and add_cross_attention=True"
            )
        self.encoder = encoder
        self.decoder = decoder
        # The joined config is the one source of truth for both halves.
        self._share_configs()
        if init is not None:
            fresh = {k: v for k, v in init.items() if k.split(".", 1)[0] in built or k.startswith("enc_to_dec_proj.")}
            self._assign_state(fresh, partial=True)
        self._tie_parameters()
        self.generation_config = GenerationConfig.from_model_config(config)

    # ------------------------------------------------------------------ weights

    def _share_configs(self) -> None:
        for module in self.encoder.modules():
            if getattr(module, "config", None) is not None:
                module.config = self.config.encoder
        for module in self.decoder.modules():
            if getattr(module, "config", None) is not None:
                module.config = self.config.decoder

    def _tie_parameters(self) -> None:
        """Make every tied name of the spec the same `nn.Parameter` as its source."""
        params = dict(self.named_parameters(remove_duplicate=False))
        for tied in self.spec.tied:
            _set_parameter(self, tied.name, params[tied.source])

    def _assign_state(self, state: dict, partial: bool = False, dtype: Optional[torch.dtype] = None) -> None:
        """Put numpy tensors (canonical names, stored parameters only) into the model as new parameters."""
        missing = [p.name for p in self.spec if p.name not in state]
        if missing and not partial:
            raise CheckpointError(f"no value for {len(missing)} parameter(s), e.g. {missing[:5]}; expected all of them")
        dtype = dtype or torch.get_default_dtype()
        for name, array in state.items():
            spec = self.spec.by_name.get(name)
            if spec is None:
                raise CheckpointError(f"{name}: not a parameter of this model; expected one of the spec's names")
            if tuple(array.shape) != spec.shape:
                raise CheckpointError(f"{name}: shape {tuple(array.shape)}; expected {spec.shape}")
            _set_parameter(self, name, nn.Parameter(_to_torch(array, dtype)))
        self._tie_parameters()

    def _numpy_state(self) -> dict:
        """The stored parameters as numpy arrays, by canonical name (tied names left out)."""
        params = dict(self.named_parameters(remove_duplicate=False))
        return {p.name: _to_numpy(params[p.name]) for p in self.spec}

    def _load_numpy_state(self, state: dict) -> None:
        """Copy numpy tensors into the existing parameters (keeps them, e.g. for an optimizer)."""
        params = dict(self.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for name, array in state.items():
                if name not in self.spec.by_name:
                    raise CheckpointError(f"{name}: not a parameter of this model")
                target = params[name]
                if tuple(array.shape) != tuple(target.shape):
                    raise CheckpointError(f"{name}: shape {tuple(array.shape)}; expected {tuple(target.shape)}")
                target.copy_(_to_torch(array, None))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        fmt: Optional[str] = None,
        dtype: Optional[torch.dtype] = None,
        config: Optional[EncoderDecoderConfig] = None,
        **kwargs,
    ):
        """Load a checkpoint folder written by transformers or encdec.

        Any of the four formats, sharded or not (`fmt` = "safetensors", "pt", "tf" or
        "flax" picks one when a folder holds several). kwargs update the config. The
        parameters are made `dtype` (default: torch's default dtype, float32). Returns
        the model in eval mode, as transformers does.
        """
        from ..weights.convert import load_state

        directory = os.fspath(directory)
        config = config.copy() if config is not None else EncoderDecoderConfig.from_pretrained(directory)
        for key, value in kwargs.items():
            setattr(config, key, value)
        state, _report = load_state(directory, model_spec(config), fmt=fmt)
        model = cls._from_state(config, state, dtype)
        if os.path.isfile(os.path.join(directory, GENERATION_CONFIG_NAME)):
            model.generation_config = GenerationConfig.from_pretrained(directory)
        return model.eval()

    @classmethod
    def _from_state(cls, config: EncoderDecoderConfig, state: dict, dtype=None) -> "EncoderDecoderModel":
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = config
        model.spec = model_spec(config)
        with torch.device("meta"):
            model.encoder = _build_encoder(config.encoder)
            model.decoder = _build_decoder(config.decoder)
            model.enc_to_dec_proj = (
                _Linear(config.encoder.hidden_size, config.decoder.hidden_size) if config.needs_projection else None
            )
        model._share_configs()
        model._assign_state(state, dtype=dtype)
        model.generation_config = GenerationConfig.from_model_config(config)
        return model

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        decoder_pretrained_model_name_or_path: Optional[str | os.PathLike] = None,
        *,
        init_seed: int = 0,
        **kwargs,
    ) -> "EncoderDecoderModel":
        """Join a pretrained encoder folder and a pretrained decoder folder (any of the four formats).

        `encoder_*` / `decoder_*` kwargs update the encoder / decoder config (`encoder_model=` /
        `decoder_model=` give a module instead, `encoder_config=` / `decoder_config=` a config);
        the others update the joined config. What the decoder checkpoint lacks (cross-attention,
        often the LM head) is drawn with `init_weights(config, init_seed)` and logged by name.
        """
        from ..weights.convert import load_component

        parts = split_role_kwargs(kwargs)
        configs, modules, paths = {}, {}, {}
        for role, path in (("encoder", encoder_pretrained_model_name_or_path),
                           ("decoder", decoder_pretrained_model_name_or_path)):
            options = parts[role]
            module = options.pop("model", None)
            if module is not None:
                modules[role] = module
                configs[role] = module.config
                continue
            if path is None:
                raise ConfigError(f"no {role} given; expected {role}_pretrained_model_name_or_path or {role}_model=")
            paths[role] = os.fspath(path)
            config = options.pop("config", None)
            config = config.copy() if config is not None else load_arch_config(paths[role])
            for key, value in options.items():
                setattr(config, key, value)
            if role == "encoder" and (config.is_decoder or config.add_cross_attention):
                logger.info("%s: loading a decoder config as the encoder; cross-attention and the causal mask are off",
                            paths[role])
                config.is_decoder = False
                config.add_cross_attention = False
            if role == "decoder" and not (config.is_decoder and config.add_cross_attention):
                logger.info("%s: loading as a decoder; cross-attention layers are added and drawn at random",
                            paths[role])
                config.is_decoder = True
                config.add_cross_attention = True
            configs[role] = config
        config = EncoderDecoderConfig.from_encoder_decoder_configs(configs["encoder"], configs["decoder"], **kwargs)

        if modules:
            # A given module keeps its weights; the other half is loaded into a fresh model.
            model = cls(config=config, encoder=modules.get("encoder"), decoder=modules.get("decoder"))
        else:
            model = None
        full = init_weights(config, seed=init_seed)
        # With tie_encoder_decoder the decoder's shared tensors are the encoder's: only stored names are set.
        stored = {p.name for p in model_spec(config)}
        drawn = []
        for role in ("encoder", "decoder"):
            if role in modules:
                continue
            state, report = load_component(paths[role], getattr(config, role), role)
            full.update({f"{role}.{name}": array for name, array in state.items() if f"{role}.{name}" in stored})
            drawn += [f"{role}.{name}" for name in report.missing if f"{role}.{name}" in stored]
        if config.needs_projection:
            drawn += [name for name in full if name.startswith("enc_to_dec_proj.")]
        if model is None:
            model = cls._from_state(config, full)
        else:
            model._load_numpy_state({k: v for k, v in full.items() if k.split(".", 1)[0] not in modules})
        if drawn:
            logger.warning(
                "%d parameter(s) are not in the pretrained checkpoints and were newly initialised "
                "(init_weights, seed %d): %s",
                len(drawn), init_seed, ", ".join(drawn),
            )
        return model.eval()

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write weights (`model.safetensors`, or `pytorch_model.bin`), config.json and generation_config.json.

        The folder is written to a temporary sibling and renamed into place, so a
        failure leaves any previous checkpoint there whole.
        """
        from ..weights.convert import save_state
        from ..weights.formats import is_weight_file
        from ..weights.io import atomic_directory, parse_size

        fmt = "safetensors" if safe_serialization else "pt"
        shard_size = parse_size(max_shard_size) if max_shard_size is not None else None
        state = self._numpy_state()
        config = self.config.copy()
        config.architectures = ["EncoderDecoderModel"]
        # Old weight files go: a stale file of another format would shadow the new one.
        with atomic_directory(save_directory, keep=lambda name: not is_weight_file(name)) as tmp:
            save_state(state, self.spec, tmp, fmt, shard_size=shard_size)
            config.save_pretrained(tmp)
            self.generation_config.save_pretrained(tmp)

    # ------------------------------------------------------------------ accessors

    def get_encoder(self) -> nn.Module:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.decoder.get_output_embeddings()

    def resize_token_embeddings(self, new_num_tokens: int) -> nn.Embedding:
        """Give the decoder a vocabulary of `new_num_tokens`: word embeddings, LM head and its bias.

        Kept rows keep their values; new rows are drawn as `init_weights` draws them
        (N(0, initializer_range), seed 0; biases 0). Ties are kept; with
        `tie_encoder_decoder` the shared table is the encoder's too, so both vocabularies
        change. Returns the decoder's new input embedding.
        """
        if not isinstance(new_num_tokens, int) or new_num_tokens <= 0:
            raise ConfigError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
        old_size = self.config.decoder.vocab_size
        if new_num_tokens == old_size:
            return self.decoder.get_input_embeddings()
        reference = self.decoder.get_input_embeddings().weight
        config, new_state = resize_decoder_vocab(self.config, self._numpy_state(), new_num_tokens)
        self.config = config
        self.spec = model_spec(config)
        with torch.device("meta"):
            if config.tie_encoder_decoder:
                self.encoder = _build_encoder(config.encoder)
            self.decoder = _build_decoder(config.decoder)
        self._share_configs()
        rebuilt = ("decoder.", "encoder.") if config.tie_encoder_decoder else ("decoder.",)
        self._assign_state({k: v for k, v in new_state.items() if k.startswith(rebuilt)}, partial=True,
                           dtype=reference.dtype)
        self.to(reference.device)
        self.train(self.training)  # the new modules take the model's train/eval mode
        return self.decoder.get_input_embeddings()

    # ------------------------------------------------------------------ forward

    def _decoder_position_limit(self) -> int:
        base = self.decoder.base_model
        if hasattr(base, "embeddings"):
            return base.embeddings._position_limit()
        return base.config.n_positions

    def _check_encoder_inputs(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        """The encoder's inputs: ids, lengths and shapes, before the encoder runs."""
        encoder = self.encoder
        check_input_ids(input_ids, self.config.encoder.vocab_size, name="input_ids")
        if position_ids is None:
            limit = encoder.embeddings._position_limit()
            if input_ids.shape[1] > limit:
                raise InputError(
                    f"input_ids has length {input_ids.shape[1]}; the encoder's position table covers {limit} "
                    f"tokens, expected at most {limit}"
                )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise InputError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected {tuple(input_ids.shape)} "
                "like input_ids"
            )
        encoder._check_inputs(input_ids, None, token_type_ids, position_ids, 0)

    def _check_inputs(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                      encoder_outputs, past_key_values, labels, token_type_ids=None, position_ids=None):
        """Every shape and id range checked before any work."""
        if input_ids is None and encoder_outputs is None:
            raise InputError("no encoder input; expected input_ids or encoder_outputs")
        if input_ids is not None:
            self._check_encoder_inputs(input_ids, attention_mask, token_type_ids, position_ids)
            batch = input_ids.shape[0]
        else:
            states = encoder_outputs[0]
            batch = states.shape[0]
            if states.dim() != 3 or states.shape[-1] != self.config.encoder.hidden_size:
                raise InputError(
                    f"encoder_outputs[0] has shape {tuple(states.shape)}; expected [batch, length, "
                    f"{self.config.encoder.hidden_size}]"
                )
            if attention_mask is not None and tuple(attention_mask.shape) != tuple(states.shape[:2]):
                raise InputError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected {tuple(states.shape[:2])} "
                    "like encoder_outputs"
                )
        if decoder_input_ids is None and labels is None:
            raise InputError("no decoder input; expected decoder_input_ids or labels")
        if labels is not None:
            if labels.dim() != 2 or labels.shape[0] != batch:
                raise InputError(f"labels has shape {tuple(labels.shape)}; expected [{batch}, target length]")
            valid = (labels == -100) | ((labels >= 0) & (labels < self.config.decoder.vocab_size))
            if not bool(valid.all()):
                bad = labels[~valid][0].item()
                raise InputError(
                    f"labels holds {bad}; expected ids in [0, {self.config.decoder.vocab_size}) or -100 (ignored)"
                )
        if decoder_input_ids is not None:
            check_input_ids(decoder_input_ids, self.config.decoder.vocab_size, name="decoder_input_ids")
            if decoder_input_ids.shape[0] != batch:
                raise InputError(
                    f"decoder_input_ids has batch size {decoder_input_ids.shape[0]}; expected {batch} like the "
                    "encoder input"
                )
            if labels is not None and labels.shape != decoder_input_ids.shape:
                raise InputError(
                    f"labels has shape {tuple(labels.shape)}; expected {tuple(decoder_input_ids.shape)} like "
                    "decoder_input_ids"
                )
        length = (decoder_input_ids if decoder_input_ids is not None else labels).shape[1]
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        limit = self._decoder_position_limit()
        if past + length > limit:
            raise InputError(
                f"the decoder input has length {length} after {past} cached tokens; the decoder's position table "
                f"covers {limit} tokens, expected at most {limit} in all"
            )
        if decoder_attention_mask is not None and tuple(decoder_attention_mask.shape) != (batch, past + length):
            raise InputError(
                f"decoder_attention_mask has shape {tuple(decoder_attention_mask.shape)}; expected "
                f"{(batch, past + length)} (batch, cached + new decoder tokens)"
            )

    def _encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_attentions=False, output_hidden_states=False):
        kwargs = dict(attention_mask=attention_mask, position_ids=position_ids,
                      output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(input_ids, **kwargs)

    def _project(self, encoder_hidden_states):
        """Encoder states in the decoder's width: `[B, S, H_enc]` -> `[B, S, H_dec]`."""
        if self.enc_to_dec_proj is not None:
            return self.enc_to_dec_proj(encoder_hidden_states)
        return encoder_hidden_states

    def forward(
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
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        self._check_inputs(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                           encoder_outputs, past_key_values, labels, token_type_ids, position_ids)
        if encoder_outputs is None:
            encoder_outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids,
                                           output_attentions, output_hidden_states)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs[:1])
        encoder_hidden_states = self._project(encoder_outputs[0])

        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            if decoder_attention_mask is None:
                # transformers masks the decoder's pad tokens when it makes the decoder inputs from labels
                decoder_attention_mask = (decoder_input_ids != self.config.pad_token_id).to(decoder_input_ids.dtype)

        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = decoder_outputs.logits
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        out = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs[0],
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return out if return_dict else out.to_tuple()

    def generate(self, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None, **kwargs):
        """Greedy, sampling or beam search, with transformers 5's semantics (see `encdec.pt.generation`)."""
        from .generation import generate

        return generate(self, input_ids, attention_mask, generation_config, **kwargs)
