"""Generation internals: the CPU linear routes change nothing; beam search's top-k breaks ties by index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch.nn.functional as F

import encdec.pt.common as common
import encdec.pt.generation as generation
from pt_helpers import joined_config, one_torch_thread, our_model, random_batch, random_state  # noqa: F401


def _plain_linear(monkeypatch):
    monkeypatch.setattr(common, "_linear", lambda x, weight, bias=None, packed=None: F.linear(x, weight, bias))


@pytest.mark.parametrize("rows", [1, 2, common.ONEDNN_MIN_ROWS - 1, common.ONEDNN_MIN_ROWS, 64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_is_f_linear(rows, with_bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 3, 48, generator=g)[:, 1]  # a strided view: [rows, 48]
    weight = torch.randn(301, 48, generator=g)
    bias = torch.randn(301, generator=g) if with_bias else None
    with torch.inference_mode():
        out = common._linear(x, weight, bias)
    assert out.shape == (rows, 301) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    # rank 3 keeps its leading axes
    with torch.inference_mode():
        out3 = common._linear(x.reshape(1, rows, 48), weight, bias)
    torch.testing.assert_close(out3, F.linear(x, weight, bias)[None], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 2, 16, 64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_on_packed_weights_is_f_linear(rows, with_bias):
    layer = common._Linear(48, 301, bias=with_bias)
    x = torch.randn(rows, 48, generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode(), common._packed_linear_weights(layer):
        if common._onednn_linear_available():
            assert layer._packed is not None
        out = layer(x)
    assert "_packed" not in vars(layer)
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 2, 16])
def test_gpt2_conv1d_on_packed_weights_is_addmm(rows):
    from encdec.pt.gpt2 import _Conv1D

    layer = _Conv1D(48, 301)
    x = torch.randn(1, rows, 48, generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode():
        plain = layer(x)
        with common._packed_linear_weights(layer):
            if common._onednn_linear_available():
                assert layer._packed is not None
            out = layer(x)
    expected = torch.addmm(layer.bias, x[0], layer.weight)[None]  # weight [in, out]
    torch.testing.assert_close(plain, expected, rtol=0, atol=0)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_packed_weights_follow_parameter_changes():
    config = joined_config("bert2bert", 6)
    state = random_state(config, 6)
    model = our_model(config, state)
    b = random_batch(config, np.random.default_rng(6), 2, 7, 4, "none")
    first = model.generate(b["input_ids"], max_length=10, num_beams=2)
    if common._onednn_linear_available():
        assert any(layer in common._PACKED for layer in model.decoder.modules())
    changed = random_state(config, 7)
    model._load_numpy_state(changed)  # in-place copies: same tensors, new versions
    expected = our_model(config, changed).generate(b["input_ids"], max_length=10, num_beams=2)
    assert torch.equal(model.generate(b["input_ids"], max_length=10, num_beams=2), expected)
    assert not torch.equal(first, expected)
    common._release_packed_weights(model)
    assert not any(layer in common._PACKED for layer in model.modules())
    assert torch.equal(model.generate(b["input_ids"], max_length=10, num_beams=2), expected)


def test_linear_keeps_autograd():
    layer = common._Linear(6, 4)
    x = torch.randn(3, 6, requires_grad=True)
    layer(x).sum().backward()
    expected = torch.ones(3, 4) @ layer.weight
    torch.testing.assert_close(x.grad, expected)
    assert layer.weight.grad is not None and layer.bias.grad is not None


@pytest.mark.parametrize("pair", ["bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_fast_linear_gives_the_same_generation(pair, num_beams, monkeypatch):
    config = joined_config(pair, 5)
    model = our_model(config, random_state(config, 5))
    b = random_batch(config, np.random.default_rng(5), 3, 7, 4, "ragged")
    kwargs = dict(attention_mask=b["attention_mask"], max_length=9, num_beams=num_beams, output_scores=True,
                  return_dict_in_generate=True)
    fast = model.generate(b["input_ids"], **kwargs)
    with monkeypatch.context() as m:
        _plain_linear(m)
        plain = model.generate(b["input_ids"], **kwargs)
    assert torch.equal(fast.sequences, plain.sequences)
    for a, e in zip(fast.scores, plain.scores):
        finite = torch.isfinite(e)
        assert torch.equal(finite, torch.isfinite(a))
        torch.testing.assert_close(a[finite], e[finite], rtol=0, atol=1e-5)


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


def test_the_onednn_probe_leaves_the_random_stream_alone():
    common._onednn_linear_available.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    common._onednn_linear_available()
    assert torch.equal(torch.rand(4), expected)
