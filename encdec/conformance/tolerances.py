"""What "agree" means: the tolerance table of docs/design.md, in one place.

Every threshold the suite checks is read from here; nothing else in the suite
holds a number that decides pass or fail.
"""

from __future__ import annotations

import dataclasses

# fp32 max abs diff of logits, hidden states and encoder outputs. Tiny fixtures
# (2 layers, width <= 48) accumulate little rounding; a real checkpoint (6+
# layers, width 384+) accumulates more, hence the looser bound.
FP32_ACTIVATION_TINY = 1e-5
FP32_ACTIVATION_REAL = 1e-4
# Loss: relative diff |a - b| / max(|a|, |b|).
FP32_LOSS_REL = 1e-6
BF16_LOSS_REL = 1e-2
# Gradients after one backward pass: relative diff per parameter (see GRAD_SCALE_FLOOR).
FP32_GRAD_REL = 1e-4
# A parameter whose exact gradient is zero or tiny holds mostly rounding noise:
# an attention key bias, say, whose gradient is a sum of terms of the size of
# the largest gradients that cancel exactly (softmax ignores a constant added to
# every score of a query). That noise is a few float32 ulps of the largest
# gradient, and GPU reduction orders make it larger than CPU ones, so each diff
# is measured against at least this fraction of the model's largest gradient:
# the check resolves differences down to 1e-4 * 1e-2 = 1e-6 of it (about 8 ulps).
GRAD_SCALE_FLOOR = 1e-2
# bf16 logits: share of (unmasked) positions whose argmax agrees, and the mean
# KL(p_a || p_b) of the softmaxed logits over those positions.
BF16_TOP1_MIN = 0.99
BF16_KL_MAX = 1e-3


@dataclasses.dataclass(frozen=True)
class Check:
    """One metric and its bound: pass when `value <= bound` (or `>=` for `at_least`)."""

    metric: str
    bound: float
    at_least: bool = False

    def passes(self, value: float) -> bool:
        if value != value:  # NaN never passes
            return False
        return value >= self.bound if self.at_least else value <= self.bound


def output_kind(name: str) -> str:
    """The row of the tolerance table an output name falls under."""
    leaf = name.split("/")[-1]
    if leaf == "loss":
        return "loss"
    if leaf.startswith("logits"):
        return "logits"
    return "activation"  # hidden states, attentions, encoder output


def checks_for(name: str, dtype: str, real: bool) -> list[Check]:
    """The checks a forward output gets, by output name, dtype and model size."""
    kind = output_kind(name)
    if dtype == "float32":
        if kind == "loss":
            return [Check("rel_diff", FP32_LOSS_REL)]
        return [Check("max_abs_diff", FP32_ACTIVATION_REAL if real else FP32_ACTIVATION_TINY)]
    if dtype == "bfloat16":
        if kind == "loss":
            return [Check("rel_diff", BF16_LOSS_REL)]
        if kind == "logits":
            return [Check("top1_agreement", BF16_TOP1_MIN, at_least=True), Check("mean_kl", BF16_KL_MAX)]
        # bf16 hidden states and attentions have no bound in the table; their
        # diffs are kept for the per-layer diagnosis only.
        return []
    raise ValueError(f"unknown dtype {dtype!r}; expected 'float32' or 'bfloat16'")


def activation_bound(dtype: str, real: bool) -> float | None:
    """The max-abs-diff bound used to find the first disagreeing layer (None in bf16)."""
    if dtype != "float32":
        return None
    return FP32_ACTIVATION_REAL if real else FP32_ACTIVATION_TINY


GRADIENT_CHECK = Check("rel_diff", FP32_GRAD_REL)
GENERATION_CHECK = Check("mismatched_ids", 0.0)
