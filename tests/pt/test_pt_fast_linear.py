"""The oneDNN fast path of the CPU linear layers (`encdec.pt.fast_linear`): it changes no result
beyond float32 rounding, and its switch turns it off (then every layer is `F.linear`)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import encdec.pt.fast_linear as fast_linear
from pt_helpers import joined_config, one_torch_thread, our_model, random_batch, random_state  # noqa: F401


@pytest.fixture
def switched_off():
    """The fast path off for one test, and back to what it was after."""
    before = fast_linear.enabled()
    fast_linear.set_enabled(False)
    yield
    fast_linear.set_enabled(before)


@pytest.mark.parametrize("rows", [1, 2, fast_linear.ONEDNN_MIN_ROWS - 1, fast_linear.ONEDNN_MIN_ROWS, 64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_is_f_linear(rows, with_bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 3, 48, generator=g)[:, 1]  # a strided view: [rows, 48]
    weight = torch.randn(301, 48, generator=g)
    bias = torch.randn(301, generator=g) if with_bias else None
    with torch.inference_mode():
        out = fast_linear.linear(x, weight, bias)
    assert out.shape == (rows, 301) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    # rank 3 keeps its leading axes
    with torch.inference_mode():
        out3 = fast_linear.linear(x.reshape(1, rows, 48), weight, bias)
    torch.testing.assert_close(out3, F.linear(x, weight, bias)[None], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 2, 16, 64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_on_packed_weights_is_f_linear(rows, with_bias):
    layer = fast_linear.Linear(48, 301, bias=with_bias)
    x = torch.randn(rows, 48, generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode(), fast_linear.packed_weights(layer):
        if fast_linear.onednn_available():
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
        with fast_linear.packed_weights(layer):
            if fast_linear.onednn_available():
                assert layer._packed is not None
            out = layer(x)
    expected = torch.addmm(layer.bias, x[0], layer.weight)[None]  # weight [in, out]
    torch.testing.assert_close(plain, expected, rtol=0, atol=0)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 2, fast_linear.ONEDNN_MIN_ROWS, 64])
def test_switched_off_it_is_f_linear_and_packs_nothing(rows, switched_off):
    layer = fast_linear.Linear(48, 301)
    x = torch.randn(rows, 48, generator=torch.Generator().manual_seed(rows))
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        packed = fast_linear.pack(layer.weight.detach()) if fast_linear.onednn_available() else None
        # Even handed a packed weight, the layer computes F.linear, bit for bit.
        assert torch.equal(fast_linear.linear(x, layer.weight, layer.bias, packed), expected)
        with fast_linear.packed_weights(layer):
            assert layer._packed is None
            assert torch.equal(layer(x), expected)
    assert layer not in fast_linear._PACKED


def test_switched_on_again_it_packs(switched_off):
    if not fast_linear.onednn_available():
        pytest.skip("this torch build has no oneDNN linear")
    fast_linear.set_enabled(True)
    layer = fast_linear.Linear(48, 301)
    with torch.inference_mode(), fast_linear.packed_weights(layer):
        assert layer._packed is not None


@pytest.mark.parametrize("value,expected", [("0", False), ("off", False), ("1", True), (None, True)])
def test_the_environment_variable_sets_the_switch(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "ENCDEC_FAST_LINEAR"}
    if value is not None:
        env["ENCDEC_FAST_LINEAR"] = value
    out = subprocess.run(
        [sys.executable, "-c", "import encdec.pt.fast_linear as f; print(f.enabled())"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out == str(expected)


def test_packed_weights_follow_parameter_changes():
    config = joined_config("bert2bert", 6)
    state = random_state(config, 6)
    model = our_model(config, state)
    b = random_batch(config, np.random.default_rng(6), 2, 7, 4, "none")
    first = model.generate(b["input_ids"], max_length=10, num_beams=2)
    if fast_linear.onednn_available() and fast_linear.enabled():
        assert any(layer in fast_linear._PACKED for layer in model.decoder.modules())
    changed = random_state(config, 7)
    model.load_canonical_state(changed)  # in-place copies: same tensors, new versions
    expected = our_model(config, changed).generate(b["input_ids"], max_length=10, num_beams=2)
    assert torch.equal(model.generate(b["input_ids"], max_length=10, num_beams=2), expected)
    assert not torch.equal(first, expected)
    fast_linear.release_packed_weights(model)
    assert not any(layer in fast_linear._PACKED for layer in model.modules())
    assert torch.equal(model.generate(b["input_ids"], max_length=10, num_beams=2), expected)


def test_linear_keeps_autograd():
    layer = fast_linear.Linear(6, 4)
    x = torch.randn(3, 6, requires_grad=True)
    layer(x).sum().backward()
    expected = torch.ones(3, 4) @ layer.weight
    torch.testing.assert_close(x.grad, expected)
    assert layer.weight.grad is not None and layer.bias.grad is not None


@pytest.mark.parametrize("pair", ["bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_fast_linear_gives_the_same_generation(pair, num_beams):
    config = joined_config(pair, 5)
    model = our_model(config, random_state(config, 5))
    b = random_batch(config, np.random.default_rng(5), 3, 7, 4, "ragged")
    kwargs = dict(attention_mask=b["attention_mask"], max_length=9, num_beams=num_beams, output_scores=True,
                  return_dict_in_generate=True)
    fast = model.generate(b["input_ids"], **kwargs)
    before = fast_linear.enabled()
    fast_linear.set_enabled(False)
    try:
        plain = model.generate(b["input_ids"], **kwargs)
    finally:
        fast_linear.set_enabled(before)
    assert torch.equal(fast.sequences, plain.sequences)
    for a, e in zip(fast.scores, plain.scores):
        finite = torch.isfinite(e)
        assert torch.equal(finite, torch.isfinite(a))
        torch.testing.assert_close(a[finite], e[finite], rtol=0, atol=1e-5)


def test_the_onednn_probe_leaves_the_random_stream_alone():
    fast_linear.onednn_available.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    fast_linear.onednn_available()
    assert torch.equal(torch.rand(4), expected)
