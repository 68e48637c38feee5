"""Generation for `FlaxEncoderDecoderModel`: logits processors, greedy/sampling and beam search.

The semantics are transformers 5's (`GenerationMixin._sample`, `_beam_search` and
the processors of `generation/logits_process.py`): for the same checkpoint and
settings the same token ids. The whole generation (encoder, cache, loop) is one
`jax.jit`: the loop is a `lax.while_loop` over fixed-size state (token buffers
`[N, max_length]`, beam scores, finished flags, a cache of `max_length - 1`
positions), so every step has the same shapes. A processor is called as
`processor(sequences, cur_len, scores)`, `sequences` being the whole buffer and
`cur_len` (traced) how much of it is filled, as in the other ports.

The plan (special tokens, lengths, prompt, processors and their options) is the core's
(`encdec.generation.plan_generation`); each step is the model's `decode_step` and
`reorder_cache` (their pure halves); a step whose logits hold a NaN is recorded in
the loop and raised as NonFiniteError on the host. The compiled loop is kept per
`encdec.generation.StaticPlan` (what is static); the rest are traced inputs. Inside
a user's `jax.jit`, `generate` runs the same loop and returns its fixed-size buffers.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import inputs, logits_processors
from ..config import GenerationConfig
from ..errors import InputError
from ..generation import (
    StaticPlan,
    apply_processors,
    check_nan_step,
    generate_outputs,
    loop_options,
    loop_processors,
    plan_generation,
    returned_beams,
    static_plan,
)
from ..outputs import (
    BeamSearchOutput,
    GenerateBeamEncoderDecoderOutput,
    GenerateEncoderDecoderOutput,
    GreedySearchOutput,
    SampleOutput,
)
from .common import _fact, _is_concrete, _register_pytree, _reorder_cache

_NEG = -1.0e9  # transformers' "very large negative" beam score

# ---------------------------------------------------------------------------
# Logits processors (`encdec.logits_processors`), in the order transformers applies them. Their
# options are traced values (built inside the jitted loop); `cur_len` is traced too.


class _FlaxOps:
    """The array ops of `encdec.logits_processors` in jax.numpy, under jit (traced `cur_len`, `k`, ids)."""

    @staticmethod
    def mark(ids, vocab: int):
        # Ids clipped into [0, vocab]: those at `vocab` go to the spare column, dropped with it.
        rows = jnp.arange(ids.shape[0])[:, None]
        return jnp.zeros((ids.shape[0], vocab + 1), bool).at[rows, jnp.clip(ids, 0, vocab)].set(True)[:, :vocab]

    @staticmethod
    def sort(x):
        order = jnp.argsort(x, axis=-1)
        return jnp.take_along_axis(x, order, axis=-1), order

    asarray = staticmethod(jnp.asarray)
    arange = staticmethod(jnp.arange)
    where = staticmethod(jnp.where)
    take = staticmethod(lambda x, positions: x[:, positions])
    all = staticmethod(lambda x: jnp.all(x, axis=-1))
    # The k-th largest by a full sort: `lax.top_k` needs a static k.
    kth_largest = staticmethod(lambda x, k: jnp.sort(x, axis=-1)[:, x.shape[-1] - k][:, None])
    unsort = staticmethod(lambda x, order: jnp.zeros_like(x).at[jnp.arange(x.shape[0])[:, None], order].set(x))
    softmax = staticmethod(lambda x: jax.nn.softmax(x, axis=-1))
    cumsum = staticmethod(lambda x: jnp.cumsum(x, axis=-1))


def build_logits_processors(static: StaticPlan, opts: dict) -> list:
    """The processors of a compiled loop (`encdec.generation.loop_processors`), in transformers' order,
    their options the loop's traced inputs."""
    return loop_processors(static, opts, logits_processors.bind(_FlaxOps))


# ---------------------------------------------------------------------------
# Outputs


# transformers 4.x's Flax outputs of `generate` (what it returns without `return_dict_in_generate`).


@_register_pytree
class FlaxGreedySearchOutput(GreedySearchOutput):
    """`GreedySearchOutput` (`encdec.outputs`) under transformers' Flax name."""


@_register_pytree
class FlaxSampleOutput(SampleOutput):
    """`SampleOutput` (`encdec.outputs`) under transformers' Flax name."""


@_register_pytree
class FlaxBeamSearchOutput(BeamSearchOutput):
    """`BeamSearchOutput` (`encdec.outputs`) under transformers' Flax name."""


