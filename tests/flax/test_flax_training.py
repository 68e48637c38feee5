"""Training: the loss's gradients equal transformers' PyTorch ones (and encdec's PyTorch port's),
parameter by parameter; a few optax steps lower the loss."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from encdec.conformance import tolerances
from flax_testlib import FAST_COMPILE, assert_loss_close, grad_diffs, hf_model, pt_model
from flax_testlib import torch_on_one_thread  # noqa: F401  (autouse)

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
torch = pytest.importorskip("torch")

from encdec.errors import InputError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel, loss_fn, make_train_step, train_step  # noqa: E402


def _torch_grads(model, spec, batch):
    model.zero_grad()
    out = model(input_ids=torch.tensor(batch["input_ids"]), attention_mask=torch.tensor(batch["attention_mask"]),
                labels=torch.tensor(batch["labels"]))
    out.loss.backward()
    named = dict(model.named_parameters(remove_duplicate=False))
    # A parameter the loss does not reach (the encoder's pooler) has no gradient: zero.
    grads = {p.name: named[p.name].grad for p in spec}
    return out.loss.item(), {k: (g.numpy() if g is not None else np.zeros(spec.by_name[k].shape, np.float32))
                             for k, g in grads.items()}


@pytest.mark.parametrize("case", ["bert2gpt2", pytest.param("roberta2roberta", marks=pytest.mark.slow)])
def test_gradients_match_pytorch(case, tmp_path):
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt="safetensors")
    g = golden(case)
    batch = dict(input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: loss_fn(model, p, batch)), compiler_options=FAST_COMPILE)
    loss, grads = value_and_grad(model.params)
    grads = FlaxEncoderDecoderModel(model.config, params=grads).canonical_state()  # canonical names and layouts
    state = model.canonical_state()
    references = {"transformers": hf_model(model.config, state)}
    references["encdec.pt"] = pt_model(model.config, state, tmp_path)
    for label, reference in references.items():
        ref_loss, ref_grads = _torch_grads(reference, model.spec, batch)
        assert_loss_close(loss, ref_loss)
        diffs = grad_diffs(grads, ref_grads)
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] <= tolerances.FP32_GRAD_REL, f"{case} vs {label}: {worst} relative diff {diffs[worst]:.3g}"


@pytest.fixture(scope="module")
def bert2bert():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors", compiler_options=FAST_COMPILE)


def test_optax_steps_lower_the_loss(bert2bert):
    model = bert2bert
    g = golden("bert2bert")
    batch = dict(input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    optimizer = optax.adam(1e-2)
    step = jax.jit(make_train_step(model, optimizer), compiler_options=FAST_COMPILE)
    params, opt_state = model.params, optimizer.init(model.params)
    before = float(model(params=params, **batch).loss)
    key = jax.random.key(0)
    for _ in range(5):
        key, dropout_rng = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, batch, dropout_rng)
        assert np.isfinite(float(loss))
    after = float(model(params=params, **batch).loss)
    assert after < 0.8 * before, (before, after)
    # The model's own params are untouched: training is pure.
    assert float(model(**batch).loss) == before


def test_dropout_is_on_only_in_training(bert2bert):
    model = bert2bert
    g = golden("bert2bert")
    kwargs = dict(input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    eval_loss = float(model(**kwargs).loss)
    a = float(model(**kwargs, train=True, dropout_rng=jax.random.key(1)).loss)
    b = float(model(**kwargs, train=True, dropout_rng=jax.random.key(2)).loss)
    assert len({eval_loss, a, b}) == 3
    assert float(model(**kwargs, train=True, dropout_rng=jax.random.key(1)).loss) == a
    with pytest.raises(InputError, match="dropout_rng"):
        model(**kwargs, train=True)


def test_train_step_checks_the_batch(bert2bert):
    model = bert2bert
    optimizer = optax.sgd(0.1)
    with pytest.raises(InputError, match="labels"):
        train_step(model, optimizer, model.params, optimizer.init(model.params), {"input_ids": np.ones((1, 3), int)})
    with pytest.raises(InputError, match="unknown"):
        loss_fn(model, model.params, {"input_ids": np.ones((1, 3), int), "labels": np.ones((1, 3), int), "x": 1})
