"""Generation internals: outputs are ordinary tensors; beam search's top-k breaks ties by index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import encdec.pt.generation as generation
from pt_helpers import joined_config, one_torch_thread, our_model, random_batch, random_state  # noqa: F401


def test_generated_ids_are_ordinary_tensors():
    config = joined_config("bert2bert", 0)
    model = our_model(config, random_state(config, 0))
    b = random_batch(config, np.random.default_rng(0), 2, 7, 4, "none")
    ids = model.generate(b["input_ids"], max_length=6, num_beams=2)
    assert not ids.is_inference()
    labels = ids[:, 1:].clone()
    ids[ids == config.pad_token_id] = -100  # in-place edits work, as on transformers' output
    assert model(input_ids=b["input_ids"], labels=labels).loss.requires_grad


@pytest.mark.parametrize("k", [1, 3, 8])
def test_stable_topk_puts_the_lower_index_first_among_equal_scores(k):
    """numpy's stable argsort of the negated scores is the independent reference
    (the order tf.math.top_k and jax.lax.top_k give)."""
    rng = np.random.default_rng(k)
    # few distinct values, so ties fall inside the selection, across it and at its boundary
    scores = rng.integers(0, 4, size=(64, 40)).astype(np.float32)
    scores[:8] = -np.inf  # a row with nothing but ties
    scores[8:16, ::3] = -np.inf
    values, indices = generation._stable_topk(torch.from_numpy(scores), k)
    expected = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    np.testing.assert_array_equal(indices.numpy(), expected)
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(scores, expected, axis=-1))


def test_stable_topk_on_distinct_scores_is_topk():
    scores = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    values, indices = generation._stable_topk(scores, 8)
    ref_values, ref_indices = torch.topk(scores, 8)
    assert torch.equal(indices, ref_indices) and torch.equal(values, ref_values)
