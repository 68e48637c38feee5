"""Generation for `EncoderDecoderModel`: logits processors, greedy/sampling and beam search.

The semantics are transformers 5's (`GenerationMixin._sample`, `_beam_search` and
the processors of `generation/logits_process.py`): for the same checkpoint and
settings the same token ids. What to run (special tokens, lengths, the decoder
prompt, which processors, the length-penalty table) is the core's plan
(`encdec.generation.plan_generation`); this module runs it on the port contract
(`encode`, `init_cache`, `decode_step`, `reorder_cache`). The loops keep every
state in fixed-shape tensors sized by `max_length` (token buffers, beam scores,
finished flags), as the TF and Flax ports do under XLA with static shapes:

* a processor is called as `processor(sequences, cur_len, scores)` where
  `sequences` is the whole `[N, max_length]` buffer and `cur_len` how much of it
  is filled;
* the encoder runs once; the cross-attention keys/values are computed once, for
  the batch items (not per beam);
* the self-attention cache is preallocated for `max_length - 1` positions and
  written in place.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import logits_processors, outputs
from ..config import GenerationConfig
from ..errors import NonFiniteError
from ..generation import (
    apply_processors,
    beam_candidates,
    build_processors,
    generate_outputs,
    nan_message,
    plan_generation,
    returned_beams,
)
from .common import _host, _ModelOutput
from .fast_linear import packed_weights

# ---------------------------------------------------------------------------
# Logits processors (`encdec.logits_processors`), in the order transformers applies them. Their
# options come from the core's plan, which has checked them (`encdec.generation.logits_processors`).


class _TorchOps:
    """The array ops of `encdec.logits_processors` in PyTorch, on `device`."""

    def __init__(self, device) -> None:
        self.device = device

    def asarray(self, value):
        return torch.as_tensor(value, device=self.device)

    def arange(self, n: int):
        return torch.arange(n, device=self.device)

    @staticmethod
    def mark(ids, vocab: int):
        # scatter_ indexes with int64; ids past the vocabulary go to the spare column, dropped with it.
        hit = torch.zeros((ids.shape[0], vocab + 1), dtype=torch.bool, device=ids.device)
        return hit.scatter_(1, ids.long().clamp(max=vocab), True)[:, :vocab]

    where = staticmethod(torch.where)
    take = staticmethod(lambda x, positions: x[:, positions])
    all = staticmethod(lambda x: x.all(dim=-1))
    kth_largest = staticmethod(lambda x, k: torch.topk(x, k)[0][..., -1:])
    sort = staticmethod(lambda x: torch.sort(x, descending=False))
    unsort = staticmethod(lambda x, order: x.scatter(1, order, x))
    softmax = staticmethod(lambda x: x.softmax(dim=-1))
    cumsum = staticmethod(lambda x: x.cumsum(dim=-1))


def build_logits_processors(specs: tuple, device=None) -> list:
    """The PyTorch processors of a plan's `ProcessorSpec`s (`GenerationPlan.processors`), in their order."""
    return build_processors(specs, logits_processors.bind(_TorchOps(device)))


# ---------------------------------------------------------------------------
# Outputs


class GenerateEncoderDecoderOutput(_ModelOutput):
    __doc__ = outputs.GenerateEncoderDecoderOutput.__doc__
    _fields = outputs.field_names(outputs.GenerateEncoderDecoderOutput)


class GenerateBeamEncoderDecoderOutput(_ModelOutput):
    __doc__ = outputs.GenerateBeamEncoderDecoderOutput.__doc__
    _fields = outputs.field_names(outputs.GenerateBeamEncoderDecoderOutput)


# ---------------------------------------------------------------------------
# Search loops


class _Step:
    """One decoder step on the port contract: the tokens of `[N, max_length]` sequences up to
    `cur_len` that the cache does not hold yet -> `[N, V]` float32 logits of the next token.

    The first step feeds the whole decoder prompt in one call, as transformers does
    (RoBERTa counts the prompt's positions over the whole prompt); later steps one
    token. Logits holding a NaN (a weight that is not finite) end generation with
    NonFiniteError rather than tokens chosen from them.
    """

    def __init__(self, model, cache: dict, prompt_length: int) -> None:
        self.model = model
        self.cache = cache
        self.prompt_length = prompt_length

    def __call__(self, sequences, cur_len: int):
        logits, self.cache = self.model.decode_step(sequences[:, self.cache["index"] : cur_len], self.cache)
        logits = logits[:, -1].float()
        if bool(torch.isnan(logits).any()):
            raise NonFiniteError(nan_message(cur_len - self.prompt_length))
        return logits

    def reorder(self, rows) -> None:
        """Each running beam continues from the cache of the row `rows` `[N]` it extends."""
        self.cache = self.model.reorder_cache(self.cache, rows)


