"""Compare two frameworks' outputs: recursively, by name, in both directions.

Outputs are flattened to `{name: array}` (`decoder_hidden_states.2`,
`cross_attentions.0`), and every name either side has is checked: a name only
one side has is a failure unless the caller declares it optional. Bounds come
from `tolerances.py` only.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import tolerances as tol


@dataclasses.dataclass
class Comparison:
    """One check made: which model case, item, pair, device and dtype, and its outcome."""

    case: str  # model case, e.g. "bert2gpt2" or "fixture:roberta2roberta"
    item: str  # "forward/ragged", "gradients/ragged", "generate/beam3_eos"
    frameworks: tuple[str, str]
    device: str
    dtype: str
    output: str  # flattened output name, parameter name, or "ids"
    metric: str
    value: float | None
    tolerance: float | None
    passed: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["frameworks"] = list(self.frameworks)
        out["pass"] = out.pop("passed")
        for key in ("value", "tolerance"):
            v = out[key]
            if isinstance(v, float) and not np.isfinite(v):
                out[key] = str(v)  # JSON has no NaN/inf
        return out


def flatten(obj: Any, prefix: str = "", leaf: Callable[[Any], np.ndarray] = np.asarray) -> dict[str, np.ndarray]:
    """`{name: array}` for a nested structure of dicts, lists, tuples and arrays.

    Dict keys and sequence indices are joined with "."; None leaves are dropped
    (an output a model did not compute); `leaf` turns each leaf into numpy.
    """
    out: dict[str, np.ndarray] = {}
    if obj is None:
        return out
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key), leaf))
        return out
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i), leaf))
        return out
    out[prefix] = leaf(obj)
    return out


def is_optional(name: str, optional: Iterable[str]) -> bool:
    """Whether `name` matches one of the optional patterns (fnmatch; `x` also covers `x.*`)."""
    for pattern in optional:
        if fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern + "."):
            return True
    return False


# ---------------------------------------------------------------------------
# Metrics


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """|a - b| / max(|a|, |b|) on the largest element; 0 when both are exactly 0."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(a64), initial=0.0)), float(np.max(np.abs(b64), initial=0.0)))
    diff = float(np.max(np.abs(a64 - b64), initial=0.0))
    if scale == 0.0:
        return diff  # both zero: 0; NaN propagates
    return diff / scale


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _positions(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """`[N, vocab]` rows of the positions that count (mask == 1), all when no mask."""
    flat = logits.reshape(-1, logits.shape[-1])
    if mask is None:
        return flat
    keep = np.asarray(mask).reshape(-1).astype(bool)
    if keep.size != flat.shape[0]:
        raise ValueError(f"position mask has {keep.size} entries for {flat.shape[0]} logit rows")
    return flat[keep]


def top1_agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    ra, rb = _positions(a, mask), _positions(b, mask)
    if ra.shape[0] == 0:
        return 1.0
    return float(np.mean(ra.argmax(-1) == rb.argmax(-1)))


def mean_kl(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean over positions of KL(softmax(a) || softmax(b))."""
    ra, rb = _positions(a, mask), _positions(b, mask)
    if ra.shape[0] == 0:
        return 0.0
    la, lb = _log_softmax(ra), _log_softmax(rb)
    return float(np.mean(np.sum(np.exp(la) * (la - lb), axis=-1)))


METRICS = {
    "max_abs_diff": lambda a, b, mask: max_abs_diff(a, b),
    "rel_diff": lambda a, b, mask: rel_diff(a, b),
    "top1_agreement": top1_agreement,
    "mean_kl": mean_kl,
}


# ---------------------------------------------------------------------------
# Forward outputs


def compare_outputs(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    ctx: Mapping[str, Any],
    *,
    real: bool,
    optional: Iterable[str] = (),
    logits_mask: np.ndarray | None = None,
) -> list[Comparison]:
    """Every output name of either side, checked by the tolerance table.

    `a` and `b` are flat (`flatten`). `ctx` gives case, item, frameworks, device
    and dtype. `logits_mask` ([batch, dec_len]) selects the positions that
    count for bf16 top-1 agreement and KL.
    """
    optional = tuple(optional)
    fa, fb = ctx["frameworks"]
    out: list[Comparison] = []
    for name in sorted(set(a) | set(b), key=output_order):
        if name not in a or name not in b:
            if is_optional(name, optional):
                continue
            have, lack = (fa, fb) if name in a else (fb, fa)
            out.append(Comparison(**ctx, output=name, metric="present", value=None, tolerance=None, passed=False,
                                  note=f"{have} returns {name!r}, {lack} does not"))
            continue
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            out.append(Comparison(**ctx, output=name, metric="shape", value=None, tolerance=None, passed=False,
                                  note=f"{fa} shape {list(x.shape)}, {fb} shape {list(y.shape)}; expected equal"))
            continue
        for check in tol.checks_for(name, ctx["dtype"], real):
            mask = logits_mask if tol.output_kind(name) == "logits" else None
            if mask is not None and mask.size * x.shape[-1] != x.size:
                mask = None  # logits of another shape (e.g. beam-expanded): all positions count
            value = METRICS[check.metric](x, y, mask)
            out.append(Comparison(**ctx, output=name, metric=check.metric, value=value, tolerance=check.bound,
                                  passed=check.passes(value)))
    return out


_ORDER = (
    "loss",
    "logits",
    "encoder_hidden_states",
    "encoder_last_hidden_state",
    "encoder_attentions",
    "decoder_hidden_states",
    "decoder_attentions",
    "cross_attentions",
)


def output_order(name: str) -> tuple:
    """Sort key: the model's data flow first (encoder before decoder), layers by number."""
    head, _, rest = name.partition(".")
    rank = _ORDER.index(head) if head in _ORDER else len(_ORDER)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rest.split(".") if p)
    return (rank, head, parts)


# ---------------------------------------------------------------------------
# Per-layer diagnosis


_LAYER_RE = re.compile(r"^(encoder|decoder)_hidden_states\.(\d+)$")


def layer_sequence(outputs: Mapping[str, np.ndarray]) -> list[str]:
    """The hidden-state outputs in data-flow order: encoder layers, encoder output,
    decoder layers, logits (whichever of them the outputs hold)."""
    enc = sorted((int(m.group(2)), n) for n in outputs if (m := _LAYER_RE.match(n)) and m.group(1) == "encoder")
    dec = sorted((int(m.group(2)), n) for n in outputs if (m := _LAYER_RE.match(n)) and m.group(1) == "decoder")
    seq = [n for _, n in enc]
    if not enc and "encoder_last_hidden_state" in outputs:
        seq.append("encoder_last_hidden_state")
    seq += [n for _, n in dec]
    if "logits" in outputs:
        seq.append("logits")
    return seq


def describe_layer(name: str) -> str:
    """`decoder_hidden_states.2` -> `decoder layer 1 output`; index 0 is the embeddings."""
    m = _LAYER_RE.match(name)
    if m:
        side, idx = m.group(1), int(m.group(2))
        return f"{side} embeddings" if idx == 0 else f"{side} layer {idx - 1} output"
    return {"encoder_last_hidden_state": "encoder output", "logits": "LM head output"}.get(name, name)


@dataclasses.dataclass
class LayerDiagnosis:
    """Max abs diff per layer along the data flow, and the first layer over the bound."""

    case: str
    item: str
    frameworks: tuple[str, str]
    device: str
    dtype: str
    layers: list[tuple[str, float]]
    bound: float | None
    first_bad: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "item": self.item, "frameworks": list(self.frameworks), "device": self.device,
            "dtype": self.dtype, "bound": self.bound, "first_bad_layer": self.first_bad,
            "first_bad_layer_description": describe_layer(self.first_bad) if self.first_bad else None,
            "max_abs_diff_per_layer": {n: (v if np.isfinite(v) else str(v)) for n, v in self.layers},
        }


