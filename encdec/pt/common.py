"""Pieces every PyTorch module shares: activations, masks, softmax, outputs, input checks.

The mask convention of all three ports: an additive bias, 0 where a key is
attended and the computation dtype's minimum where it is masked, added to the
scores; softmax runs in float32 whatever the computation dtype. PyTorch hands the
bias to `scaled_dot_product_attention`; only when attention weights are asked for
is the softmax computed here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from collections import OrderedDict
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


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


# ---------------------------------------------------------------------------
# Linear layers


@functools.lru_cache(maxsize=None)
def _onednn_linear_available() -> bool:
    """Whether this torch build runs oneDNN's float32 linear (`mkldnn._linear_pointwise`, the op torch's compiler
    emits for CPU linear layers), on a plain and on a packed weight, in agreement with `F.linear`; checked once."""
    try:
        # Fixed values, not random ones: the check must not move torch's global random stream.
        x = torch.linspace(-1.0, 1.0, 30).reshape(5, 6)
        w = torch.linspace(-0.5, 0.7, 24).reshape(4, 6)
        b = torch.linspace(-0.2, 0.3, 4)
        with torch.no_grad():
            plain = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            packed = torch.ops.mkldnn._linear_pointwise(x, _pack(w), b, "none", [], "")
        expected = F.linear(x, w, b)
        return all(bool(torch.allclose(out, expected, rtol=1e-5, atol=1e-5)) for out in (plain, packed))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _pack(weight: torch.Tensor) -> torch.Tensor:
    # oneDNN's blocked layout of `weight` [out, in]; the row-count hint matters little (decode steps: a few rows).
    return torch.ops.mkldnn._reorder_linear_weight(weight, batch_size=16)


# Without a packed weight, `_linear` hands at least this many rows to oneDNN, fewer to `F.linear`.
ONEDNN_MIN_ROWS = 8


def _wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           packed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: `x` `[..., in]`, `weight` `[out, in]` -> `[..., out]`.

    On the CPU in float32, when no gradient is wanted, it takes the faster of these
    routes (benchmarks/linear_bench.py times them against `F.linear`):

    * with `packed` (the weight in oneDNN's layout, see `_packed_linear_weights`):
      oneDNN's linear on it; a single row times a contiguous `weight` goes as
      `weight @ [x, x]^T` instead (MKL's row-times-matrix and matrix-vector paths
      read the weight at a fraction of memory speed; its two-column product does
      not, and beats oneDNN on one row);
    * without, from `ONEDNN_MIN_ROWS` rows: oneDNN's linear on the plain weight,
      which keeps a higher FLOP rate than MKL's on vocabulary-sized weights.

    Results equal `F.linear`'s up to float32 rounding (the same products, summed in
    another order). Everything else (GPU, other dtypes, autograd, a few rows without
    a packed weight) is `F.linear`.
    """
    if (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or _wants_grad(x, weight, bias)
        or x.numel() == 0
    ):
        return F.linear(x, weight, bias)
    x2 = x.reshape(-1, x.shape[-1]).contiguous()  # [N, in]
    rows = x2.shape[0]
    if packed is not None and rows == 1 and weight.is_contiguous():
        columns = torch.cat((x2, x2)).t()  # [in, 2], a transposed view: MKL reads x2's rows
        out = torch.mm(weight, columns) if bias is None else torch.addmm(bias[:, None], weight, columns)
        out = out[:, :1].t().contiguous()  # [out, 2] -> [1, out]
    elif packed is not None:
        out = torch.ops.mkldnn._linear_pointwise(x2, packed, bias, "none", [], "")  # [N, out]
    elif rows >= ONEDNN_MIN_ROWS and weight.is_contiguous() and _onednn_linear_available():
        out = torch.ops.mkldnn._linear_pointwise(x2, weight, bias, "none", [], "")  # [N, out]
    else:
        return F.linear(x, weight, bias)
    return out.view(*x.shape[:-1], out.shape[-1])


class _PackableLinear:
    """A layer computed by `_linear` whose weight `_packed_linear_weights` may pack: `_linear_weight()` is
    its weight as `[out, in]` (a view), `_packed` the packed copy while packed."""

    _packed: Optional[torch.Tensor] = None

    def _linear_weight(self) -> torch.Tensor:
        raise NotImplementedError