@_register_pytree
class FlaxGenerateEncoderDecoderOutput(GenerateEncoderDecoderOutput):
    """`GenerateEncoderDecoderOutput` (`encdec.outputs`) under transformers' Flax name."""


@_register_pytree
class FlaxGenerateBeamEncoderDecoderOutput(GenerateBeamEncoderDecoderOutput):
    """`GenerateBeamEncoderDecoderOutput` (`encdec.outputs`) under transformers' Flax name."""


# ---------------------------------------------------------------------------
# The model step


def _repeat_rows(tree, times: int):
    """`[B, ...]` -> `[B * times, ...]`, each row repeated in place (repeat_interleave); scalars kept."""
    if times == 1:
        return tree
    return jax.tree_util.tree_map(lambda x: jnp.repeat(x, times, axis=0) if jnp.ndim(x) else x, tree)


class _Step:
    """One decoder step: `[N, 1]` tokens at `cur_len - 1` -> `[N, V]` float32 logits; returns the new cache.

    RoBERTa counts positions over non-pad tokens; transformers decodes the
    prompt in one call, so the prompt tokens get their positions from the whole
    prompt (`prompt_positions`), and later tokens the default (`1 + cached`).
    The other decoders count every token, so their defaults agree already.
    """

    def __init__(self, model, params, prompt_positions) -> None:
        self.model = model
        self.params = params
        self.prompt_positions = prompt_positions

    def _positions(self, tokens, cur_len):
        if self.prompt_positions is None:
            return None
        from .roberta import create_position_ids_from_input_ids

        p = self.prompt_positions.shape[1]
        in_prompt = lax.dynamic_slice_in_dim(self.prompt_positions, jnp.minimum(cur_len - 1, p - 1), 1, axis=1)
        after = create_position_ids_from_input_ids(tokens, self.model.config.decoder.pad_token_id, cur_len - 1)
        return jnp.where(cur_len - 1 < p, in_prompt, after)

    def __call__(self, tokens, cur_len, cache):
        logits, cache = self.model._decode_step(self.params, tokens, cache, self._positions(tokens, cur_len))
        return logits[:, -1].astype(jnp.float32), cache


def _start(model, params, static: StaticPlan, input_ids, attention_mask, token_type_ids, prompt):
    """Encode once per batch item, make the cache (`max_length - 1` positions: the last token is
    never fed) with `static.expand` self-attention rows per item (beams/samples; the cross keys/values
    stay per item), and feed all but the last prompt token. -> (step, cache)."""
    encoder = model._encode(params, input_ids, attention_mask, token_type_ids, None, None)
    cache = model._init_cache(params, prompt.shape[0], static.max_length - 1, encoder.last_hidden_state,
                              attention_mask)
    prompt_positions = None
    if model.config.decoder.architecture == "roberta":
        from .roberta import create_position_ids_from_input_ids

        prompt_positions = create_position_ids_from_input_ids(prompt, model.config.decoder.pad_token_id)
    step = _Step(model, params, prompt_positions)
    if static.prompt_length > 1:
        positions = None if prompt_positions is None else prompt_positions[:, :-1]
        _, cache = model._decode_step(params, prompt[:, :-1], cache, positions)
    return step, cache


# ---------------------------------------------------------------------------
# Search loops


