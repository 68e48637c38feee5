"""Pieces every PyTorch module shares: activations, masks, softmax, the decoder cache, outputs, input checks,
the steps every body takes before and after its layers, and the half every decoder with an LM head shares.

The mask convention of all three ports: an additive bias, 0 where a key is
attended and the computation dtype's minimum where it is masked, added to the
scores; softmax runs in float32 whatever the computation dtype. PyTorch hands the
bias to `scaled_dot_product_attention`; only when attention weights are asked for
is the softmax computed here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from operator import attrgetter
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import outputs
from ..errors import InputError
from ..inputs import check_cross_attention, check_ids, check_stack_inputs
from .pretrained import PreTrainedModel


def _gelu(x):
    # transformers' "gelu" is the exact erf form.
    return F.gelu(x)


def _gelu_new(x):
    # The tanh approximation GPT-2 uses, written as transformers writes it (bit-equal).
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _gelu_pytorch_tanh(x):
    return F.gelu(x, approximate="tanh")


def _gelu_fast(x):
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACT2FN = {
    "gelu": _gelu,
    "relu": F.relu,
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": _gelu_pytorch_tanh,
    "gelu_fast": _gelu_fast,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def attention_bias(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[B, S]` mask (1 = attend) -> `[B, 1, 1, S]` additive bias: 0 attended, dtype's minimum masked."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    bias.masked_fill_(mask == 0, torch.finfo(dtype).min)
    return bias[:, None, None, :]


def _padding_bias(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """`attention_bias(mask)`, or None when nothing is masked: SDPA then runs without a bias."""
    if mask is None or bool(mask.all()):
        return None
    return attention_bias(mask, dtype)


def causal_bias(
    query_length: int,
    key_length: int,
    offset: int = 0,
    mask: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> torch.Tensor:
    """The decoder's self-attention bias, `[B or 1, 1, T, K]`.

    Query i sits at position `offset + i` of the key axis and attends keys
    `j <= offset + i` whose `mask[:, j]` is set. `offset` is the number of cached
    tokens; `mask` is `[B, K]` or None. Causality and padding are combined before
    turning into a bias, so a key both in the future and padded gets the minimum once.
    """
    device = mask.device if mask is not None else device
    query_pos = offset + torch.arange(query_length, device=device)[:, None]  # [T, 1]
    allowed = torch.arange(key_length, device=device)[None, :] <= query_pos  # [T, K]
    allowed = allowed[None, None]  # [1, 1, T, K]
    if mask is not None:
        allowed = allowed & (mask[:, None, None, :] != 0)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


def softmax_float32(scores: torch.Tensor, bias: Optional[torch.Tensor] = None, dtype=None) -> torch.Tensor:
    """softmax(scores + bias) over the last axis, computed in float32, returned in `dtype`."""
    out_dtype = scores.dtype if dtype is None else dtype
    scores = scores.float()
    if bias is not None:
        scores = scores + bias.float()
    return torch.softmax(scores, dim=-1).to(out_dtype)


def _attend(query, key, value, bias, scale, dropout_p=0.0, is_causal=False, need_weights=False, eager=False):
    """Multi-head attention over `[B, H, T, D]` queries and `[B, H, K, D]` keys/values -> `[B, H, T, D]`.

    Without `need_weights` or `eager` (`attn_implementation="eager"`) this is
    `scaled_dot_product_attention`; otherwise the weights are computed explicitly
    (float32 softmax), and returned too when `need_weights`.
    """
    if not (need_weights or eager):
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        probs = None
    else:
        scores = torch.matmul(query, key.transpose(-1, -2)) * scale  # [B, H, T, K]
        if is_causal:
            causal = causal_bias(query.shape[-2], key.shape[-2], key.shape[-2] - query.shape[-2], device=query.device)
            bias = causal if bias is None else bias + causal
        probs = softmax_float32(scores, bias, dtype=query.dtype)
        if dropout_p > 0.0:
            probs = F.dropout(probs, p=dropout_p)
        out = torch.matmul(probs, value)
    if bias is not None and bias.shape[-2] > 1:
        # A query that may attend no key (a leading pad of the decoder) gets a zero output, as
        # transformers' SDPA path gives it; the additive bias alone would average every value.
        alive = bias.amax(dim=-1, keepdim=True) > torch.finfo(bias.dtype).min  # [B, 1, T, 1]
        out = out.masked_fill(~alive, 0.0)
    return out, probs if need_weights else None


def _fold_beams_attend(query, key, value, bias, scale, need_weights=False):
    """Cross-attention of `[B * n, H, T, D]` queries over keys/values kept once per batch item `[B, H, S, D]`.

    While beam searching every beam of a batch item attends the same encoder
    states; the n beams become n * T query rows of one item instead of copying
    the keys n times. Each row's result is unchanged (rows are independent).
    """
    rows, heads, length, dim = query.shape
    batch = key.shape[0]
    n = rows // batch
    q = query.view(batch, n, heads, length, dim).transpose(1, 2).reshape(batch, heads, n * length, dim)
    # The explicit product, not SDPA: on the CPU, SDPA's kernel takes about 1.7x as long for these few
    # query rows per item (decode steps: one per beam).
    out, probs = _attend(q, key, value, bias, scale, need_weights=True)
    if not need_weights:
        probs = None
    out = out.view(batch, heads, n, length, dim).transpose(1, 2).reshape(rows, heads, length, dim)
    if probs is not None:
        probs = probs.view(batch, heads, n, length, -1).transpose(1, 2).reshape(rows, heads, length, -1)
    return out, probs


def _attend_heads(module, query, key, value, bias, is_causal: bool, need_weights: bool, dropout_prob: float):
    """An attention module's `[B, H, T, D]` queries over its keys/values -> (`[B, T, H*D]`, probabilities or None).

    Keys kept once per batch item for several query rows (beams) are attended folded
    (`_fold_beams_attend`); otherwise `_attend`, with `dropout_prob` in training and the explicit
    product when the module's config asks for `attn_implementation="eager"` (read at call time).
    """
    b, _, t, _ = query.shape
    if key.shape[0] != b:
        out, probs = _fold_beams_attend(query, key, value, bias, module.scale, need_weights)
    else:
        dropout_p = dropout_prob if module.training else 0.0
        eager = getattr(module.config, "_attn_implementation", None) == "eager"
        out, probs = _attend(query, key, value, bias, module.scale, dropout_p, is_causal, need_weights, eager)
    return out.transpose(1, 2).reshape(b, t, -1), probs  # [B, H, T, D] -> [B, T, H*D]


def _empty_layer_cache() -> dict:
    """One decoder layer's entry of the cache before any token: self and cross keys/values to come."""
    return {"key": None, "value": None, "cross_key": None, "cross_value": None}