class _Linear(nn.Linear, _PackableLinear):
    """`nn.Linear` (same parameters, same state-dict keys) computed by `_linear`."""

    def _linear_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias, self._packed)


# _PackableLinear layer -> (weight key, packed weight); entries go with their module, and are never pickled with it.
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weight_key(weight: torch.Tensor) -> tuple:
    # Changes when the parameter is replaced, moved, cast or updated in place (an optimizer step).
    return (weight.data_ptr(), weight._version, weight.dtype, weight.device, tuple(weight.shape))


@contextlib.contextmanager
def _packed_linear_weights(module: nn.Module):
    """Within the block, the `_PackableLinear` layers of `module` run on oneDNN-packed copies of their weights.

    For generation: a decode step multiplies a few rows by every weight, and oneDNN is
    fastest on its own layout, but packing a vocabulary-sized weight takes as long as
    several steps. The copies (about the size of the layers' weights) are kept for the
    next block while the module lives, and remade when a weight changes (a training
    step, a load, `.to()`); `_release_packed_weights(module)` frees them. Only CPU
    float32 weights are packed, and only when no gradient is being recorded.
    """
    layers = []
    if not torch.is_grad_enabled() and _onednn_linear_available():
        for layer in module.modules():
            weight = layer._linear_weight() if isinstance(layer, _PackableLinear) else None
            if weight is None or weight.device.type != "cpu" or weight.dtype != torch.float32:
                continue
            key = _weight_key(weight)
            entry = _PACKED.get(layer)
            if entry is None or entry[0] != key:
                entry = _PACKED[layer] = (key, _pack(weight.detach().contiguous()))
            layers.append((layer, entry[1]))
    for layer, packed in layers:
        layer._packed = packed
    try:
        yield
    finally:
        for layer, _ in layers:
            layer.__dict__.pop("_packed", None)


def _release_packed_weights(module: nn.Module) -> None:
    """Free the packed weight copies that `_packed_linear_weights` keeps for `module`'s layers."""
    for layer in module.modules():
        _PACKED.pop(layer, None)


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


def _attend(query, key, value, bias, scale, dropout_p=0.0, is_causal=False, need_weights=False):
    """Multi-head attention over `[B, H, T, D]` queries and `[B, H, K, D]` keys/values -> `[B, H, T, D]`.

    Without `need_weights` this is `scaled_dot_product_attention`; with it the
    weights are computed explicitly (float32 softmax) and returned too.
    """
    if not need_weights:
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
    return out, probs


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