def greedy_search(step, processors, sequences, max_length: int, eos_token_ids, pad_token_id,
                  do_sample: bool = False, generator=None, output_scores: bool = False, prompt_length: int = 1):
    """Greedy decoding or multinomial sampling over a `[N, max_length]` buffer whose first
    `prompt_length` positions hold the decoder prompt.

    Returns (sequences `[N, cur_len]`, scores per step or None).
    """
    rows = sequences.shape[0]
    device = sequences.device
    eos = torch.tensor(eos_token_ids, device=device) if eos_token_ids else None
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    scores = [] if output_scores else None
    cur_len = prompt_length
    while True:
        logits = step(sequences, cur_len)
        next_scores = apply_processors(processors, sequences, cur_len, logits)
        if output_scores:
            scores.append(next_scores)
        if do_sample:
            probs = F.softmax(next_scores, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = torch.argmax(next_scores, dim=-1)
        if eos is not None:
            # Finished rows are padded.
            next_tokens = torch.where(unfinished, next_tokens, pad_token_id)
        sequences[:, cur_len] = next_tokens
        cur_len += 1
        if eos is not None:
            unfinished &= ~(next_tokens[:, None] == eos).any(dim=-1)
        if cur_len >= max_length or not bool(unfinished.any()):
            break
    return sequences[:, :cur_len], (tuple(scores) if output_scores else None)


def _stable_topk(scores, k: int):
    """`torch.topk` along the last axis with equal scores in index order, lower first.

    `torch.topk` leaves the order of ties unspecified; `tf.math.top_k` and
    `jax.lax.top_k` put the lower index first, and so does this, so the three ports
    keep the same beams when two continuations score exactly the same.
    """
    if k < scores.shape[-1]:
        # One more than asked: when the (k+1)-th best is below the k-th, the k best are a set no
        # tie can change, and only their order among equal scores is left to fix.
        values, indices = torch.topk(scores, k + 1)
        if bool((values[..., k] == values[..., k - 1]).any()):
            # An equal score is left out, perhaps for a higher index (rare: a tie at the boundary);
            # the full stable sort decides it.
            values, indices = torch.sort(scores, dim=-1, descending=True, stable=True)
            return values[..., :k], indices[..., :k]
        values, indices = values[..., :k], indices[..., :k]
    else:
        values, indices = torch.topk(scores, k)
    indices, order = indices.sort(dim=-1)
    values, order_by_value = values.gather(-1, order).sort(dim=-1, descending=True, stable=True)
    return values, indices.gather(-1, order_by_value)


def _gather_beams(tensor, beam_indices):
    """`[B, K, ...]` gathered along the beam axis by `[B, K']` indices -> `[B, K', ...]`."""
    while beam_indices.dim() < tensor.dim():
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, beam_indices, dim=1)