def _write_self_cache(layer: dict, past_length: int, key: torch.Tensor, value: torch.Tensor):
    """Put the keys/values `[N, H, T, D]` of T new tokens after `past_length` cached ones into `layer`
    (a layer's cache entry); return the keys/values of all `past_length + T` tokens, `[N, H, past + T, D]`.

    A preallocated entry (`init_cache`) with room for them is written in place. Otherwise the
    entry grows by concatenation: a plain forward with `use_cache=True` builds its cache this
    way, which stays correct under autograd.
    """
    cached_key, cached_value = layer["key"], layer["value"]
    end = past_length + key.shape[2]
    if cached_key is not None and end <= cached_key.shape[2]:
        cached_key[:, :, past_length:end] = key
        cached_value[:, :, past_length:end] = value
        return cached_key[:, :, :end], cached_value[:, :, :end]
    if past_length:
        key = torch.cat([cached_key[:, :, :past_length], key], dim=2)
        value = torch.cat([cached_value[:, :, :past_length], value], dim=2)
    layer["key"], layer["value"] = key, value
    return key, value


def _cross_keys_values(layer: Optional[dict], project, encoder_hidden_states):
    """A layer's cross-attention keys/values `[B, H, S, D]`: from the cache entry when it holds
    them (the encoder output does not change while decoding), else `project(encoder_hidden_states)`,
    kept in the entry, contiguous: every decode step multiplies by them, and the strided view of a
    projection would be copied on each step."""
    if layer is not None and layer["cross_key"] is not None:
        return layer["cross_key"], layer["cross_value"]
    key, value = project(encoder_hidden_states)
    if layer is not None:
        key, value = key.contiguous(), value.contiguous()
        layer["cross_key"], layer["cross_value"] = key, value
    return key, value