def greedy_search(step, processors, sequences, cache, static: StaticPlan, eos_token_ids, pad_token_id, key):
    """Greedy decoding or sampling over the `[N, max_length]` buffer, the prompt filled.

    Returns (sequences `[N, max_length]`, generated length, per-step scores `[L - P, N, V]` or None,
    the first step whose logits held a NaN or -1).
    """
    rows, length = sequences.shape

    def cond(s):
        return (s["cur_len"] < length) & jnp.any(s["unfinished"])

    def body(s):
        cur_len = s["cur_len"]
        tokens = lax.dynamic_slice_in_dim(s["sequences"], cur_len - 1, 1, axis=1)  # [N, 1]
        logits, cache = step(tokens, cur_len, s["cache"])
        nan_step = _first_nan(s["nan_step"], logits, cur_len - static.prompt_length)
        scores = apply_processors(processors, s["sequences"], cur_len, logits)
        key = s["key"]
        if static.do_sample:
            key, sub = jax.random.split(key)
            next_tokens = jax.random.categorical(sub, scores, axis=-1).astype(jnp.int32)
        else:
            next_tokens = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        # Finished rows are padded (without eos ids no row finishes early).
        unfinished = s["unfinished"]
        next_tokens = jnp.where(unfinished, next_tokens, pad_token_id)
        unfinished = unfinished & ~jnp.isin(next_tokens, eos_token_ids)
        new = dict(
            sequences=lax.dynamic_update_slice_in_dim(s["sequences"], next_tokens[:, None], cur_len, axis=1),
            cur_len=cur_len + 1,
            unfinished=unfinished,
            cache=cache,
            key=key,
            nan_step=nan_step,
        )
        if static.output_scores:
            new["scores"] = s["scores"].at[cur_len - static.prompt_length].set(scores)
        return new

    state = dict(
        sequences=sequences,
        cur_len=jnp.array(static.prompt_length, jnp.int32),
        unfinished=jnp.ones((rows,), bool),
        cache=cache,
        key=key,
        nan_step=jnp.array(-1, jnp.int32),
    )
    if static.output_scores:
        vocab = step.model.config.decoder.vocab_size
        state["scores"] = jnp.zeros((length - static.prompt_length, rows, vocab), jnp.float32)  # [steps, N, V]
    state = lax.while_loop(cond, body, state)
    return state["sequences"], state["cur_len"], state.get("scores"), state["nan_step"]


def _first_nan(nan_step, logits, step):
    """The first step whose logits held a NaN: `step` now if none did before and these do."""
    return jnp.where((nan_step < 0) & jnp.any(jnp.isnan(logits)), step, nan_step)


def _gather_beams(x, indices):
    """`[B, K, ...]` gathered along the beam axis by `[B, K']` indices -> `[B, K', ...]`."""
    return jax.vmap(lambda row, idx: row[idx])(x, indices)