class _KVCache:
    """The decoder's key/value cache: self-attention keys/values per layer, and the
    cross-attention keys/values computed once from the encoder output.

    Self-attention tensors are `[N, H, capacity, D]`; `length` positions are filled.
    A static cache (made by `generate`) is preallocated for the whole generation
    and written in place, under `torch.inference_mode`. A dynamic one (made by a
    plain forward with `use_cache=True`) grows by concatenation, so it is safe under
    autograd. Cross-attention tensors are `[B, H, S, D]`; while beam searching B is
    the number of batch items, not of beams (see `_fold_beams_attend`).
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[Optional[torch.Tensor]] = [None] * num_layers
        self.values: list[Optional[torch.Tensor]] = [None] * num_layers
        self.cross_keys: list[Optional[torch.Tensor]] = [None] * num_layers
        self.cross_values: list[Optional[torch.Tensor]] = [None] * num_layers
        self.length = 0
        self.static = False
        self._spare = None  # a static cache's second buffer, for reordering beams

    @classmethod
    def preallocate(cls, num_layers, batch, heads, capacity, head_dim, dtype, device) -> "_KVCache":
        cache = cls(num_layers)
        shape = (batch, heads, capacity, head_dim)
        cache.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        cache.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        cache.static = True
        return cache

    @property
    def capacity(self) -> Optional[int]:
        return self.keys[0].shape[2] if self.static else None

    def get_seq_length(self) -> int:
        return self.length

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, layer: int):
        """transformers' legacy per-layer tuple: (self keys, self values, cross keys, cross values)."""
        k, v = self.keys[layer], self.values[layer]
        if k is not None:
            k, v = k[:, :, : self.length], v[:, :, : self.length]
        return k, v, self.cross_keys[layer], self.cross_values[layer]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        """Append `[N, H, T, D]` keys/values at position `length`; return everything so far."""
        end = self.length + key.shape[2]
        if self.static:
            if end > self.keys[layer].shape[2]:
                raise InputError(
                    f"the cache holds {self.keys[layer].shape[2]} positions; expected at most that many, got {end}"
                )
            self.keys[layer][:, :, self.length : end] = key
            self.values[layer][:, :, self.length : end] = value
            return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
        if self.keys[layer] is None or self.length == 0:
            self.keys[layer], self.values[layer] = key, value
        else:
            self.keys[layer] = torch.cat([self.keys[layer][:, :, : self.length], key], dim=2)
            self.values[layer] = torch.cat([self.values[layer][:, :, : self.length], value], dim=2)
        return self.keys[layer], self.values[layer]

    def set_cross(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Keep a layer's cross-attention keys/values `[B, H, S, D]`, contiguous: every decode step
        multiplies by them, and the strided view of a projection would be copied on each step."""
        self.cross_keys[layer], self.cross_values[layer] = key.contiguous(), value.contiguous()

    def advance(self, steps: int) -> None:
        """Called once per forward, after every layer has written its `steps` new positions."""
        self.length += steps

    def reorder_cache(self, index: torch.Tensor) -> None:
        """Keep rows `index` of the self-attention cache (beam search picked their continuations)."""
        if not self.static:
            for layer in range(len(self.keys)):
                self.keys[layer] = self.keys[layer].index_select(0, index)
                self.values[layer] = self.values[layer].index_select(0, index)
            return
        # Only the filled positions move, into a second preallocated buffer that then takes the
        # first one's place: no allocation, and a copy as long as the sequence so far.
        if self._spare is None:
            self._spare = ([torch.empty_like(k) for k in self.keys], [torch.empty_like(v) for v in self.values])
        spare_keys, spare_values = self._spare
        filled = self.length
        for layer in range(len(self.keys)):
            torch.index_select(self.keys[layer][:, :, :filled], 0, index, out=spare_keys[layer][:, :, :filled])
            torch.index_select(self.values[layer][:, :, :filled], 0, index, out=spare_values[layer][:, :, :filled])
        self._spare = (self.keys, self.values)
        self.keys, self.values = spare_keys, spare_values


class _ModelOutput(OrderedDict):
    """Outputs as transformers gives them: attributes, keys, and tuple indexing over the fields that are set."""

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
    """An encoder's (or a decoder body's) outputs."""

    _fields = ("last_hidden_state", "pooler_output", "past_key_values", "hidden_states", "attentions", "cross_attentions")


class CausalLMOutput(_ModelOutput):
    """A decoder's outputs, with its LM head's logits."""

    _fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions")


class Seq2SeqLMOutput(_ModelOutput):
    """The encoder-decoder's outputs, with transformers' field names."""

    _fields = (
        "loss",
        "logits",
        "past_key_values",
        "decoder_hidden_states",
        "decoder_attentions",
        "cross_attentions",
        "encoder_last_hidden_state",
        "encoder_hidden_states",
        "encoder_attentions",
    )

    @property
    def cache(self):
        """transformers 5 names `past_key_values` `cache`."""
        return self.past_key_values


def check_input_ids(ids, vocab_size: int, max_positions: Optional[int] = None, name: str = "input_ids") -> None:
    """Raise InputError for ids outside `[0, vocab_size)` or a sequence longer than `max_positions`.

    An out-of-range lookup is an index error deep inside the model in PyTorch, and
    silent on some accelerators; the check runs before any work.
    """
    if ids is None:
        return
    if not isinstance(ids, torch.Tensor):
        raise InputError(f"{name} is a {type(ids).__name__}; expected a torch.Tensor of token ids")
    if ids.dim() != 2:
        raise InputError(f"{name} has shape {tuple(ids.shape)}; expected [batch, sequence] (2 dimensions)")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise InputError(f"{name} has dtype {ids.dtype}; expected integer token ids")
    if max_positions is not None and ids.shape[1] > max_positions:
        raise InputError(
            f"{name} has length {ids.shape[1]}; the model has {max_positions} positions, "
            f"expected a length <= {max_positions}"
        )
    if ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(f"{name} holds id {bad}; expected ids in [0, {vocab_size}) (the vocabulary size is {vocab_size})")
