"""Helpers of the Flax tests: the same weights in transformers' PyTorch model, encdec's PyTorch
port and encdec's Flax port, and the comparisons the tolerance table of docs/design.md asks for."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from encdec.conformance import tolerances
from encdec.config import EncoderDecoderConfig
from encdec.weights.names import init_weights, model_spec
from tiny_models import hf_model  # noqa: F401  (re-exported for the Flax tests)


# The tests compile many small programs on a 2-core machine: LLVM's -O0 halves XLA's CPU compile
# time. It changes no arithmetic (XLA's CPU backend uses no fast-math), so answers are the same.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def flax_model(config: EncoderDecoderConfig, state: dict, dtype=None, compiler_options=FAST_COMPILE):
    import jax.numpy as jnp

    from encdec.flax import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel(config, dtype=dtype or jnp.float32, compiler_options=compiler_options)
    model.load_canonical_state(state)
    return model


def pt_model(config: EncoderDecoderConfig, state: dict, tmp_path):
    """encdec's PyTorch port holding `state`, loaded through a safetensors checkpoint."""
    from encdec.pt import EncoderDecoderModel
    from encdec.weights.convert import save_state

    directory = tmp_path / "pt_checkpoint"
    directory.mkdir(exist_ok=True)
    save_state(state, model_spec(config), directory, "safetensors")
    config.save_pretrained(directory)
    return EncoderDecoderModel.from_pretrained(directory)


def perturbed_state(config: EncoderDecoderConfig, seed: int, scale: float = 0.2) -> dict:
    """`init_weights(config, seed)` with biases and LayerNorm weights moved off 0 and 1, so that a
    dropped bias or a swapped gamma/beta changes the outputs."""
    state = init_weights(config, seed)
    rng = np.random.default_rng(seed + 1000)
    spec = model_spec(config)
    for p in spec:
        if p.kind in ("bias", "conv1d_bias", "norm_bias", "norm_weight"):
            state[p.name] = state[p.name] + rng.normal(0.0, scale, p.shape).astype(np.float32)
    return state


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def rel_diff(a, b) -> float:
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def assert_close(name: str, got, expected, real: bool = False) -> None:
    bound = tolerances.FP32_ACTIVATION_REAL if real else tolerances.FP32_ACTIVATION_TINY
    diff = max_abs_diff(got, expected)
    assert diff <= bound, f"{name}: max abs diff {diff:.3g} > {bound}"


def assert_loss_close(got, expected) -> None:
    diff = rel_diff(got, expected)
    assert diff <= tolerances.FP32_LOSS_REL, f"loss {float(got)} vs {float(expected)}: relative diff {diff:.3g}"


def assert_same_ids(name: str, got, expected) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and np.array_equal(got, expected), (
        f"{name}: generated ids differ\nflax:\n{got}\nreference:\n{expected}"
    )


def grad_diffs(got: dict, expected: dict) -> dict:
    """Per parameter, max |a - b| / max(max |b|, GRAD_SCALE_FLOOR * the largest gradient of the model)."""
    floor = tolerances.GRAD_SCALE_FLOOR * max(float(np.max(np.abs(g))) for g in expected.values())
    out = {}
    for name, ref in expected.items():
        scale = max(float(np.max(np.abs(ref))), floor)
        out[name] = max_abs_diff(got[name], ref) / scale
    return out


@pytest.fixture(autouse=True, scope="module")
def torch_on_one_thread():
    """The PyTorch references are tiny: they run on one thread in the modules that import this
    fixture (restored afterwards); with two, their OpenMP workers and XLA's fight over the
    machine's two cores and the references take longer than the code under test."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
