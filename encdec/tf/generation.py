"""Generation for `TFEncoderDecoderModel`: logits processors, greedy/sampling and beam search.

The semantics are transformers 5's (`GenerationMixin._sample`, `_beam_search` and the
processors of `generation/logits_process.py`), step for step as the PyTorch port
runs them. What a call of `generate` means (special tokens, lengths, the decoder
prompt, which processors run) is decided once for every port by the core
(`encdec.generation.plan_generation`); this module maps that plan to TensorFlow.
Everything inside the search is TensorFlow ops over fixed shapes, so the same code
runs eagerly (`tf.while_loop` runs as a Python loop) and compiled with
`tf.function(jit_compile=True)`:

* a processor is called as `processor(sequences, cur_len, scores)`: `sequences` is the
  whole `[N, max_length]` token buffer, `cur_len` a scalar tensor saying how much of
  it is filled;
* the loops run on the port contract: `encode` once, `init_cache` (cross-attention
  keys/values computed once, for the batch items, not per beam), `decode_step` per
  token and `reorder_cache` after each beam step. The self-attention cache holds
  `max_length - 1` positions per layer, `[N, heads, max_length - 1, head_dim]`;
* the loop stops as transformers' does (all sequences finished, or the beam search
  cannot improve). Eagerly, the host crops the fixed-size buffers to the generated
  length and raises NonFiniteError when the logits of a step were NaN; traced in a
  user's `tf.function`, `generate` returns the whole buffers and asserts in the graph.

`generate` keeps one compiled function per plan (`GenerationPlan`: what fixes shapes
and ops); its inputs leave batch and length open. A second call with the same
options traces nothing, and with the same shapes compiles nothing either.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from .. import logits_processors
from ..config import GenerationConfig
from ..errors import InputError
from ..generation import (
    GenerationPlan,
    GenerationSetup,
    apply_processors,
    beam_candidates,
    beam_options,
    build_processors,
    check_nan_step,
    generate_outputs,
    nan_message,
    plan_generation,
)
from ..inputs import Traced, check_encoder_inputs, token_type_table
from ..outputs import GenerateBeamEncoderDecoderOutput, GenerateEncoderDecoderOutput
from .common import _host_facts
from .roberta import create_position_ids_from_input_ids

# ---------------------------------------------------------------------------
# Logits processors (`encdec.logits_processors`), in the order transformers applies them.


class _TFOps:
    """The array ops of `encdec.logits_processors` in TensorFlow: static shapes, the same eagerly and under XLA."""

    @staticmethod
    def mark(ids, vocab):
        # A scatter of counts: ids equal to `vocab` go to the spare column, dropped with it.
        n = tf.shape(ids)[0]
        row = tf.broadcast_to(tf.range(n)[:, None], tf.shape(ids))
        counts = tf.scatter_nd(tf.stack([row, ids], axis=-1), tf.ones_like(ids), tf.stack([n, vocab + 1]))
        return counts[:, :vocab] > 0

    @staticmethod
    def sort(x):
        order = tf.argsort(x, axis=-1, direction="ASCENDING", stable=True)
        return tf.gather(x, order, batch_dims=1), order

    asarray = staticmethod(tf.convert_to_tensor)
    arange = staticmethod(tf.range)
    where = staticmethod(tf.where)
    take = staticmethod(lambda x, positions: tf.gather(x, positions, axis=1))
    all = staticmethod(lambda x: tf.reduce_all(x, axis=-1))
    kth_largest = staticmethod(lambda x, k: tf.math.top_k(x, k).values[..., -1:])
    unsort = staticmethod(lambda x, order: tf.gather(x, tf.argsort(order, axis=-1), batch_dims=1))
    softmax = staticmethod(lambda x: tf.nn.softmax(x, axis=-1))
    cumsum = staticmethod(lambda x: tf.cumsum(x, axis=-1))


def build_logits_processors(specs: tuple) -> list:
    """The TensorFlow processors of a plan's `ProcessorSpec`s (`GenerationPlan.processors`), in their order."""
    return build_processors(specs, logits_processors.bind(_TFOps))


# ---------------------------------------------------------------------------
# Outputs


class TFGenerateEncoderDecoderOutput(GenerateEncoderDecoderOutput):
    """`GenerateEncoderDecoderOutput` (`encdec.outputs`) under transformers' TF name."""