def beam_search(step, processors, sequences, batch_size: int, num_beams: int, max_length: int, eos_token_ids,
                fill: int, penalties, early_stopping_true: bool, heuristic_at_max_length: bool,
                num_return_sequences: int = 1, do_sample: bool = False, generator=None, output_scores: bool = False,
                prompt_length: int = 1):
    """transformers 5's vectorized beam search, step for step (the algorithm: `encdec.generation`).

    `sequences` is the `[B * num_beams, max_length]` buffer whose first `prompt_length`
    positions hold the decoder prompt; `step` a `_Step`, whose cache follows the beams.
    `fill` is the plan's beam buffer fill; `penalties`, `early_stopping_true` and
    `heuristic_at_max_length` the plan's `beam_options`.
    Returns (sequences, sequences_scores, per-step scores or None, beam_indices).
    """
    device = sequences.device
    prompt_len = cur_len = prompt_length
    eos = torch.tensor(eos_token_ids, device=device) if eos_token_ids else None
    beams_to_keep = beam_candidates(num_beams, eos_token_ids)
    top_num_beam_mask = torch.cat(
        (torch.ones(num_beams, dtype=torch.bool), torch.zeros(beams_to_keep - num_beams, dtype=torch.bool))
    ).to(device)
    penalties = torch.as_tensor(penalties, dtype=torch.float32, device=device)  # [max_length + 1]

    running_sequences = torch.full((batch_size, num_beams, max_length), fill, dtype=torch.long, device=device)
    running_sequences[:, :, :cur_len] = sequences[:, :cur_len].view(batch_size, num_beams, cur_len)
    finished_sequences = running_sequences.clone()
    running_beam_scores = torch.zeros((batch_size, num_beams), dtype=torch.float, device=device)
    running_beam_scores[:, 1:] = -1e9  # only the first beam's tokens count at the first step
    beam_scores = torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device)
    is_sent_finished = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)
    is_early_stop_heuristic_unsatisfied = torch.ones((batch_size, 1), dtype=torch.bool, device=device)
    running_beam_indices = torch.full(
        (batch_size, num_beams, max_length - cur_len), -1, dtype=torch.int32, device=device
    )
    beam_indices = running_beam_indices.clone()
    batch_offset = torch.arange(batch_size, device=device).view(-1, 1) * num_beams  # [B, 1]
    all_scores = [] if output_scores else None

    while True:
        flat_running = running_sequences.view(batch_size * num_beams, max_length)
        logits = step(flat_running, cur_len)  # [B * beams, V]
        vocab = logits.shape[-1]
        log_probs = F.log_softmax(logits, dim=-1)
        log_probs = apply_processors(processors, flat_running, cur_len, log_probs)
        if output_scores:
            all_scores.append(log_probs.clone())
        # In place: the processed scores are this step's own tensor (output_scores kept a copy).
        log_probs = log_probs.view(batch_size, num_beams, vocab).add_(running_beam_scores[:, :, None])
        log_probs = log_probs.reshape(batch_size, num_beams * vocab)

        # a. the best `beams_to_keep` continuations over all beams
        if do_sample:
            topk_indices = torch.multinomial(F.softmax(log_probs, dim=-1), num_samples=beams_to_keep,
                                             generator=generator)
            topk_log_probs = torch.gather(log_probs, 1, topk_indices)
            topk_log_probs, order = topk_log_probs.sort(dim=-1, descending=True, stable=True)
            topk_indices = topk_indices.gather(-1, order)
        else:
            topk_log_probs, topk_indices = _stable_topk(log_probs, beams_to_keep)
        topk_current_beam_indices = topk_indices // vocab  # [B, K]
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_current_beam_indices)
        topk_running_sequences = _gather_beams(running_sequences, topk_current_beam_indices)
        topk_running_sequences[:, :, cur_len] = topk_indices % vocab
        topk_running_beam_indices[:, :, cur_len - prompt_len] = (topk_current_beam_indices + batch_offset).int()

        # b. which continuations end here (eos, or the length limit)
        hits = torch.full(topk_log_probs.shape, cur_len + 1 >= max_length, dtype=torch.bool, device=device)
        if eos is not None:
            hits = hits | (topk_running_sequences[:, :, cur_len, None] == eos).any(dim=-1)

        # c. the best unfinished ones run on
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        next_topk = _stable_topk(topk_running_log_probs, num_beams)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # d. finished ones among the top `num_beams` replace worse finished hypotheses
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / penalties[cur_len + 1 - prompt_len]
        beams_in_batch_are_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & early_stopping_true
        finished_scores += beams_in_batch_are_full.to(torch.float32) * -1.0e9
        finished_scores += (~is_early_stop_heuristic_unsatisfied).to(torch.float32) * -1.0e9
        finished_scores += (~just_finished) * -1.0e9
        merged_sequences = torch.cat((finished_sequences, topk_running_sequences), dim=1)
        merged_scores = torch.cat((beam_scores, finished_scores), dim=1)
        merged_beam_indices = torch.cat((beam_indices, topk_running_beam_indices), dim=1)
        merged_is_sent_finished = torch.cat((is_sent_finished, just_finished), dim=1)
        keep = _stable_topk(merged_scores, num_beams)[1]
        finished_sequences = _gather_beams(merged_sequences, keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(merged_beam_indices, keep)
        is_sent_finished = _gather_beams(merged_is_sent_finished, keep)

        # e. can anything still change?
        reorder = running_beam_indices[..., cur_len - prompt_len].reshape(-1).long()
        cur_len += 1
        if heuristic_at_max_length:
            best_hypothetical_length = max_length - prompt_len
        else:
            best_hypothetical_length = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / penalties[best_hypothetical_length]
        worst_finished = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        is_early_stop_heuristic_unsatisfied = is_early_stop_heuristic_unsatisfied & torch.any(
            best_running > worst_finished, dim=-1, keepdim=True
        )
        improvement_possible = bool(is_early_stop_heuristic_unsatisfied.any())
        exists_open_beam = not (bool(is_sent_finished.all()) and early_stopping_true)
        valid_continuations = not bool(hits.all())
        if not (improvement_possible and exists_open_beam and valid_continuations):
            break
        step.reorder(reorder)

    returned = returned_beams(num_return_sequences, prompt_len,
                              *(t.cpu().numpy() for t in (finished_sequences, beam_scores, beam_indices)))
    sequences, sequences_scores, beam_indices = (torch.from_numpy(a).to(device) for a in returned)
    return sequences, sequences_scores, tuple(all_scores) if output_scores else None, beam_indices


# ---------------------------------------------------------------------------
# generate


# generate's options that are this port's, not generation options.
_PORT_OPTIONS = ("token_type_ids", "position_ids", "generator", "seed")


def generate(model, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
             decoder_input_ids=None, **kwargs):
    """Generate token ids for `input_ids` `[B, S]`: greedy, sampling or beam search.

    Options are `model.generation_config` (or `generation_config`) overridden by
    kwargs; `generator=` (a `torch.Generator`) or `seed=` make sampling reproducible.
    `decoder_input_ids` `[B, P]` is a decoder prompt (the start token is put in
    front when no row begins with it). Returns `[B * num_return_sequences, length]`
    ids, or an output object with `return_dict_in_generate=True`. Options, special
    tokens and inputs are checked before any work (ConfigError, InputError);
    NonFiniteError when the scores become NaN.
    """
    ids = _host(input_ids, "input_ids")
    setup = plan_generation(model.config, generation_config, model.generation_config, kwargs,
                            _host(decoder_input_ids, "decoder_input_ids"), ids.shape[0] if ids.ndim else 0,
                            port_options=_PORT_OPTIONS)
    plan, gc, port = setup.plan, setup.config, setup.port_options
    generator, seed = port.get("generator"), port.get("seed")
    if generator is None and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(int(seed))

    with torch.inference_mode():
        encoder_out = model.encode(input_ids, attention_mask, port.get("token_type_ids"), port.get("position_ids"))
        rows = input_ids.shape[0] * plan.rows_per_item
        cache = model.init_cache(rows, plan.cache_length, encoder_out, attention_mask)
        device = encoder_out.last_hidden_state.device
        step = _Step(model, cache, plan.prompt_length)
        processors = build_logits_processors(plan.processors, device)
        sequences = torch.full((rows, plan.max_length), plan.fill_token_id, dtype=torch.long, device=device)
        prompt = torch.from_numpy(setup.prompt).to(device)
        sequences[:, : plan.prompt_length] = prompt.repeat_interleave(plan.rows_per_item, dim=0)
        eos_ids = list(plan.eos_token_ids)

        with packed_weights(model.decoder):
            if not plan.is_beam_search:
                sequences, scores = greedy_search(
                    step, processors, sequences, plan.max_length, eos_ids, plan.pad_token_id, plan.do_sample,
                    generator, plan.output_scores, plan.prompt_length,
                )
                sequences_scores = beam_indices = None
            else:
                sequences, sequences_scores, scores, beam_indices = beam_search(
                    step, processors, sequences, input_ids.shape[0], plan.num_beams, plan.max_length, eos_ids,
                    plan.beam_fill_token_id, setup.length_penalty_table, setup.early_stopping_true,
                    setup.heuristic_at_max_length, plan.num_return_sequences, plan.do_sample, generator,
                    plan.output_scores, plan.prompt_length,
                )

    # Tensors made under inference mode cannot be changed in place outside it (say, to turn the ids into
    # labels); the results are copied out as ordinary tensors.
    sequences, sequences_scores, beam_indices = (None if t is None else t.clone()
                                                 for t in (sequences, sequences_scores, beam_indices))
    scores = tuple(s.clone() for s in scores) if scores is not None else None
    return generate_outputs(plan, gc, (GenerateEncoderDecoderOutput, GenerateBeamEncoderDecoderOutput), sequences,
                            scores, sequences_scores, beam_indices)
