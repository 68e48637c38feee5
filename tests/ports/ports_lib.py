"""What the shared port tests build on: tiny random configs and weights, batches, transformers'
PyTorch model holding the same weights (the independent reference), and the tolerance table."""

from __future__ import annotations

import importlib

import numpy as np

from tiny_models import (  # noqa: F401  (re-exported for the port tests)
    EOS,
    PAD,
    PAIRS,
    START,
    VOCAB,
    arch_config,
    hf_model,
    joined_config,
    quiet_transformers,
    random_batch,
    random_state,
)


def _tolerances():
    for name in ("encdec.conformance.tolerances", "conformance.tolerances"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("the conformance tolerance table (encdec.conformance.tolerances) is missing")


tolerances = _tolerances()

# Every pair plain, plus a decoder of another width (enc_to_dec_proj) and encoder/decoder ties.
VARIANTS = [(pair, "plain") for pair in PAIRS] + [
    ("bert2bert", "proj"),
    ("bert2gpt2", "proj"),
    ("roberta2roberta", "proj"),
    ("bert2bert", "tie"),
    ("roberta2roberta", "tie"),
    ("bertgen2bertgen", "tie"),
]
VARIANT_IDS = [f"{pair}-{variant}" for pair, variant in VARIANTS]


def hf_run(model, method: str = "__call__", **arrays):
    """Call transformers' model with numpy arrays (as torch tensors), without autograd."""
    import torch

    kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
              for k, v in arrays.items() if v is not None}
    with torch.no_grad():
        return getattr(model, method)(**kwargs)


def to_numpy(x) -> np.ndarray:
    """A torch tensor (transformers' outputs) as numpy."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_close(name: str, got, expected, real: bool = False) -> None:
    """fp32 activations (logits, hidden states, encoder output) within the tolerance table's bound."""
    bound = tolerances.FP32_ACTIVATION_REAL if real else tolerances.FP32_ACTIVATION_TINY
    diff = max_abs_diff(got, expected)
    assert diff <= bound, f"{name}: max abs diff {diff:.3g} > {bound}"


def assert_loss_close(name: str, got, expected) -> None:
    got, expected = float(got), float(expected)
    rel = abs(got - expected) / max(abs(got), abs(expected), 1e-30)
    assert rel <= tolerances.FP32_LOSS_REL, f"{name}: loss {got} vs {expected}: relative diff {rel:.3g}"


def assert_same_ids(name: str, got, expected) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and np.array_equal(got, expected), (
        f"{name}: generated ids differ\ngot:\n{got}\nexpected:\n{expected}"
    )
