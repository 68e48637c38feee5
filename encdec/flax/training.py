"""Training a FlaxEncoderDecoderModel with optax: the loss, its gradients, one optimizer step.

Everything here is a pure function of `params` (and of the optimizer state), so
the step can be wrapped in `jax.jit` by the caller:

    step = jax.jit(make_train_step(model, optax.adamw(3e-4)))
    opt_state = optimizer.init(model.params)
    params, opt_state, loss = step(model.params, opt_state, batch, dropout_rng)

A batch is a dict with `input_ids`, `labels` and optionally `attention_mask`,
`decoder_input_ids`, `decoder_attention_mask`, `token_type_ids`. The loss is the
model's: mean cross-entropy over the labels that are not -100, the decoder inputs
made from the labels (shifted right) unless given.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from ..errors import InputError

_BATCH_KEYS = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask", "token_type_ids")


def loss_fn(model, params, batch: dict, dropout_rng=None, train: bool = False):
    """The model's loss on `batch` (a scalar), pure in `params`."""
    unknown = set(batch) - set(_BATCH_KEYS)
    if unknown:
        raise InputError(f"the batch has unknown key(s) {sorted(unknown)}; expected some of {_BATCH_KEYS}")
    if "labels" not in batch or "input_ids" not in batch:
        raise InputError(f"the batch has keys {sorted(batch)}; expected at least input_ids and labels")
    out = model(params=params, dropout_rng=dropout_rng, train=train, **batch)
    return out.loss


def make_train_step(model, optimizer) -> Callable:
    """`step(params, opt_state, batch, dropout_rng=None) -> (params, opt_state, loss)`.

    One optax update from the gradients of the loss (`jax.value_and_grad`), with
    dropout on when `dropout_rng` is given. Pure, so `jax.jit(step)` compiles it once.
    """
    import optax

    def step(params, opt_state, batch: dict, dropout_rng: Optional[jax.Array] = None):
        train = dropout_rng is not None
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, batch, dropout_rng, train))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train_step(model, optimizer, params, opt_state, batch: dict, dropout_rng=None):
    """One step of `make_train_step(model, optimizer)`: -> (params, opt_state, loss)."""
    return make_train_step(model, optimizer)(params, opt_state, batch, dropout_rng)