def _open_cache(cache: Optional[dict], num_layers: int, use_cache: bool):
    """(past length, per-layer entries to write) for one forward over `cache` (None: a new one
    when `use_cache`, else no cache at all).

    The entries are shallow copies, so the cache given keeps its own index and entries;
    preallocated tensors are shared and written in place.
    """
    if cache is None:
        return 0, ([_empty_layer_cache() for _ in range(num_layers)] if use_cache else None)
    if not isinstance(cache, dict) or len(cache.get("layers", ())) != num_layers:
        raise InputError(
            f"past_key_values is a {type(cache).__name__}; expected the cache dict of init_cache or of an "
            f"earlier call, with {num_layers} layer(s)"
        )
    index = cache["index"]
    if torch.jit.is_tracing() and torch.is_tensor(index):
        # Traced (the ONNX export), the length stays a tensor of the graph: int() would freeze it at the
        # example's length, and every later cache length would give the example's positions.
        return index, [dict(layer) for layer in cache["layers"]]
    return int(index), [dict(layer) for layer in cache["layers"]]


def _close_cache(layers: list, past_length: int, length: int, encoder_attention_mask) -> dict:
    """The cache after a forward over `length` new tokens: index advanced, the entries written.

    The encoder mask is kept as the `[B, S]` mask (a 4D additive bias is not a mask)."""
    mask = encoder_attention_mask if encoder_attention_mask is None or encoder_attention_mask.dim() == 2 else None
    return {"index": past_length + length, "encoder_attention_mask": mask, "layers": tuple(layers)}


def _open_stack(config, num_layers: int, recomputing: bool, past_key_values, use_cache, input_ids, attention_mask,
                token_type_ids, position_ids):
    """What a body's forward does before it embeds -> (use_cache, past length, per-layer cache entries,
    input_ids, token_type_ids, position_ids).

    `use_cache` (the config's when None) is off while the layers are `recomputing`, as in transformers;
    the cache is opened (`_open_cache`), the inputs checked (`check_stack_inputs`), the ids made lookups.
    """
    use_cache = bool(config.use_cache if use_cache is None else use_cache) and not recomputing
    past_length, cache = _open_cache(past_key_values, num_layers, use_cache)
    check_stack_inputs(config, _host(input_ids, "input_ids"), attention_mask, _host(token_type_ids, "token_type_ids"),
                       _host(position_ids, "position_ids"), past_length=past_length)
    return use_cache, past_length, cache, _index(input_ids), _index(token_type_ids), _index(position_ids)


def _stack_output(hidden, all_hidden, all_self, all_cross, past_key_values, return_dict: bool, pooler_output=None):
    """A body's outputs: its BaseModelOutput, or with `return_dict=False` the tuple of the fields that are set."""
    out = BaseModelOutput(
        last_hidden_state=hidden,
        pooler_output=pooler_output,
        past_key_values=past_key_values,
        hidden_states=all_hidden,
        attentions=all_self,
        cross_attentions=all_cross,
    )
    return out if return_dict else out.to_tuple()


def _decoder_self_bias(attention_mask, length: int, past_length: int, dtype, device):
    """(bias, is_causal) of a decoder's self-attention over `past_length` cached and `length` new tokens."""
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: the plain causal pattern
    if attention_mask is None:
        if past_length == 0 and length > 1:
            return None, True  # plain causal: let SDPA build it
        if length == 1:
            return None, False  # one new token attends every cached one
    return causal_bias(length, past_length + length, past_length, attention_mask, dtype, device), False