def beam_search(step, processors, sequences, cache, static: StaticPlan, eos_token_ids, opts, key):
    """transformers 5's vectorized beam search, step for step, with static shapes (the algorithm:
    `encdec.generation`). `sequences` is the `[B * num_beams, max_length]` buffer with the prompt filled.
    Returns every batch item's `num_beams` finished hypotheses, best first:
    (sequences `[B, K, L]`, scores `[B, K]`, beam indices `[B, K, L - P]`, per-step scores or None).
    """
    b, k, p = static.batch, static.num_beams, static.prompt_length
    length = static.max_length
    keep = static.beams_to_keep
    vocab = step.model.config.decoder.vocab_size
    lp = opts["length_penalty_table"]  # [L + 1]
    early_stopping_true = opts["early_stopping_true"]
    top_num_beam_mask = jnp.arange(keep) < k  # [keep]
    running_sequences = jnp.full((b, k, length), opts["output_fill"], jnp.int32)
    running_sequences = running_sequences.at[:, :, :p].set(sequences[:, :p].reshape(b, k, p))
    running_beam_indices = jnp.full((b, k, length - p), -1, jnp.int32)

    def body(s):
        cur_len = s["cur_len"]
        flat_running = s["running_sequences"].reshape(b * k, length)
        logits, cache = step(lax.dynamic_slice_in_dim(flat_running, cur_len - 1, 1, axis=1), cur_len, s["cache"])
        nan_step = _first_nan(s["nan_step"], logits, cur_len - p)
        log_probs = apply_processors(processors, flat_running, cur_len, jax.nn.log_softmax(logits, axis=-1))
        step_scores = log_probs
        log_probs = log_probs.reshape(b, k, vocab) + s["running_beam_scores"][:, :, None]
        log_probs = log_probs.reshape(b, k * vocab)

        # a. the best `beams_to_keep` continuations over all beams
        key = s["key"]
        if static.do_sample:
            key, sub = jax.random.split(key)
            # Gumbel top-k: draws without replacement from softmax(log_probs), then best first.
            _, topk_indices = lax.top_k(log_probs + jax.random.gumbel(sub, log_probs.shape, jnp.float32), keep)
            topk_log_probs = jnp.take_along_axis(log_probs, topk_indices, axis=1)
            order = jnp.argsort(-topk_log_probs, axis=1, stable=True)
            topk_log_probs = jnp.take_along_axis(topk_log_probs, order, axis=1)
            topk_indices = jnp.take_along_axis(topk_indices, order, axis=1)
        else:
            topk_log_probs, topk_indices = lax.top_k(log_probs, keep)
        topk_current_beam_indices = topk_indices // vocab  # [B, keep]
        topk_ids = (topk_indices % vocab).astype(jnp.int32)
        topk_running_beam_indices = _gather_beams(s["running_beam_indices"], topk_current_beam_indices)
        topk_running_sequences = _gather_beams(s["running_sequences"], topk_current_beam_indices)
        topk_running_sequences = lax.dynamic_update_slice_in_dim(topk_running_sequences, topk_ids[:, :, None], cur_len, 2)
        batch_offset = jnp.arange(b)[:, None] * k
        topk_running_beam_indices = lax.dynamic_update_slice_in_dim(
            topk_running_beam_indices, (topk_current_beam_indices + batch_offset)[:, :, None].astype(jnp.int32),
            cur_len - p, 2,
        )

        # b. which continuations end here (eos, or the length limit)
        hits = (cur_len + 1 >= length) | jnp.isin(topk_ids, eos_token_ids)

        # c. the best unfinished ones run on
        topk_running_log_probs = topk_log_probs + hits.astype(jnp.float32) * _NEG
        next_topk = lax.top_k(topk_running_log_probs, k)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # d. finished ones among the top `num_beams` replace worse finished hypotheses
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / lp[cur_len + 1 - p]
        beams_in_batch_are_full = jnp.all(s["is_sent_finished"], axis=-1, keepdims=True) & early_stopping_true
        finished_scores = finished_scores + beams_in_batch_are_full.astype(jnp.float32) * _NEG
        finished_scores = finished_scores + (~s["heuristic_unsatisfied"]).astype(jnp.float32) * _NEG
        finished_scores = finished_scores + (~just_finished).astype(jnp.float32) * _NEG
        merged_sequences = jnp.concatenate([s["sequences"], topk_running_sequences], axis=1)
        merged_scores = jnp.concatenate([s["beam_scores"], finished_scores], axis=1)
        merged_beam_indices = jnp.concatenate([s["beam_indices"], topk_running_beam_indices], axis=1)
        merged_is_sent_finished = jnp.concatenate([s["is_sent_finished"], just_finished], axis=1)
        best = lax.top_k(merged_scores, k)[1]
        finished_sequences = _gather_beams(merged_sequences, best)
        beam_scores = _gather_beams(merged_scores, best)
        beam_indices = _gather_beams(merged_beam_indices, best)
        is_sent_finished = _gather_beams(merged_is_sent_finished, best)

        # e. can anything still change? (each running beam continues from the cache of the beam it extends)
        reorder = lax.dynamic_index_in_dim(running_beam_indices, cur_len - p, axis=2, keepdims=False).reshape(b * k)
        cache = _reorder_cache(cache, reorder)  # what `model.reorder_cache` runs
        cur_len = cur_len + 1
        best_hypothetical_length = jnp.where(opts["heuristic_at_max_length"], length - p, cur_len - p)
        best_running = running_beam_scores[:, :1] / lp[best_hypothetical_length]
        worst_finished = jnp.where(is_sent_finished, jnp.min(beam_scores, axis=1, keepdims=True), _NEG)
        heuristic_unsatisfied = s["heuristic_unsatisfied"] & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
        improvement_possible = jnp.any(heuristic_unsatisfied)
        exists_open_beam = ~(jnp.all(is_sent_finished) & early_stopping_true)
        valid_continuations = ~jnp.all(hits)
        new = dict(
            running_sequences=running_sequences,
            running_beam_scores=running_beam_scores,
            running_beam_indices=running_beam_indices,
            sequences=finished_sequences,
            beam_scores=beam_scores,
            beam_indices=beam_indices,
            is_sent_finished=is_sent_finished,
            heuristic_unsatisfied=heuristic_unsatisfied,
            cur_len=cur_len,
            done=~(improvement_possible & exists_open_beam & valid_continuations),
            cache=cache,
            key=key,
            nan_step=nan_step,
        )
        if static.output_scores:
            new["scores"] = s["scores"].at[cur_len - 1 - p].set(step_scores)
        return new

    state = dict(
        running_sequences=running_sequences,
        # Only the first beam's tokens count at the first step.
        running_beam_scores=jnp.zeros((b, k), jnp.float32).at[:, 1:].set(_NEG),
        running_beam_indices=running_beam_indices,
        sequences=running_sequences,
        beam_scores=jnp.full((b, k), _NEG, jnp.float32),
        beam_indices=running_beam_indices,
        is_sent_finished=jnp.zeros((b, k), bool),
        heuristic_unsatisfied=jnp.ones((b, 1), bool),
        cur_len=jnp.array(p, jnp.int32),
        done=jnp.array(False),
        cache=cache,
        key=key,
        nan_step=jnp.array(-1, jnp.int32),
    )
    if static.output_scores:
        state["scores"] = jnp.zeros((length - p, b * k, vocab), jnp.float32)
    state = lax.while_loop(lambda s: ~s["done"], body, state)
    return (state["sequences"], state["beam_scores"], state["beam_indices"], state["cur_len"], state.get("scores"),
            state["nan_step"])