def diagnose_layers(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], ctx: Mapping[str, Any], bound: float | None
) -> LayerDiagnosis | None:
    """Walk the layers both sides have, in data-flow order, and name the first one
    whose max abs diff exceeds `bound` (None: no bound, e.g. bf16)."""
    seq = [n for n in layer_sequence(a) if n in b and np.shape(a[n]) == np.shape(b[n])]
    if not seq:
        return None
    layers = [(n, max_abs_diff(np.asarray(a[n]), np.asarray(b[n]))) for n in seq]
    first = None
    if bound is not None:
        first = next((n for n, v in layers if not (v <= bound)), None)
    return LayerDiagnosis(ctx["case"], ctx["item"], tuple(ctx["frameworks"]), ctx["device"], ctx["dtype"],
                          layers, bound, first)


# ---------------------------------------------------------------------------
# Gradients and generated ids


def compare_gradients(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], ctx: Mapping[str, Any], order: Iterable[str] = ()
) -> list[Comparison]:
    """Per-parameter relative diff, both directions; `order` lists canonical names
    in model order (the rest follow sorted)."""
    fa, fb = ctx["frameworks"]
    names = [n for n in order if n in a or n in b]
    names += sorted((set(a) | set(b)) - set(names))
    present = [np.max(np.abs(np.asarray(g, np.float64)), initial=0.0) for g in list(a.values()) + list(b.values())]
    floor = tol.GRAD_SCALE_FLOOR * float(max(present, default=0.0))
    out = []
    for name in names:
        if name not in a or name not in b:
            have, lack = (fa, fb) if name in a else (fb, fa)
            out.append(Comparison(**ctx, output=name, metric="present", value=None, tolerance=None, passed=False,
                                  note=f"{have} has a gradient for {name!r}, {lack} does not"))
            continue
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if x.shape != y.shape:
            out.append(Comparison(**ctx, output=name, metric="shape", value=None, tolerance=None, passed=False,
                                  note=f"{fa} shape {list(x.shape)}, {fb} shape {list(y.shape)}; expected equal"))
            continue
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)), floor)
        diff = float(np.max(np.abs(x - y), initial=0.0))
        value = diff / scale if scale > 0 else diff
        check = tol.GRADIENT_CHECK
        out.append(Comparison(**ctx, output=name, metric=check.metric, value=value, tolerance=check.bound,
                              passed=check.passes(value)))
    return out