def _encoder_bias(encoder_attention_mask, dtype):
    """The cross-attention bias: a 4D mask is an additive bias already (generate prepares it once);
    a `[B, S]` mask becomes `[B, 1, 1, S]`, or None when nothing is masked."""
    if encoder_attention_mask is None or encoder_attention_mask.dim() == 4:
        return encoder_attention_mask
    return _padding_bias(encoder_attention_mask, dtype)


class _GradientCheckpointing:
    """transformers' gradient checkpointing switches, for a model whose layer stacks have a
    `gradient_checkpointing` attribute (BertEncoder, GPT2Model): while on, and only in training
    mode with gradients enabled, each layer keeps its inputs alone and is run again in backward."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """`gradient_checkpointing_kwargs` go to `torch.utils.checkpoint.checkpoint`;
        default `{"use_reentrant": False}`, as transformers 4.57 has it."""
        kwargs = {"use_reentrant": False} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
        self._set_gradient_checkpointing(True, partial(checkpoint, **kwargs))

    def gradient_checkpointing_disable(self) -> None:
        self._set_gradient_checkpointing(False, checkpoint)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def _set_gradient_checkpointing(self, enable: bool, func) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing, module._gradient_checkpointing_func = enable, func


def _checkpointing(stack) -> bool:
    """Whether `stack` (a module with `gradient_checkpointing`) recomputes its layers in this forward."""
    return stack.gradient_checkpointing and stack.training and torch.is_grad_enabled()


def _attends_encoder(encoder_hidden_states, cache: Optional[dict], has_cross_attention: bool = True) -> bool:
    """Whether a layer attends the encoder in this forward: its states are given, or their keys/values are
    in `cache` (the layer's cache entry). ConfigError when it does but the layer has no cross-attention."""
    attends = encoder_hidden_states is not None or (cache is not None and cache["cross_key"] is not None)
    return check_cross_attention(attends, has_cross_attention)


def _call(layer, *args):
    return layer(*args)


def _run_layers(stack, layers, hidden_states, attention_bias, is_causal, encoder_hidden_states, encoder_bias, cache,
                output_attentions: bool, output_hidden_states: bool, past_length: int):
    """Run BERT layers or GPT-2 blocks in turn -> (hidden, all hidden states, self-attention probs,
    cross-attention probs). The hidden states are the input and each layer's output.

    `cache`: a list of per-layer cache entries (see `_open_cache`), written in place, or None. With
    `_checkpointing(stack)` each layer runs through `stack._gradient_checkpointing_func`.
    """
    all_hidden = (hidden_states,) if output_hidden_states else None
    all_self = () if output_attentions else None
    cross = _attends_encoder(encoder_hidden_states, cache[0] if cache is not None else None)
    all_cross = () if output_attentions and cross else None
    run = stack._gradient_checkpointing_func if _checkpointing(stack) else _call
    for i, layer in enumerate(layers):
        hidden_states, self_probs, cross_probs = run(
            layer, hidden_states, attention_bias, is_causal, encoder_hidden_states, encoder_bias,
            cache[i] if cache is not None else None, output_attentions, past_length,
        )
        if output_hidden_states:
            all_hidden += (hidden_states,)
        if output_attentions:
            all_self += (self_probs,)
            if all_cross is not None:
                all_cross += (cross_probs,)
    return hidden_states, all_hidden, all_self, all_cross


class _ModelOutput(OrderedDict):
    """Outputs as transformers' PyTorch ModelOutput gives them, an OrderedDict: attributes, keys, and tuple
    indexing over the fields that are set. Each subclass takes its fields from the core's class
    (`encdec.outputs`)."""

    _fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        values = dict(zip(self._fields, args))
        values.update(kwargs)
        unknown = set(values) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}; fields are {self._fields}")
        for name in self._fields:
            value = values.get(name)
            object.__setattr__(self, name, value)
            if value is not None:
                OrderedDict.__setitem__(self, name, value)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name in self._fields:
            if value is None:
                self.pop(name, None)
            else:
                # keep the field order of `_fields`
                items = {k: getattr(self, k) for k in self._fields if getattr(self, k) is not None}
                self.clear()
                self.update(items)

    def __getitem__(self, key):
        if isinstance(key, str):
            return OrderedDict.__getitem__(self, key)
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple:
        return tuple(self[k] for k in self.keys())


