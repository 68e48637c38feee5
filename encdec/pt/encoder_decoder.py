"""`EncoderDecoderModel`: a pretrained encoder joined to a cross-attending decoder, as in transformers.

Weights move in and out only through the core (`encdec.weights`): a numpy dict
keyed by canonical name, which `from_state` / `canonical_state` /
`load_canonical_state` bridge to the module's parameters. Tied parameters (the LM
head and the word embeddings, the LM head's two bias names, `tie_encoder_decoder`)
are one `nn.Parameter` under several names, exactly as the core's spec lists them.
Input checks, the generation plan and the folder layouts are the core's
(`encdec.inputs`, `encdec.generation`, `encdec.weights.pretrained`).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ArchConfig, EncoderDecoderConfig, GenerationConfig
from ..errors import ConfigError, InputError
from ..inputs import (
    IGNORE_INDEX,
    check_batch,
    check_decoder_inputs,
    check_encoder_inputs,
    check_encoder_outputs,
    check_model_inputs,
    check_shift_config,
    output_flags,
    route_half_kwargs,
)
from ..loading import as_encoder_decoder_config
from ..port_model import EncoderDecoderMixin, GradientCheckpointingMixin
from ..weights.names import ModelSpec, ParamSpec, init_weights, model_spec
from ..weights.pretrained import ROLES
from ..weights.state import check_state
from .bart import BartForCausalLM
from .bert import BertLMHeadModel, BertModel
from .bert_generation import BertGenerationDecoder, BertGenerationEncoder
from .common import BaseModelOutput, Seq2SeqLMOutput, _host
from .electra import ElectraForCausalLM, ElectraModel
from .fast_linear import Linear
from .gpt2 import GPT2LMHeadModel
from .roberta import (CamembertForCausalLM, CamembertModel, RobertaForCausalLM, RobertaModel,
                      XLMRobertaForCausalLM, XLMRobertaModel)
from .rembert import RemBertForCausalLM, RemBertModel

ENCODER_CLASSES = {"bert": BertModel, "roberta": RobertaModel, "xlm-roberta": XLMRobertaModel,
                   "camembert": CamembertModel, "bert-generation": BertGenerationEncoder, "electra": ElectraModel,
                   "rembert": RemBertModel}
DECODER_CLASSES = {"bert": BertLMHeadModel, "roberta": RobertaForCausalLM, "xlm-roberta": XLMRobertaForCausalLM,
                   "camembert": CamembertForCausalLM, "bert-generation": BertGenerationDecoder,
                   "electra": ElectraForCausalLM, "rembert": RemBertForCausalLM, "gpt2": GPT2LMHeadModel,
                   "bart": BartForCausalLM}


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]):
    """Labels `[B, T]` -> decoder inputs `[B, T]`: start token, then the labels shifted right, -100 -> pad.

    The tensor op of `encdec.inputs.shift_tokens_right` (same rule, on the labels' device).
    """
    pad, start = check_shift_config(pad_token_id, decoder_start_token_id)
    shifted = input_ids.new_empty(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = start
    return shifted.masked_fill_(shifted == IGNORE_INDEX, pad)


def _build_encoder(config: ArchConfig) -> nn.Module:
    config.validate()  # an attribute set after the config was made is checked as the constructor checks it
    return ENCODER_CLASSES[config.model_type](config)


def _build_decoder(config: ArchConfig) -> nn.Module:
    config.validate()
    return DECODER_CLASSES[config.model_type](config)


def _set_parameter(root: nn.Module, name: str, param: nn.Parameter) -> None:
    *path, leaf = name.split(".")
    module = root
    for part in path:
        module = getattr(module, part)
    setattr(module, leaf, param)


def _to_torch(array: np.ndarray, dtype: Optional[torch.dtype], copy: bool = False) -> torch.Tensor:
    """A numpy array (float32/16, bfloat16 from ml_dtypes) as a tensor of `dtype`; it shares the array's
    memory unless `copy` (or the dtype changes): only arrays nobody else holds may be shared."""
    array = np.ascontiguousarray(array)
    if copy or not array.flags.writeable:
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


class EncoderDecoderModel(EncoderDecoderMixin, GradientCheckpointingMixin, nn.Module):
    """An encoder (`BertModel`, `RobertaModel`, `BertGenerationEncoder`) and a decoder with an LM head.

    `EncoderDecoderModel(config=...)` is a random model drawn by `init_weights(config, seed=0)`
    (the same model in every port); `EncoderDecoderModel(encoder=..., decoder=...)`
    joins two modules. Checkpoints load from and save to transformers' formats.
    """

    main_input_name = "input_ids"
    _port = "pt"

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
        config = as_encoder_decoder_config(config)
        config.validate()  # attributes set after construction are refused as the constructors refuse them
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
                Linear(config.encoder.hidden_size, config.decoder.hidden_size) if config.needs_projection else None
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
            # Tied halves share what the decoder holds: drawn when it is built here, its own when given.
            for source in self.spec.decoder_copies():
                if "decoder" in built:
                    fresh[source] = init[source]
                else:
                    fresh.pop(source, None)
            self._assign_state(fresh, partial=True)
        self._tie_parameters()
        self._freeze_unused()
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
        """Make every tied name of the spec one `nn.Parameter`, as transformers 4.57 ties them.

        The LM head takes the word embeddings' parameter; with `tie_encoder_decoder` the
        encoder's shared parameters are replaced by the decoder's, so a decoder given to
        the constructor keeps its weights and the encoder's go.
        """
        params = dict(self.named_parameters(remove_duplicate=False))
        shared = self.spec.decoder_copies()
        for tied in self.spec.tied:
            keeper = params[shared.get(tied.source, tied.source)]
            _set_parameter(self, tied.source, keeper)
            _set_parameter(self, tied.name, keeper)

    def _assign_state(self, state: dict, partial: bool = False, dtype: Optional[torch.dtype] = None,
                      copy: bool = True) -> None:
        """Put numpy tensors (canonical names, stored parameters only) into the model as new parameters
        (sharing the arrays' memory only when `copy` is False: the caller gives them up)."""
        check_state(self.spec, state, partial)
        dtype = dtype or torch.get_default_dtype()
        for name, array in state.items():
            param = nn.Parameter(_to_torch(array, dtype, copy))
            for target in self.spec.names_of(name):
                _set_parameter(self, target, param)

    @classmethod
    def from_state(cls, config: EncoderDecoderConfig, state: dict, dtype=None) -> "EncoderDecoderModel":
        """A model holding `state`: canonical numpy tensors, exactly the stored names of
        `model_spec(config)` (HF PyTorch names and layouts). Parameters are `dtype`
        (default: torch's default dtype). The model holds copies: training it leaves `state` as it was.
        CheckpointError for a missing, unknown or misshapen tensor."""
        return cls._from_state(config, state, dtype, copy=True)

    @classmethod
    def _from_state(cls, config: EncoderDecoderConfig, state: dict, dtype=None, copy: bool = True):
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = config
        model.spec = model_spec(config)
        with torch.device("meta"):
            model.encoder = _build_encoder(config.encoder)
            model.decoder = _build_decoder(config.decoder)
            model.enc_to_dec_proj = (
                Linear(config.encoder.hidden_size, config.decoder.hidden_size) if config.needs_projection else None
            )
        model._share_configs()
        model._assign_state(state, dtype=dtype, copy=copy)
        model._freeze_unused()
        model.generation_config = GenerationConfig.from_model_config(config)
        return model

    def _native_array(self, param: ParamSpec) -> np.ndarray:
        """The parameter of `param` (a stored ParamSpec) as a numpy copy (PyTorch's layout is the canonical one)."""
        return _to_numpy(self.get_parameter(param.name)).copy()

    def _assign_canonical(self, state: dict) -> None:
        """Copy checked canonical tensors into the existing parameters (they stay the same tensors),
        cast to each parameter's dtype and device."""
        params = dict(self.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for name, array in state.items():
                params[name].copy_(_to_torch(np.asarray(array), None))

    @classmethod
    def _build_from_state(cls, config: EncoderDecoderConfig, state: dict, options, owned: bool,
                          encoder: Optional[nn.Module] = None, decoder: Optional[nn.Module] = None):
        """The model of a loaded `state` (`owned`: its arrays become the parameters without a copy),
        around the given `encoder` / `decoder` modules (`_kept_halves`) if any, in eval mode as
        transformers returns it. PyTorch's loading options: `torch_dtype=` / `dtype=` (a torch dtype,
        "float32", "bfloat16", "float16", or "auto" for the checkpoint's; default torch's default
        dtype), `device_map=` (one device: "auto", "cpu", "cuda", "cuda:N") and
        `attn_implementation=` ("sdpa" or "eager")."""
        dtype = cls._torch_dtype(options, config, state)
        if encoder is None and decoder is None:
            model = cls._from_state(config, state, dtype, copy=not owned)
        else:
            model = cls(config=config, encoder=encoder, decoder=decoder)
            model.load_canonical_state(state, partial=True)
            if dtype is not None:
                model = model.to(dtype)
        return cls._place(model, options).eval()

    @staticmethod
    def _torch_dtype(options, config: EncoderDecoderConfig, state: dict) -> Optional[torch.dtype]:
        """The torch dtype `options.dtype` names (None: torch's default), recorded on `config` as
        transformers records it (`encdec.loading.record_dtype`)."""
        from ..loading import record_dtype, resolve_dtype

        dtype = resolve_dtype(options, config, state)
        if dtype is None:
            return None
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ConfigError(f"torch_dtype={options.dtype!r}: expected a floating torch dtype or its name")
        record_dtype(config, str(dtype).split(".")[-1])
        return dtype

    @staticmethod
    def _place(model: "EncoderDecoderModel", options) -> "EncoderDecoderModel":
        """Move `model` to `options.device` and note `options.attn_implementation` on its configs (as
        `_attn_implementation`, which config.json does not hold; the attention reads it)."""
        from ..loading import ATTN_IMPLEMENTATION_ATTR

        if options.attn_implementation is not None:
            for config in (model.config, model.config.encoder, model.config.decoder):
                object.__setattr__(config, ATTN_IMPLEMENTATION_ATTR, options.attn_implementation)
        device = options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device is not None and device.startswith("cuda"):
            index = int(device[5:]) if device.startswith("cuda:") else 0
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                raise ConfigError(
                    f"device_map={options.device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                    "expected 'cpu', 'auto' or an existing cuda device"
                )
        return model if device is None else model.to(device)

    @classmethod
    def _kept_halves(cls, kwargs: dict) -> dict:
        """The modules of this port given as `encoder_model=` / `decoder_model=` (transformers' models
        are left to `join_pretrained`)."""
        # A torch module joins the new model as it is, with its parameters: nothing to save and read back.
        return {role: kwargs.pop(f"{role}_model") for role in ROLES
                if isinstance(kwargs.get(f"{role}_model"), nn.Module)
                and isinstance(kwargs[f"{role}_model"].config, ArchConfig)}

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        # transformers' PyTorch models write safetensors by default, its TF and Flax models their own file.
        super().save_pretrained(save_directory, safe_serialization, max_shard_size)

    def _saved_config(self) -> EncoderDecoderConfig:
        """The config, with the dtype of a model that is not float32 (or whose config names a dtype)
        recorded as config.json's `"dtype"` string, as transformers 4.57 does."""
        from ..loading import record_dtype

        config = self.config
        dtype = next(self.parameters()).dtype
        if dtype != torch.float32 or {"dtype", "torch_dtype"} & set(config.extra):
            config = config.copy()
            record_dtype(config, str(dtype).split(".")[-1])
        return config

    def _rebuild(self, new_state: dict) -> None:
        """New halves for the resized config: the decoder (and the encoder when tied) built again on
        the meta device and given `new_state`, in the old parameters' dtype and device and the
        model's train/eval mode."""
        reference = self.decoder.get_input_embeddings().weight
        config = self.config
        with torch.device("meta"):
            if config.tie_encoder_decoder:
                self.encoder = _build_encoder(config.encoder)
            self.decoder = _build_decoder(config.decoder)
        self._share_configs()
        rebuilt = ("decoder.", "encoder.") if config.tie_encoder_decoder else ("decoder.",)
        self._assign_state({k: v for k, v in new_state.items() if k.startswith(rebuilt)}, partial=True,
                           dtype=reference.dtype)
        self._tie_parameters()
        self._freeze_unused()  # a rebuilt encoder has a new pooler
        self.to(reference.device)
        self.train(self.training)  # the new modules take the model's train/eval mode

    def _decoder_word_embeddings(self) -> nn.Embedding:
        return self.decoder.get_input_embeddings()

    # ------------------------------------------------------------------ forward

    def _project(self, encoder_hidden_states):
        """Encoder states in the decoder's width: `[B, S, H_enc]` -> `[B, S, H_dec]`."""
        if self.enc_to_dec_proj is not None:
            return self.enc_to_dec_proj(encoder_hidden_states)
        return encoder_hidden_states

    def _cross_attentions(self) -> list:
        """The decoder's cross-attention modules, one per layer, in layer order."""
        return [m for m in self.decoder.modules() if getattr(m, "is_cross_attention", False)]

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               output_attentions: bool = False, output_hidden_states: bool = False) -> BaseModelOutput:
        """The encoder's own output for `input_ids` `[B, S]` (not projected to the decoder's width),
        inputs checked first (InputError)."""
        check_encoder_inputs(self.config, _host(input_ids, "input_ids"), attention_mask,
                             _host(token_type_ids, "token_type_ids"), _host(position_ids, "position_ids"))
        return self._run_encoder(input_ids, attention_mask, token_type_ids, position_ids,
                                 output_attentions, output_hidden_states)

    def _run_encoder(self, input_ids, attention_mask, token_type_ids, position_ids, output_attentions,
                     output_hidden_states, **extra) -> BaseModelOutput:
        kwargs = dict(attention_mask=attention_mask, position_ids=position_ids,
                      output_attentions=output_attentions, output_hidden_states=output_hidden_states, **extra)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(input_ids, **kwargs)

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs, encoder_attention_mask=None) -> dict:
        """A decoder cache for `max_length` tokens over `encoder_outputs` (a `BaseModelOutput`, a
        tuple, or the encoder's last hidden state `[B, S, H_enc]`), with its mask `[B, S]`.

        The states are projected to the decoder's width and every layer's cross-attention
        keys/values computed once, `[B, H, S, D]`, contiguous. `batch_size` rows of
        self-attention keys/values `[batch_size, H, max_length, D]` are preallocated (zeros)
        and written in place by `decode_step`. `batch_size` may be n times B (n rows per
        batch item, item by item: the beams of a beam search); the cross keys/values and
        the mask then stay per batch item, not repeated n times: an item's rows attend
        them together (`_fold_beams_attend`).
        Returns `{"index": 0, "encoder_attention_mask": mask or None, "layers": (...)}`.
        """
        states = encoder_outputs if isinstance(encoder_outputs, torch.Tensor) else encoder_outputs[0]
        batch = check_encoder_outputs(self.config, states, encoder_attention_mask)
        if not isinstance(batch_size, int) or batch_size < 1 or batch_size % batch:
            raise InputError(
                f"batch_size is {batch_size!r}; expected a positive multiple of the encoder output's batch {batch}"
            )
        limit = self.config.decoder.max_positions
        if not isinstance(max_length, int) or not 0 < max_length <= limit:
            raise InputError(f"max_length is {max_length!r}; expected 1 to {limit} (the decoder's position table)")
        states = self._project(states)  # [B, S, H_dec]
        decoder = self.config.decoder
        shape = (batch_size, decoder.num_attention_heads, max_length, decoder.head_dim)
        layers = []
        for attention in self._cross_attentions():
            key, value = attention._cross_key_value(states)
            layers.append({
                "key": states.new_zeros(shape),
                "value": states.new_zeros(shape),
                "cross_key": key.contiguous(),
                "cross_value": value.contiguous(),
            })
        return {"index": 0, "encoder_attention_mask": encoder_attention_mask, "layers": tuple(layers)}

    def decode_step(self, decoder_input_ids, cache: dict, decoder_position_ids=None):
        """`[B, T]` new decoder tokens after the `cache["index"]` cached ones -> (logits `[B, T, V]`, cache).

        The returned cache has its index advanced by T; its preallocated tensors are
        the given cache's, written in place. InputError for ids outside the vocabulary,
        more tokens than the cache or the position table holds, or a batch that is not the cache's.
        """
        index = int(cache["index"])
        first = cache["layers"][0]["key"] if cache["layers"] else None
        check_decoder_inputs(self.config, _host(decoder_input_ids, "decoder_input_ids"),
                             decoder_position_ids=_host(decoder_position_ids, "decoder_position_ids"),
                             past_length=index, cache_length=first.shape[2] if first is not None else None)
        if first is not None:
            check_batch(decoder_input_ids, first.shape[0], "decoder_input_ids", "the cache")
        out = self.decoder(
            decoder_input_ids,
            position_ids=decoder_position_ids,
            encoder_attention_mask=cache["encoder_attention_mask"],
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits, out.past_key_values

    def reorder_cache(self, cache: dict, rows) -> dict:
        """The cache of the self-attention rows `rows` `[N]` (beam search: each beam continues
        from the row it extends). Only the filled positions are copied, into new buffers
        of the same length. Cross keys/values and the encoder mask follow the rows when
        they have as many rows as the self-attention keys; kept per batch item otherwise
        (then `rows` must stay within each row's batch item, as beam search's do).
        """
        index = int(cache["index"])
        first = cache["layers"][0]
        rows = torch.as_tensor(rows, dtype=torch.long, device=first["key"].device)
        follow = first["cross_key"] is not None and first["cross_key"].shape[0] == first["key"].shape[0]
        layers = []
        for layer in cache["layers"]:
            layer = dict(layer)
            for name in ("key", "value"):
                old = layer[name]
                layer[name] = old.new_empty((rows.shape[0],) + tuple(old.shape[1:]))
                torch.index_select(old[:, :, :index], 0, rows, out=layer[name][:, :, :index])
            if follow:
                for name in ("cross_key", "cross_value"):
                    layer[name] = layer[name].index_select(0, rows)
            layers.append(layer)
        mask = cache["encoder_attention_mask"]
        if follow and mask is not None:
            mask = mask.index_select(0, rows)
        return {"index": index, "encoder_attention_mask": mask, "layers": tuple(layers)}

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
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ):
        """As transformers' forward: an output flag left None is each half's config's, `return_dict` None the
        joined config's; extra kwargs go to the encoder, `decoder_`-prefixed ones (unprefixed) to the decoder."""
        encoder_kwargs, decoder_kwargs = route_half_kwargs(
            kwargs, {"encoder": self.encoder, "decoder": self.decoder}, "forward"
        )
        encoder_flags = output_flags(self.config.encoder, output_attentions, output_hidden_states)
        decoder_flags = output_flags(self.config.decoder, output_attentions, output_hidden_states)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        states = None if encoder_outputs is None or input_ids is not None else encoder_outputs[0]
        past = int(past_key_values["index"]) if isinstance(past_key_values, dict) else 0
        check_model_inputs(
            self.config, _host(input_ids, "input_ids"), attention_mask, _host(decoder_input_ids, "decoder_input_ids"),
            decoder_attention_mask, states, _host(labels, "labels"), _host(token_type_ids, "token_type_ids"),
            _host(position_ids, "position_ids"), past_length=past,
        )
        if encoder_outputs is None:
            encoder_outputs = self._run_encoder(input_ids, attention_mask, token_type_ids, position_ids,
                                                *encoder_flags, **encoder_kwargs)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs[:1])
        encoder_hidden_states = self._project(encoder_outputs[0])

        if labels is not None:
            labels = labels.long()  # the loss takes int64 targets
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
            output_attentions=decoder_flags[0],
            output_hidden_states=decoder_flags[1],
            **decoder_kwargs,
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

    # ------------------------------------------------------------------ transformers' conveniences

    def _freeze_unused(self) -> None:
        """The encoder's pooler does not reach the seq2seq loss: not trainable, so that plain
        DistributedDataParallel reduces every gradient bucket. It stays a parameter (saved, loaded)."""
        pooler = getattr(self.encoder, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """The device of the parameters (transformers' `model.device`)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the floating-point parameters (transformers' `model.dtype`)."""
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def _trainable_names(self) -> set:
        """The stored names whose parameter requires a gradient."""
        params = dict(self.named_parameters(remove_duplicate=False))
        return {p.name for p in self.spec if params[p.name].requires_grad}

    def _switch_gradient_checkpointing(self, enable: bool, gradient_checkpointing_kwargs: Optional[dict]) -> None:
        for half in (self.encoder, self.decoder):
            if enable:
                half.gradient_checkpointing_enable(gradient_checkpointing_kwargs)
            else:
                half.gradient_checkpointing_disable()

    def _gradient_checkpointing_on(self) -> bool:
        return self.encoder.is_gradient_checkpointing or self.decoder.is_gradient_checkpointing