# ---------------------------------------------------------------------------
# generate: options on the host, the loop under one jit


def _to_device(array):
    # A strided numpy view would be copied by a compiled program; a contiguous one is only transferred.
    return jax.device_put(np.ascontiguousarray(array))


def _search(model, static: StaticPlan, params, input_ids, attention_mask, token_type_ids, prompt, opts, key):
    """Everything `generate` runs under jit: encoder, cache, processors, the search loop."""
    prompt = _repeat_rows(prompt, static.expand)
    step, cache = _start(model, params, static, input_ids, attention_mask, token_type_ids, prompt)
    processors = build_logits_processors(static, opts)
    rows = prompt.shape[0]
    # Past each row's end the buffer holds the fill id: traced, `generate` returns it whole.
    sequences = jnp.full((rows, static.max_length), opts["pad_token_id"], jnp.int32)
    sequences = sequences.at[:, : static.prompt_length].set(prompt)
    if static.num_beams == 1:
        sequences, cur_len, scores, nan_step = greedy_search(
            step, processors, sequences, cache, static, opts["eos_token_ids"], opts["pad_token_id"], key
        )
        return dict(sequences=sequences, cur_len=cur_len, scores=scores, nan_step=nan_step)
    sequences, beam_scores, beam_indices, cur_len, scores, nan_step = beam_search(
        step, processors, sequences, cache, static, opts["eos_token_ids"], opts, key
    )
    return dict(sequences=sequences, beam_scores=beam_scores, beam_indices=beam_indices, cur_len=cur_len,
                scores=scores, nan_step=nan_step)


# Options of generate this port reads itself; the others are generation options (`encdec.generation`).
_PORT_OPTIONS = ("prng_key", "seed", "params", "token_type_ids", "input_sharding")