class BaseModelOutput(_ModelOutput):
    __doc__ = outputs.BaseModelOutput.__doc__
    _fields = outputs.field_names(outputs.BaseModelOutput)


class CausalLMOutput(_ModelOutput):
    __doc__ = outputs.CausalLMOutput.__doc__
    _fields = outputs.field_names(outputs.CausalLMOutput)


class Seq2SeqLMOutput(_ModelOutput):
    __doc__ = outputs.Seq2SeqLMOutput.__doc__
    _fields = outputs.field_names(outputs.Seq2SeqLMOutput)
    cache = outputs.Seq2SeqLMOutput.cache


def _causal_lm_loss(logits, labels):
    """Next-token cross-entropy: position t predicts label t + 1; -100 is ignored."""
    # [B, T] -> [B, T] shifted left, the last position gets -100
    shifted = F.pad(labels.long(), (0, 1), value=-100)[:, 1:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100)


def _causal_lm_output(model, base_output, labels, logits_to_keep: int, return_dict: bool):
    """A decoder's output from its base model's: logits of the last `logits_to_keep`
    positions (all when 0), the loss when `labels` are given, and the base outputs."""
    hidden = base_output.last_hidden_state
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]  # only the positions whose logits are needed
    logits = model.compute_logits(hidden)
    result = CausalLMOutput(
        loss=_causal_lm_loss(logits, labels) if labels is not None else None,
        logits=logits,
        past_key_values=base_output.past_key_values,
        hidden_states=base_output.hidden_states,
        attentions=base_output.attentions,
        cross_attentions=base_output.cross_attentions,
    )
    return result if return_dict else result.to_tuple()


class _CausalLM(PreTrainedModel, _GradientCheckpointing, nn.Module):
    """What every decoder with an LM head shares: its body under `base_model_prefix`, its projection to
    the vocabulary at the attribute path `output_embeddings_path`, and transformers' forward, which runs
    the body and then `compute_logits`."""

    output_embeddings_path = "lm_head"

    @property
    def base_model(self):
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self):
        return self.base_model.get_input_embeddings()

    def get_output_embeddings(self):
        return attrgetter(self.output_embeddings_path)(self)

    def _tie_output_embeddings(self) -> None:
        """With `tie_word_embeddings`, the projection to the vocabulary takes the word embeddings as its weight."""
        if self.config.tie_word_embeddings:
            self.get_output_embeddings().weight = self.get_input_embeddings().weight

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`; the projection alone unless a head has more."""
        return self.get_output_embeddings()(hidden_states)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels=None,
        logits_to_keep: int = 0,
        return_dict: bool = True,
    ):
        out = self.base_model(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return _causal_lm_output(self, out, labels, logits_to_keep, return_dict)


def _host(value, name: str):
    """An input as the core's checks read it (`encdec.inputs`): a numpy copy of a tensor (from any
    device; bfloat16 as float32, which the checks refuse as ids all the same), None as None.

    InputError for what is not a tensor: the port computes on tensors only.
    """
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} is a {type(value).__name__}; expected a torch.Tensor")
    value = value.detach()
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.cpu().numpy()


def _index(ids: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Ids as an embedding lookup takes them: int32 and int64 as they are, other integer dtypes
    (uint8, int16, ...) widened to int64."""
    if ids is None or ids.dtype in (torch.int64, torch.int32):
        return ids
    return ids.long()


def check_input_ids(ids, vocab_size: int, max_positions: Optional[int] = None, name: str = "input_ids") -> None:
    """Raise InputError unless `ids` are `[batch >= 1, length >= 1]` integer ids in `[0, vocab_size)`
    no longer than `max_positions` (the core's rule, `encdec.inputs.check_ids`), before any work."""
    check_ids(_host(ids, name), vocab_size, name, max_positions=max_positions)