def pad_ids(ids: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Right-pad generated ids to `width` with the pad id.

    A fixed-size-cache generator (TF XLA, Flax) returns max_length columns;
    transformers' PyTorch stops at the longest row. Columns past a row's eos
    hold the pad id in both, so padding changes no comparison.
    """
    ids = np.asarray(ids)
    if ids.shape[1] >= width:
        return ids
    return np.concatenate([ids, np.full((ids.shape[0], width - ids.shape[1]), pad, ids.dtype)], axis=1)


def compare_generated(a: np.ndarray, b: np.ndarray, ctx: Mapping[str, Any], pad: int) -> Comparison:
    """Generated ids must be identical; the note names the first differing row and step."""
    fa, fb = ctx["frameworks"]
    a, b = np.asarray(a), np.asarray(b)
    check = tol.GENERATION_CHECK
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        return Comparison(**ctx, output="ids", metric="shape", value=None, tolerance=None, passed=False,
                          note=f"{fa} returned ids of shape {list(a.shape)}, {fb} {list(b.shape)}; "
                               "expected the same number of rows")
    width = max(a.shape[1], b.shape[1])
    a, b = pad_ids(a, width, pad), pad_ids(b, width, pad)
    diff = a != b
    count = int(diff.sum())
    note = ""
    if count:
        row, col = map(int, np.argwhere(diff)[0])
        note = (f"first difference at row {row}, position {col}: {fa} {a[row].tolist()} vs "
                f"{fb} {b[row].tolist()}")
    return Comparison(**ctx, output="ids", metric=check.metric, value=float(count), tolerance=check.bound,
                      passed=check.passes(float(count)), note=note)