def generate(model, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
             decoder_input_ids=None, **options):
    """Generate token ids for `input_ids` `[B, S]`: greedy, sampling or beam search.

    Options are `model.generation_config` (or `generation_config`) overridden by
    the generation options among `options`, planned by `encdec.generation.plan_generation`;
    the others are `prng_key` (a `jax.random` key for sampling; `seed=` makes one),
    `params`, `token_type_ids` and `input_sharding` (a `jax.sharding.Sharding` the `[B, ...]`
    inputs are placed with before the loop, e.g. rows split over a mesh's "data" axis; the
    jitted loop then runs data-parallel). `decoder_input_ids` `[B, P]` is a decoder prompt
    (the start token is put in front when no row begins with it). Returns, as
    transformers 4.x's Flax did, a `FlaxGreedySearchOutput`, `FlaxSampleOutput` or
    `FlaxBeamSearchOutput` whose `sequences` are `[B * num_return_sequences, length]`
    ids, or `FlaxGenerateEncoderDecoderOutput` / `FlaxGenerateBeamEncoderDecoderOutput`
    with `return_dict_in_generate=True`.

    Called eagerly, the inputs are checked on the host, `sequences` are cut to the
    generated length and NaN scores raise NonFiniteError. Inside a user's `jax.jit`
    (traced inputs), `sequences` keep all `max_length` columns (padded past the end,
    as transformers 4.x's Flax); host callbacks check the ids' values and the scores when
    the function runs (an InputError or NonFiniteError there surfaces as JAX's runtime
    error carrying its text); the decoder prompt must then be concrete, since its values
    decide whether the start token goes in front.
    """
    token_type_ids = options.get("token_type_ids")
    if decoder_input_ids is not None and not _is_concrete(decoder_input_ids):
        raise InputError("decoder_input_ids is traced; expected a concrete array (its first tokens decide whether "
                         "the start token goes in front)")
    traced = any(v is not None and not _is_concrete(v) for v in (input_ids, attention_mask, token_type_ids))
    batch = inputs.check_encoder_inputs(model.config, _fact(input_ids), _fact(attention_mask), _fact(token_type_ids))
    setup = plan_generation(model.config, generation_config, model.generation_config, options, decoder_input_ids,
                            batch, port_options=_PORT_OPTIONS)
    plan, port = setup.plan, setup.port_options
    prng_key = port.get("prng_key")
    if plan.do_sample and prng_key is None:
        if port.get("seed") is None:
            raise InputError("do_sample=True needs prng_key (a jax.random key) or seed; expected generate(..., prng_key=key)")
        prng_key = jax.random.key(int(port["seed"]))
    key = prng_key if prng_key is not None else jax.random.key(0)
    if traced:
        # Under a user's jit the values exist only when the function runs: checked then, on the host.
        jax.debug.callback(functools.partial(_check_values, model.config), input_ids, attention_mask, token_type_ids)
        cast = jnp.asarray
    else:
        # Inputs are prepared on the host, in numpy: nothing but the search itself is compiled.
        cast = np.asarray
    input_ids = cast(input_ids, np.int32)
    # transformers 5 infers no encoder mask for an encoder-decoder: without one every token is attended.
    attention_mask = cast(np.ones(input_ids.shape, np.int32) if attention_mask is None else attention_mask, np.int32)
    token_type_ids = None if token_type_ids is None else cast(token_type_ids, np.int32)
    static = static_plan(plan, batch, input_ids.shape[1], token_type_ids is not None)

    fn = model._generate_fns.get(static)
    if fn is None:
        def run(params, input_ids, attention_mask, token_type_ids, prompt, opts, key):
            return _search(model, static, params, input_ids, attention_mask, token_type_ids, prompt, opts, key)

        fn = model._generate_fns[static] = model._jit(run)
    params = model.params if port.get("params") is None else port["params"]
    prompt = setup.prompt.astype(np.int32)
    if port.get("input_sharding") is not None and not traced:
        # A jitted function follows its arguments' shardings: rows placed apart are searched apart.
        input_ids, attention_mask, token_type_ids, prompt = jax.device_put(
            (input_ids, attention_mask, token_type_ids, prompt), port["input_sharding"])
    out = fn(params, input_ids, attention_mask, token_type_ids, prompt,
             loop_options(setup, model.config.decoder.vocab_size), key)
    if traced:
        jax.debug.callback(check_nan_step, out["nan_step"])
        return _outputs(setup, out, traced=True)
    out = jax.device_get(out)
    check_nan_step(out["nan_step"])
    return _outputs(setup, out, traced=False)


def _check_values(config, input_ids, attention_mask, token_type_ids) -> None:
    """The host checks of `generate`'s encoder inputs, on the values a jitted call received."""
    inputs.check_encoder_inputs(config, *(None if v is None else np.asarray(v)
                                          for v in (input_ids, attention_mask, token_type_ids)))


def _outputs(setup, out: dict, traced: bool):
    """The loop's `[N, max_length]` buffers as ids in an output object. Eagerly (`out` on the host)
    cut to the generated length, in numpy: a device slice of a new shape would compile. Traced every
    column is kept (filled past each row's end: greedy rows with the pad id, beam rows with the beam fill)."""
    plan = setup.plan
    put = (lambda x: x) if traced else _to_device
    steps = plan.max_length - plan.prompt_length if traced else int(out["cur_len"]) - plan.prompt_length
    scores = None if out["scores"] is None else tuple(put(s) for s in out["scores"][:steps])
    if not plan.is_beam_search:
        sequences = put(out["sequences"][:, : plan.prompt_length + steps])
        output = FlaxSampleOutput if plan.do_sample else FlaxGreedySearchOutput
        plain = lambda ids, _: output(sequences=ids)  # noqa: E731
        return generate_outputs(plan, setup.config, _OUTPUTS, sequences, scores, plain=plain)
    sequences, sequences_scores, beam_indices = map(put, returned_beams(
        plan.num_return_sequences, plan.prompt_length, out["sequences"], out["beam_scores"], out["beam_indices"],
        crop=not traced))
    plain = lambda ids, best: FlaxBeamSearchOutput(sequences=ids, scores=best)  # noqa: E731
    return generate_outputs(plan, setup.config, _OUTPUTS, sequences, scores, sequences_scores, beam_indices, plain)


_OUTPUTS = (FlaxGenerateEncoderDecoderOutput, FlaxGenerateBeamEncoderDecoderOutput)
