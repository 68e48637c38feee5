"""Dense layers on the CPU through oneDNN: the fast path of the PyTorch port's linear layers.

Every dense layer of the port (`Linear`, GPT-2's Conv1D) computes `linear`, which
equals `F.linear` up to float32 rounding (the same products, summed in another
order). On the CPU in float32, with no gradient wanted, it takes oneDNN's linear
(`torch.ops.mkldnn._linear_pointwise`, the op torch's compiler emits for CPU linear
layers), on weights packed in oneDNN's own layout while generating
(`packed_weights`). benchmarks/investigations/linear_bench.py times the routes against `F.linear`.

The switch: `ENCDEC_FAST_LINEAR=0` in the environment (read at import), or
`set_enabled(False)` at run time, makes `linear` exactly `F.linear` and
`packed_weights` pack nothing, for debugging or for torch builds whose private
oneDNN ops misbehave. The ops are also probed once (`onednn_available`) and left
alone when they disagree with `F.linear`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Without a packed weight, `linear` hands at least this many rows to oneDNN, fewer to `F.linear`.
ONEDNN_MIN_ROWS = 8

_enabled = os.environ.get("ENCDEC_FAST_LINEAR", "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether the oneDNN routes may be taken (`ENCDEC_FAST_LINEAR`, `set_enabled`)."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Turn the oneDNN routes on or off for the whole process; off, `linear` is `F.linear`."""
    global _enabled
    _enabled = bool(flag)


@functools.lru_cache(maxsize=None)
def onednn_available() -> bool:
    """Whether this torch build runs oneDNN's float32 linear, on a plain and on a packed weight, in
    agreement with `F.linear`; checked once."""
    try:
        # Fixed values, not random ones: the check must not move torch's global random stream.
        x = torch.linspace(-1.0, 1.0, 30).reshape(5, 6)
        w = torch.linspace(-0.5, 0.7, 24).reshape(4, 6)
        b = torch.linspace(-0.2, 0.3, 4)
        with torch.no_grad():
            plain = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            packed = torch.ops.mkldnn._linear_pointwise(x, pack(w), b, "none", [], "")
        expected = F.linear(x, w, b)
        return all(bool(torch.allclose(out, expected, rtol=1e-5, atol=1e-5)) for out in (plain, packed))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def pack(weight: torch.Tensor) -> torch.Tensor:
    """`weight` `[out, in]` in oneDNN's blocked layout; the row-count hint matters little (decode steps: a few rows)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, batch_size=16)


def _wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           packed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: `x` `[..., in]`, `weight` `[out, in]` -> `[..., out]`.

    On the CPU in float32, when no gradient is wanted, it takes the faster of these routes:

    * with `packed` (the weight in oneDNN's layout, see `packed_weights`): oneDNN's
      linear on it; a single row times a contiguous `weight` goes as
      `weight @ [x, x]^T` instead (MKL's row-times-matrix and matrix-vector paths
      read the weight at a fraction of memory speed; its two-column product does
      not, and beats oneDNN on one row);
    * without, from `ONEDNN_MIN_ROWS` rows: oneDNN's linear on the plain weight,
      which keeps a higher FLOP rate than MKL's on vocabulary-sized weights.

    Everything else (switched off, GPU, other dtypes, autograd, a few rows without
    a packed weight) is `F.linear`.
    """
    if (
        not _enabled
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or _wants_grad(x, weight, bias)
        or x.numel() == 0
        or x.shape[-1] != weight.shape[-1]  # F.linear's own error names the shapes
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
    elif rows >= ONEDNN_MIN_ROWS and weight.is_contiguous() and onednn_available():
        out = torch.ops.mkldnn._linear_pointwise(x2, weight, bias, "none", [], "")  # [N, out]
    else:
        return F.linear(x, weight, bias)
    return out.view(*x.shape[:-1], out.shape[-1])


class PackableLinear:
    """A layer computed by `linear` whose weight `packed_weights` may pack: `linear_weight()` is
    its weight as `[out, in]` (a view), `_packed` the packed copy while packed."""

    _packed: Optional[torch.Tensor] = None

    def linear_weight(self) -> torch.Tensor:
        raise NotImplementedError


class Linear(nn.Linear, PackableLinear):
    """`nn.Linear` (same parameters, same state-dict keys) computed by `linear`."""

    def linear_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self._packed)


# PackableLinear layer -> (weight key, packed weight); entries go with their module, and are never pickled with it.
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weight_key(weight: torch.Tensor) -> tuple:
    # Changes when the parameter is replaced, moved, cast or updated in place (an optimizer step).
    return (weight.data_ptr(), weight._version, weight.dtype, weight.device, tuple(weight.shape))


@contextlib.contextmanager
def packed_weights(module: nn.Module):
    """Within the block, the `PackableLinear` layers of `module` run on oneDNN-packed copies of their weights.

    For generation: a decode step multiplies a few rows by every weight, and oneDNN is
    fastest on its own layout, but packing a vocabulary-sized weight takes as long as
    several steps. The copies (about the size of the layers' weights) are kept for the
    next block while the module lives, and remade when a weight changes (a training
    step, a load, `.to()`); `release_packed_weights(module)` frees them. Only CPU
    float32 weights are packed, only when no gradient is being recorded, and only
    while the fast path is enabled.
    """
    layers = []
    if _enabled and not torch.is_grad_enabled() and onednn_available():
        for layer in module.modules():
            weight = layer.linear_weight() if isinstance(layer, PackableLinear) else None
            if weight is None or weight.device.type != "cpu" or weight.dtype != torch.float32:
                continue
            key = _weight_key(weight)
            entry = _PACKED.get(layer)
            if entry is None or entry[0] != key:
                entry = _PACKED[layer] = (key, pack(weight.detach().contiguous()))
            layers.append((layer, entry[1]))
    for layer, packed in layers:
        layer._packed = packed
    try:
        yield
    finally:
        for layer, _ in layers:
            layer.__dict__.pop("_packed", None)


def release_packed_weights(module: nn.Module) -> None:
    """Free the packed weight copies that `packed_weights` keeps for `module`'s layers."""
    for layer in module.modules():
        _PACKED.pop(layer, None)
