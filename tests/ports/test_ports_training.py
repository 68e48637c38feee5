"""Training: one backward pass in every port gives transformers' PyTorch loss and gradients on the
same weights, per stored parameter within the tolerance table's gradient bound."""

from __future__ import annotations

import numpy as np
import pytest

from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import assert_loss_close, hf_model, joined_config, random_batch, random_state, tolerances
from encdec.weights.names import model_spec

CASES = [("bert2gpt2", "plain"), ("roberta2roberta", "tie"), pytest.param("bert2bert", "proj", marks=pytest.mark.slow),
         pytest.param("bertgen2bertgen", "plain", marks=pytest.mark.slow),
         pytest.param("roberta2gpt2", "plain", marks=pytest.mark.slow),
         pytest.param("bert2roberta", "plain", marks=pytest.mark.slow)]


def transformers_grads(config, state, batch) -> tuple[float, dict]:
    """transformers' loss and gradient per stored parameter, summed over every name the spec ties to it
    (transformers 5 keeps separate copies for tie_encoder_decoder: the shared tensor's gradient is their sum)."""
    import torch

    hf = hf_model(config, state)
    t = {k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask", "labels")}
    loss = hf(**t).loss
    loss.backward()
    params = dict(hf.named_parameters(remove_duplicate=False))
    spec = model_spec(config)
    grads = {}
    for p in spec:
        names = [p.name] + [tied.name for tied in spec.tied if tied.source == p.name]
        distinct = {id(params[n]): params[n] for n in names}.values()
        found = [q.grad.numpy() for q in distinct if q.grad is not None]
        grads[p.name] = sum(found[1:], found[0].copy()) if found else np.zeros(p.shape, np.float32)
    return float(loss), grads


@pytest.mark.parametrize("pair,variant", CASES)
def test_gradients_match_transformers(port, pair, variant):
    config = joined_config(pair, 3, variant)
    state = random_state(config, 3)
    batch = random_batch(config, np.random.default_rng(3), 3, 8, 6, "ragged")
    expected_loss, expected = transformers_grads(config, state, batch)
    model = port.from_state(config, state)
    loss, grads = port.loss_and_grads(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert_loss_close(f"{port.name} {pair}-{variant}", loss, expected_loss)
    assert sorted(grads) == sorted(expected)
    floor = tolerances.GRAD_SCALE_FLOOR * max(float(np.abs(g).max()) for g in expected.values())
    worst = {}
    for name, ref in expected.items():
        scale = max(float(np.abs(ref).max()), floor)
        worst[name] = float(np.abs(grads[name].astype(np.float64) - ref).max()) / scale
    name = max(worst, key=worst.get)
    assert worst[name] <= tolerances.FP32_GRAD_REL, f"{port.name} {pair}-{variant}: {name} relative diff {worst[name]:.3g}"
    # The weights are the model's again after reading the gradients back.
    restored = model.canonical_state()
    for key, value in state.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