class TFGenerateBeamEncoderDecoderOutput(GenerateBeamEncoderDecoderOutput):
    """`GenerateBeamEncoderDecoderOutput` (`encdec.outputs`) under transformers' TF name."""


# ---------------------------------------------------------------------------
# Search loops


def _set_column(buffer: tf.Tensor, index: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """`buffer[..., index] = values` for a `[..., T]` buffer and `[...]` values, as a select (fixed shapes)."""
    hit = tf.equal(tf.range(tf.shape(buffer)[-1]), index)
    return tf.where(hit, values[..., None], buffer)


def _isin(ids: tf.Tensor, candidates) -> tf.Tensor:
    """Elementwise `ids in candidates` for a static list of ids."""
    return tf.reduce_any(tf.equal(ids[..., None], tf.constant(list(candidates), ids.dtype)), axis=-1)


class _Step:
    """One decoder step on the port contract: `[N, T]` tokens -> (`[N, V]` float32 logits of the last one, cache).

    RoBERTa counts positions over non-pad tokens; transformers decodes the prompt in one
    call, so the prompt's tokens get their positions from the whole prompt
    (`prompt_positions` `[N, P]`), and later tokens the default (`1 + cached` non-pads).
    The other decoders count every token, so their defaults agree already.
    """

    def __init__(self, model, prompt_positions=None, pad_token_id: int = 0) -> None:
        self.model = model
        self.prompt_positions = prompt_positions
        self.pad_token_id = pad_token_id

    def _positions(self, tokens, index):
        if self.prompt_positions is None:
            return None
        length = tokens.shape[1]  # static: the prompt's head, or one token
        prompt_length = self.prompt_positions.shape[1]
        # In-prompt tokens read the prompt's positions (clamped: the gather must stay in bounds).
        start = tf.minimum(index, prompt_length - length)
        in_prompt = tf.gather(self.prompt_positions, start + tf.range(length), axis=1)
        after = create_position_ids_from_input_ids(tokens, self.pad_token_id, index)
        return tf.where(index < prompt_length, in_prompt, after)

    def __call__(self, tokens, cache):
        logits, cache = self.model.decode_step(tokens, cache, self._positions(tokens, cache["index"]))
        return tf.cast(logits[:, -1], tf.float32), cache


def _first_nan(nan_step, logits, step):
    """The first step whose logits held a NaN (-1 while none has): a weight that is not finite."""
    return tf.where((nan_step < 0) & tf.reduce_any(tf.math.is_nan(logits)), step, nan_step)


def _mix32(x):
    """A 32-bit integer hash (Wellons' lowbias32): wrapping uint32 arithmetic, the same in every TF backend."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _uniform(shape, seed, step):
    """Uniform floats in (0, 1), a pure function of (seed, step, position).

    TensorFlow's own stateless generators give different streams eagerly and under XLA;
    this counter-based hash gives the same bits in both, so seeded sampling picks the
    same tokens either way.
    """
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, 0xFFFFFFFF), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(seed, 32), tf.uint32)
    key = _mix32(low ^ _mix32(high ^ _mix32(tf.cast(step, tf.uint32) + tf.constant(0x9E3779B9, tf.uint32))))
    counter = tf.cast(tf.range(tf.reduce_prod(shape)), tf.uint32)
    bits = _mix32(_mix32(counter ^ key) + key)
    # the top 24 bits, centred in their interval: exact in float32, never 0 or 1
    return tf.reshape((tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (2.0**-24), shape)


def _gumbel(shape, seed, cur_len):
    """Gumbel noise for step `cur_len`: adding it to log-probabilities and taking the arg max draws a token."""
    return -tf.math.log(-tf.math.log(_uniform(shape, seed, cur_len)))


def greedy_search(step, processors, sequences, max_length: int, eos_token_ids, pad_token_id, cache,
                  do_sample: bool = False, seed=None, output_scores: bool = False, vocab_size: int = 0,
                  prompt_length: int = 1):
    """Greedy decoding or sampling over a `[N, max_length]` buffer whose first `prompt_length`
    positions hold the decoder prompt (all but its last token already in `cache`).

    Returns (sequences `[N, max_length]`, filled length, scores `[max_length - prompt_length, N, V]`
    or None, the first step whose logits held a NaN or -1).
    """
    rows = tf.shape(sequences)[0]
    unfinished = tf.ones([rows], tf.bool)
    steps = max_length - prompt_length
    all_scores = tf.zeros(tf.stack([steps, rows, vocab_size])) if output_scores else tf.zeros([0])

    def cond(cur_len, sequences, unfinished, cache, all_scores, nan_step):
        return (cur_len < max_length) & tf.reduce_any(unfinished)

    def body(cur_len, sequences, unfinished, cache, all_scores, nan_step):
        logits, cache = step(tf.gather(sequences, [cur_len - 1], axis=1), cache)
        nan_step = _first_nan(nan_step, logits, cur_len - prompt_length)
        next_scores = apply_processors(processors, sequences, cur_len, logits)
        if output_scores:
            all_scores = tf.tensor_scatter_nd_update(all_scores, [[cur_len - prompt_length]], next_scores[None])
        if do_sample:
            next_scores = next_scores + _gumbel(tf.shape(next_scores), seed, cur_len)  # Gumbel-max: a categorical draw
        next_tokens = tf.argmax(next_scores, axis=-1, output_type=tf.int32)
        if eos_token_ids:
            next_tokens = tf.where(unfinished, next_tokens, pad_token_id)  # finished rows are padded
            unfinished = unfinished & ~_isin(next_tokens, eos_token_ids)
        return cur_len + 1, _set_column(sequences, cur_len, next_tokens), unfinished, cache, all_scores, nan_step

    start = (tf.constant(prompt_length), sequences, unfinished, cache, all_scores, tf.constant(-1))
    cur_len, sequences, _, _, all_scores, nan_step = tf.while_loop(cond, body, start, maximum_iterations=steps)
    return sequences, cur_len, (all_scores if output_scores else None), nan_step


def _gather_beams(tensor, beam_indices):
    """`[B, K, ...]` gathered along the beam axis by `[B, K']` indices -> `[B, K', ...]`."""
    return tf.gather(tensor, beam_indices, axis=1, batch_dims=1)


def beam_search(step, reorder, processors, sequences, batch_size, num_beams: int, max_length: int, eos_token_ids,
                fill, cache, penalties, early_stopping_true, heuristic_at_max_length,
                do_sample: bool = False, seed=None, output_scores: bool = False, vocab_size: int = 0,
                prompt_length: int = 1):
    """transformers 5's vectorized beam search, step for step (the algorithm: `encdec.generation`).

    `sequences` is the `[B * num_beams, max_length]` buffer whose first `prompt_length`
    positions hold the decoder prompt (all but its last token already in `cache`);
    `step(tokens, cache)` decodes a token per row and `reorder(cache, rows)` keeps the
    cache rows of the beams that run on. Unfilled positions hold `fill`. `penalties`,
    `early_stopping_true` and `heuristic_at_max_length` are the plan's `beam_options`,
    as tensors: one compiled function serves every length penalty and early-stopping mode.

    Returns a dict: `sequences` `[B, num_beams, max_length]` (best first), `beam_scores`
    `[B, num_beams]`, `beam_indices` `[B, num_beams, max_length - prompt_length]`, `steps` run, `scores`,
    `nan_step` (the first step whose logits held a NaN, or -1).
    """
    prompt_len = prompt_length
    beams_to_keep = beam_candidates(num_beams, eos_token_ids)
    top_num_beam_mask = tf.constant([True] * num_beams + [False] * (beams_to_keep - num_beams))
    rows = batch_size * num_beams

    first = tf.reshape(sequences[:, :prompt_len], tf.stack([batch_size, num_beams, prompt_len]))
    unfilled = tf.fill(tf.stack([batch_size, num_beams, max_length - prompt_len]), tf.constant(fill, sequences.dtype))
    running_sequences = tf.concat([first, unfilled], axis=2)
    running_beam_indices = tf.fill(tf.stack([batch_size, num_beams, max_length - prompt_len]), -1)
    batch_offset = tf.range(batch_size)[:, None] * num_beams  # [B, 1]
    state = dict(
        cur_len=tf.constant(prompt_len),
        going=tf.constant(True),
        running_sequences=running_sequences,
        # only the first beam's tokens count at the first step
        running_beam_scores=tf.tile(tf.constant([[0.0] + [-1e9] * (num_beams - 1)]), tf.stack([batch_size, 1])),
        running_beam_indices=running_beam_indices,
        sequences=running_sequences,
        beam_scores=tf.fill(tf.stack([batch_size, num_beams]), -1e9),
        beam_indices=running_beam_indices,
        is_sent_finished=tf.zeros(tf.stack([batch_size, num_beams]), tf.bool),
        unsatisfied=tf.ones(tf.stack([batch_size, 1]), tf.bool),  # is_early_stop_heuristic_unsatisfied
        cache=cache,
        all_scores=tf.zeros(tf.stack([max_length - prompt_len, rows, vocab_size])) if output_scores else tf.zeros([0]),
        nan_step=tf.constant(-1),
    )

    def body(s):
        cur_len = s["cur_len"]
        flat_running = tf.reshape(s["running_sequences"], tf.stack([rows, max_length]))
        logits, cache = step(tf.gather(flat_running, [cur_len - 1], axis=1), s["cache"])
        nan_step = _first_nan(s["nan_step"], logits, cur_len - prompt_len)
        vocab = tf.shape(logits)[-1]
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        log_probs = apply_processors(processors, flat_running, cur_len, log_probs)
        all_scores = s["all_scores"]
        if output_scores:
            all_scores = tf.tensor_scatter_nd_update(all_scores, [[cur_len - prompt_len]], log_probs[None])
        log_probs = tf.reshape(log_probs, tf.stack([batch_size, num_beams, vocab]))
        log_probs = log_probs + s["running_beam_scores"][:, :, None]
        log_probs = tf.reshape(log_probs, tf.stack([batch_size, num_beams * vocab]))

        # a. the best `beams_to_keep` continuations over all beams
        if do_sample:
            # Gumbel-top-k: `beams_to_keep` draws without replacement from softmax(log_probs).
            keys = log_probs + _gumbel(tf.shape(log_probs), seed, cur_len)
            topk_indices = tf.math.top_k(keys, beams_to_keep).indices
            topk_log_probs = tf.gather(log_probs, topk_indices, batch_dims=1)
            order = tf.argsort(topk_log_probs, axis=-1, direction="DESCENDING", stable=True)
            topk_log_probs = tf.gather(topk_log_probs, order, batch_dims=1)
            topk_indices = tf.gather(topk_indices, order, batch_dims=1)
        else:
            topk_log_probs, topk_indices = tf.math.top_k(log_probs, beams_to_keep)
        topk_current_beam_indices = topk_indices // vocab  # [B, K]
        topk_ids = topk_indices % vocab
        topk_running_beam_indices = _set_column(
            _gather_beams(s["running_beam_indices"], topk_current_beam_indices),
            cur_len - prompt_len,
            topk_current_beam_indices + batch_offset,
        )
        topk_running_sequences = _set_column(
            _gather_beams(s["running_sequences"], topk_current_beam_indices), cur_len, topk_ids
        )

        # b. which continuations end here (eos, or the length limit)
        hits = tf.fill(tf.shape(topk_ids), cur_len + 1 >= max_length)
        if eos_token_ids:
            hits = hits | _isin(topk_ids, eos_token_ids)

        # c. the best unfinished ones run on
        topk_running_log_probs = topk_log_probs + tf.cast(hits, tf.float32) * -1.0e9
        next_topk = tf.math.top_k(topk_running_log_probs, num_beams).indices
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # d. finished ones among the top `num_beams` replace worse finished hypotheses
        is_sent_finished, unsatisfied = s["is_sent_finished"], s["unsatisfied"]
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / tf.gather(penalties, cur_len + 1 - prompt_len)
        beams_in_batch_are_full = tf.reduce_all(is_sent_finished, axis=-1, keepdims=True) & early_stopping_true
        finished_scores += tf.cast(beams_in_batch_are_full, tf.float32) * -1.0e9
        finished_scores += tf.cast(~unsatisfied, tf.float32) * -1.0e9
        finished_scores += tf.cast(~just_finished, tf.float32) * -1.0e9
        merged_scores = tf.concat([s["beam_scores"], finished_scores], axis=1)
        keep = tf.math.top_k(merged_scores, num_beams).indices
        finished_sequences = _gather_beams(tf.concat([s["sequences"], topk_running_sequences], axis=1), keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(tf.concat([s["beam_indices"], topk_running_beam_indices], axis=1), keep)
        is_sent_finished = _gather_beams(tf.concat([is_sent_finished, just_finished], axis=1), keep)

        # e. can anything still change?
        cur_len = cur_len + 1
        best_hypothetical_length = tf.where(heuristic_at_max_length, max_length - prompt_len, cur_len - prompt_len)
        best_running = running_beam_scores[:, :1] / tf.gather(penalties, best_hypothetical_length)
        worst_finished = tf.where(
            is_sent_finished, tf.reduce_min(beam_scores, axis=1, keepdims=True), tf.constant(-1.0e9)
        )
        unsatisfied = unsatisfied & tf.reduce_any(best_running > worst_finished, axis=-1, keepdims=True)
        exists_open_beam = ~(tf.reduce_all(is_sent_finished) & early_stopping_true)
        going = tf.reduce_any(unsatisfied) & exists_open_beam & ~tf.reduce_all(hits)
        # Each running beam continues from the cache of the beam it extends.
        reorder_rows = tf.reshape(tf.gather(running_beam_indices, cur_len - 1 - prompt_len, axis=2), [-1])
        cache = reorder(cache, reorder_rows)
        return dict(
            cur_len=cur_len,
            going=going,
            running_sequences=running_sequences,
            running_beam_scores=running_beam_scores,
            running_beam_indices=running_beam_indices,
            sequences=finished_sequences,
            beam_scores=beam_scores,
            beam_indices=beam_indices,
            is_sent_finished=is_sent_finished,
            unsatisfied=unsatisfied,
            cache=cache,
            all_scores=all_scores,
            nan_step=nan_step,
        )

    (state,) = tf.while_loop(
        lambda s: s["going"], lambda s: (body(s),), (state,), maximum_iterations=max_length - prompt_len
    )
    out = dict(
        sequences=state["sequences"],
        beam_scores=state["beam_scores"],
        beam_indices=state["beam_indices"],
        steps=state["cur_len"] - prompt_len,
        nan_step=state["nan_step"],
    )
    if output_scores:
        out["scores"] = state["all_scores"]
    return out


# ---------------------------------------------------------------------------
# generate


# The options of `generate` that are no generation option, as the TF port takes them.
_PORT_OPTIONS = ("token_type_ids", "position_ids", "seed", "jit_compile")


def _beam_options(setup: GenerationSetup) -> list:
    """The beam search options that are inputs of the compiled function (they change no shape), as tensors."""
    return [tf.constant(option) for option in beam_options(setup)]


def _generate_tensors(model, plan: GenerationPlan, input_ids, attention_mask, prompt, token_type_ids, position_ids,
                      seed, penalties, early_stopping_true, heuristic_at_max_length):
    """The whole generation as TensorFlow ops (what `generate` runs eagerly or compiles).

    input_ids / attention_mask `[B, S]` int32, prompt `[B, P]` int32 (the decoder prompt,
    the start token first) -> a dict of fixed-size outputs (see `generate`).
    """
    encoder_out = model.encode(input_ids, attention_mask, token_type_ids, position_ids)
    batch_size = tf.shape(input_ids)[0]
    rows = batch_size * plan.rows_per_item
    # `rows_per_item` rows per batch item (beams, or returned samples); the cross keys/values stay per item.
    cache = model.init_cache(rows, plan.cache_length, encoder_out, attention_mask)
    dec = model.config.decoder
    prompt = tf.repeat(prompt, plan.rows_per_item, axis=0)  # [rows, P]
    p = plan.prompt_length
    sequences = tf.concat([prompt, tf.fill(tf.stack([rows, plan.max_length - p]), plan.fill_token_id)], axis=1)
    prompt_positions = None
    if dec.architecture == "roberta":
        prompt_positions = create_position_ids_from_input_ids(prompt, dec.pad_token_id)  # [rows, P]
    step = _Step(model, prompt_positions, dec.pad_token_id)
    if p > 1:
        # All but the last prompt token go into the cache at once; the loop feeds the last one.
        _, cache = step(prompt[:, :-1], cache)
    processors = build_logits_processors(plan.processors)
    eos_ids = list(plan.eos_token_ids)

    if plan.num_beams == 1:
        sequences, length, scores, nan_step = greedy_search(
            step, processors, sequences, plan.max_length, eos_ids, plan.pad_token_id, cache,
            plan.do_sample, seed, plan.output_scores, dec.vocab_size, p,
        )
        scores = {} if scores is None else {"scores": scores}
        return dict(sequences=sequences, length=length, steps=length - p, nan_step=nan_step, **scores)
    return beam_search(
        step, model.reorder_cache, processors, sequences, batch_size, plan.num_beams, plan.max_length,
        eos_ids, plan.beam_fill_token_id, cache, penalties, early_stopping_true, heuristic_at_max_length,
        plan.do_sample, seed, plan.output_scores, dec.vocab_size, p,
    )


def _generation_function(model, plan: GenerationPlan, with_token_types: bool, with_positions: bool,
                         jit_compile: bool):
    """The generation function of `plan`, made once and kept on the model.

    Called as `fn(input_ids, attention_mask, prompt, [token_type_ids], [position_ids], seed, penalties,
    early_stopping_true, heuristic_at_max_length)`. Compiled, its input signature leaves batch
    and length open: it is traced once, and XLA compiles once per new input shape.
    """
    # How many hypotheses are returned, and in which container, is chosen on the host afterwards.
    plan = dataclasses.replace(plan, num_return_sequences=plan.rows_per_item, return_dict_in_generate=False)
    key = (plan, with_token_types, with_positions, jit_compile)
    functions = model._generation_functions
    if key not in functions:
        def run(input_ids, attention_mask, prompt, *rest):
            rest = list(rest)
            token_type_ids = rest.pop(0) if with_token_types else None
            position_ids = rest.pop(0) if with_positions else None
            return _generate_tensors(
                model, plan, input_ids, attention_mask, prompt, token_type_ids, position_ids, *rest
            )

        if jit_compile:
            ids = tf.TensorSpec([None, None], tf.int32)
            prompt = tf.TensorSpec([None, plan.prompt_length], tf.int32)
            signature = [ids, ids, prompt] + [ids] * (int(with_token_types) + int(with_positions)) + [
                tf.TensorSpec([], tf.int64),  # seed
                tf.TensorSpec([plan.max_length + 1], tf.float32),  # length ** length_penalty
                tf.TensorSpec([], tf.bool),  # early_stopping is True
                tf.TensorSpec([], tf.bool),  # early_stopping == "never" and length_penalty > 0
            ]
            functions[key] = tf.function(run, input_signature=signature, jit_compile=True, autograph=False)
        else:
            functions[key] = run
    return functions[key]


def generate(model, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
             decoder_input_ids=None, **kwargs):
    """Generate token ids for `input_ids` `[B, S]`: greedy, sampling or beam search.

    Options are `model.generation_config` (or `generation_config`) overridden by
    kwargs. `seed=` makes sampling reproducible (the same tokens eagerly and compiled);
    `jit_compile=False` runs eagerly instead of through the XLA-compiled function.
    `decoder_input_ids` `[B, P]` is a decoder prompt (the start token is put in front
    when no row begins with it). Returns `[B * num_return_sequences, length]` int32
    ids, or an output object with `return_dict_in_generate=True`. Eagerly, every input
    and option is checked on the host before any work (XLA drops in-graph assertions,
    and TensorFlow on GPU returns zeros for an out-of-range lookup instead of failing).
    Traced, the decoder prompt must be concrete; ids and NaN scores are asserted in the
    graph (InvalidArgumentError with the InputError's text when it runs; XLA drops them).
    """
    port = {k: kwargs.pop(k) for k in list(kwargs) if k in _PORT_OPTIONS}
    names = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
    given = dict(zip(names, (input_ids, attention_mask, port.get("token_type_ids"), port.get("position_ids"))))
    facts = {name: _host_facts(t) for name, t in given.items()}
    check_encoder_inputs(model.config, *facts.values())
    traced = any(isinstance(f, Traced) for f in facts.values())
    if traced and isinstance(_host_facts(decoder_input_ids), Traced):
        raise InputError("decoder_input_ids is symbolic; expected concrete ids (their first tokens decide whether "
                         "the start token goes in front)")
    # Traced for any batch size, the batch is unknown: the prompt is then made in the graph (below), unless
    # one is given (its rows are the batch).
    batch = facts["input_ids"].shape[0]
    planned = batch or (1 if decoder_input_ids is None else np.shape(decoder_input_ids)[0])
    setup = plan_generation(model.config, generation_config, model.generation_config, kwargs, decoder_input_ids,
                            planned, port_options=())
    plan, gc = setup.plan, setup.config
    seed = port.get("seed")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1)) if plan.do_sample else 0

    tensors = {name: tf.cast(given[name], tf.int32) if isinstance(f, Traced) else tf.constant(f.astype(np.int32))
               for name, f in facts.items() if f is not None}
    # As transformers 5 for an encoder-decoder: no mask means every position is attended (pads too).
    tensors.setdefault("attention_mask", tf.ones_like(tensors["input_ids"]))
    if traced:
        _assert_ids_in_range(model.config.encoder, tensors)
    prompt = tf.constant(setup.prompt.astype(np.int32))
    if decoder_input_ids is None and batch is None:
        prompt = tf.fill(tf.stack([tf.shape(tensors["input_ids"])[0], 1]), plan.start_token_id)  # [B, 1]
    fn = _generation_function(model, plan, "token_type_ids" in tensors, "position_ids" in tensors,
                              bool(port.get("jit_compile", True)))
    out = fn(tensors["input_ids"], tensors["attention_mask"], prompt, *[tensors[n] for n in names[2:] if n in tensors],
             tf.constant(int(seed), tf.int64), *_beam_options(setup))
    if traced:
        tf.debugging.assert_less(out["nan_step"], 0, message=nan_message("nan_step"))
    else:
        check_nan_step(out["nan_step"])
    return _outputs(plan, gc, out, crop=not traced)


def _assert_ids_in_range(config, tensors: dict) -> None:
    """Graph-side checks of the encoder's ids (the host's when they are concrete), with the InputError text."""
    tables = dict(input_ids=config.vocab_size, position_ids=config.max_position_embeddings)
    for name in ("input_ids", "token_type_ids", "position_ids"):
        if name in tensors:
            size = tables.get(name) or token_type_table(config)
            message = f"{name} holds ids outside [0, {size}); expected ids in [0, {size}) (the table has {size} rows)"
            wide = tf.cast(tensors[name], tf.int64)
            tf.debugging.assert_non_negative(wide, message=message)
            tf.debugging.assert_less(wide, tf.constant(size, tf.int64), message=message)


def _outputs(plan: GenerationPlan, gc: GenerationConfig, out: dict, crop: bool):
    """`generate`'s result: eagerly (`crop`) cut to the generated length; traced, `[N, max_length]` ids
    (filled past each row's end: greedy rows with the pad id, beam rows with the beam fill), every step's scores."""
    steps = int(out["steps"]) if crop else plan.max_length - plan.prompt_length
    scores = tuple(tf.unstack(out["scores"][:steps])) if "scores" in out else None
    if plan.num_beams == 1:
        return generate_outputs(plan, gc, _OUTPUTS, out["sequences"][:, : plan.prompt_length + steps], scores)
    returned = _returned_hypotheses(out, plan.num_return_sequences, plan.max_length, plan.prompt_length)
    length = int(returned["length"]) if crop else plan.max_length
    return generate_outputs(plan, gc, _OUTPUTS, returned["sequences"][:, :length], scores,
                            returned["sequences_scores"], returned["beam_indices"][:, : length - plan.prompt_length])


_OUTPUTS = (TFGenerateEncoderDecoderOutput, TFGenerateBeamEncoderDecoderOutput)


def _returned_hypotheses(out: dict, num_return_sequences: int, max_length: int, prompt_length: int = 1) -> dict:
    """The best `num_return_sequences` hypotheses of each batch item, flattened, best first.

    `length` is how many columns `generate` returns: the decoder prompt plus the longest
    returned hypothesis (each counts the steps its beam indices cover).
    """
    n = num_return_sequences
    rows = tf.shape(out["sequences"])[0] * n
    beam_indices = tf.reshape(out["beam_indices"][:, :n], tf.stack([rows, max_length - prompt_length]))
    return {
        "sequences": tf.reshape(out["sequences"][:, :n], tf.stack([rows, max_length])),
        "length": prompt_length + tf.reduce_max(tf.reduce_sum(tf.cast(beam_indices >= 0, tf.int32), axis=1)),
        "sequences_scores": tf.reshape(out["beam_scores"][:, :n], [-1]),
        "beam_indices": beam_indices,
    }
