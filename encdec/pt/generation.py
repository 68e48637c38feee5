"""Generation for `EncoderDecoderModel`: logits processors, greedy/sampling and beam search.

The semantics are transformers 5's (`GenerationMixin._sample`, `_beam_search` and
the processors of `generation/logits_process.py`): for the same checkpoint and
settings the same token ids. The loops keep every state in fixed-shape tensors
sized by `max_length` (token buffers, beam scores, finished flags), so the TF and
Flax ports run the same steps under XLA with static shapes:

* a processor is called as `processor(sequences, cur_len, scores)` where
  `sequences` is the whole `[N, max_length]` buffer and `cur_len` how much of it
  is filled;
* the encoder runs once; the cross-attention keys/values are computed once, for
  the batch items (not per beam);
* the self-attention cache is preallocated for `max_length - 1` positions and
  written in place; only the last position goes through the LM head.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..config import GenerationConfig
from ..errors import ConfigError, InputError
from .common import _KVCache, _ModelOutput, _packed_linear_weights, _padding_bias, check_input_ids

# ---------------------------------------------------------------------------
# Logits processors, in the order transformers applies them.


class RepetitionPenaltyLogitsProcessor:
    """Scores of tokens already in the sequence: divided by `penalty` if positive, multiplied if negative."""

    def __init__(self, penalty: float) -> None:
        if not penalty > 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)

    def __call__(self, sequences, cur_len: int, scores):
        vocab = scores.shape[-1]
        # Unfilled positions point at a spare column past the vocabulary, dropped at the end.
        filled = torch.arange(sequences.shape[1], device=sequences.device) < cur_len  # [L]
        ids = torch.where(filled, sequences.clamp(max=vocab), vocab)  # [N, L]
        padded = F.pad(scores, (0, 1))  # [N, V + 1]
        score = torch.gather(padded, 1, ids)
        score = torch.where(score < 0, score * self.penalty, score / self.penalty)
        return padded.scatter(1, ids, score)[:, :vocab]


class NoRepeatNGramLogitsProcessor:
    """Bans every token that would repeat an n-gram already in the sequence."""

    def __init__(self, ngram_size: int) -> None:
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ConfigError(f"no_repeat_ngram_size must be a positive int, got {ngram_size!r}")
        self.ngram_size = ngram_size

    def __call__(self, sequences, cur_len: int, scores):
        n = self.ngram_size
        if cur_len < n:
            return scores
        vocab = scores.shape[-1]
        windows = sequences.unfold(1, n, 1)  # [N, L - n + 1, n], window s = tokens s .. s + n - 1
        # Windows wholly inside the filled part whose first n - 1 tokens equal the current suffix
        # ban their last token; the suffix's own window is not complete yet, so it bans nothing.
        prefix = sequences[:, cur_len + 1 - n : cur_len]  # [N, n - 1]
        complete = torch.arange(windows.shape[1], device=sequences.device) <= cur_len - n  # [L - n + 1]
        matches = (windows[..., :-1] == prefix[:, None]).all(dim=-1) & complete
        banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
        return scores.masked_fill(banned[:, :vocab], -float("inf"))


class NoBadWordsLogitsProcessor:
    """Bans single tokens, and the last token of a banned sequence once its prefix has been generated."""

    def __init__(self, bad_words_ids, eos_token_ids, vocab_size: int, device=None) -> None:
        if not isinstance(bad_words_ids, (list, tuple)) or not bad_words_ids or not all(
            isinstance(seq, (list, tuple)) and seq and all(isinstance(t, int) and 0 <= t < vocab_size for t in seq)
            for seq in bad_words_ids
        ):
            raise ConfigError(
                f"bad_words_ids is {bad_words_ids!r}; expected a non-empty list of non-empty lists of token ids "
                f"in [0, {vocab_size})"
            )
        # As transformers: a banned sequence that is just an eos token is ignored.
        sequences = [tuple(seq) for seq in bad_words_ids if not (len(seq) == 1 and seq[0] in eos_token_ids)]
        self.single = torch.zeros(vocab_size, device=device)
        groups: dict[int, list[tuple[int, ...]]] = {}
        for seq in dict.fromkeys(sequences):
            if len(seq) == 1:
                self.single[seq[0]] = -float("inf")
            else:
                groups.setdefault(len(seq) - 1, []).append(seq)
        # (prefixes [G, p], last tokens [G]) per prefix length p
        self.groups = [
            (torch.tensor([s[:-1] for s in group], device=device), torch.tensor([s[-1] for s in group], device=device))
            for group in groups.values()
        ]

    def __call__(self, sequences, cur_len: int, scores):
        bias = torch.zeros_like(scores) + self.single
        for prefixes, last in self.groups:
            p = prefixes.shape[1]
            if p > cur_len:
                continue
            tail = sequences[:, cur_len - p : cur_len]  # [N, p]
            matching = (tail[:, None] == prefixes).all(dim=-1)  # [N, G]
            bias.index_add_(1, last, torch.where(matching, -float("inf"), 0.0).to(bias.dtype))
        return scores + bias


class MinLengthLogitsProcessor:
    """No eos before the sequence (decoder start included) is `min_length` long."""

    def __init__(self, min_length: int, eos_token_ids) -> None:
        self.min_length = min_length
        self.eos_token_ids = list(eos_token_ids)

    def __call__(self, sequences, cur_len: int, scores):
        if cur_len >= self.min_length:
            return scores
        scores = scores.clone()
        scores[:, self.eos_token_ids] = -float("inf")
        return scores


class ForcedBOSTokenLogitsProcessor:
    """The first generated token is `bos_token_id`."""

    def __init__(self, bos_token_id: int) -> None:
        self.bos_token_id = bos_token_id

    def __call__(self, sequences, cur_len: int, scores):
        if cur_len != 1:
            return scores
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.bos_token_id] = 0
        return forced


class ForcedEOSTokenLogitsProcessor:
    """The last token (at `max_length - 1`) is an eos token."""

    def __init__(self, max_length: int, eos_token_ids) -> None:
        self.max_length = max_length
        self.eos_token_ids = list(eos_token_ids) if isinstance(eos_token_ids, (list, tuple)) else [eos_token_ids]

    def __call__(self, sequences, cur_len: int, scores):
        if cur_len != self.max_length - 1:
            return scores
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.eos_token_ids] = 0
        return forced


class TemperatureLogitsWarper:
    def __init__(self, temperature: float) -> None:
        self.temperature = float(temperature)

    def __call__(self, sequences, cur_len: int, scores):
        return scores / self.temperature


class TopKLogitsWarper:
    """Keeps the `top_k` best scores (at least `min_tokens_to_keep`)."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1) -> None:
        if not isinstance(top_k, int) or top_k <= 0:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, sequences, cur_len: int, scores):
        k = min(self.top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]  # [N, 1]
        return scores.masked_fill(scores < kth, -float("inf"))


class TopPLogitsWarper:
    """Keeps the smallest set of best tokens whose probability reaches `top_p` (at least `min_tokens_to_keep`)."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1) -> None:
        top_p = float(top_p)
        if not 0.0 <= top_p <= 1.0:
            raise ConfigError(f"top_p must be in [0, 1], got {top_p}")
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, sequences, cur_len: int, scores):
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)  # ascending order: the low-probability tail
        remove[..., -self.min_tokens_to_keep :] = False
        remove = remove.scatter(1, sorted_indices, remove)
        return scores.masked_fill(remove, -float("inf"))


def build_logits_processors(config: GenerationConfig, eos_token_ids, max_length: int, min_length: int,
                            vocab_size: int, device=None) -> list:
    """The processors `config` asks for, in transformers' order (sampling warpers last)."""
    processors = []
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.no_repeat_ngram_size:
        processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
    if config.bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos_token_ids, vocab_size, device))
    if min_length > 0 and eos_token_ids:
        processors.append(MinLengthLogitsProcessor(min_length, eos_token_ids))
    if config.forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(max_length, config.forced_eos_token_id))
    if config.do_sample:
        # Beam sampling keeps one more token than there are eos tokens, so some beam can go on.
        keep = (len(eos_token_ids) + 1 if eos_token_ids else 2) if config.num_beams > 1 else 1
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            processors.append(TopKLogitsWarper(config.top_k, keep))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p, keep))
    return processors


def _apply(processors, sequences, cur_len, scores):
    for processor in processors:
        scores = processor(sequences, cur_len, scores)
    return scores


# ---------------------------------------------------------------------------
# Outputs


class GenerateEncoderDecoderOutput(_ModelOutput):
    """Greedy / sampling output (`return_dict_in_generate=True`); `scores` are the processed scores per step."""

    _fields = ("sequences", "scores", "past_key_values")


class GenerateBeamEncoderDecoderOutput(_ModelOutput):
    """Beam search output; `scores` are the processed log-probabilities per step."""

    _fields = ("sequences", "sequences_scores", "scores", "beam_indices", "past_key_values")


# ---------------------------------------------------------------------------
# Search loops


class _Step:
    """One decoder step: the tokens of `[N, max_length]` sequences up to `cur_len` that the cache
    does not hold yet -> `[N, V]` float32 logits of the next token, cache updated.

    The first step feeds the whole decoder prompt in one call, as transformers does
    (RoBERTa counts the prompt's positions over the whole prompt); later steps one token.
    """

    def __init__(self, decoder, cache, encoder_hidden_states, encoder_bias) -> None:
        self.decoder = decoder
        self.cache = cache
        self.encoder_hidden_states = encoder_hidden_states
        self.encoder_bias = encoder_bias

    def __call__(self, sequences, cur_len: int):
        out = self.decoder(
            sequences[:, self.cache.length : cur_len],
            encoder_hidden_states=self.encoder_hidden_states,
            encoder_attention_mask=self.encoder_bias,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float()


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
        next_scores = _apply(processors, sequences, cur_len, logits)
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
                pad_token_id, length_penalty: float = 1.0, early_stopping=False, num_return_sequences: int = 1,
                do_sample: bool = False, generator=None, output_scores: bool = False, cache: Optional[_KVCache] = None,
                prompt_length: int = 1):
    """transformers 5's vectorized beam search, step for step.

    `sequences` is the `[B * num_beams, max_length]` buffer whose first `prompt_length`
    positions hold the decoder prompt.
    Running beams and finished hypotheses are each `num_beams` fixed-length rows per
    batch item; each step keeps the best `beams_to_keep` continuations over all
    beams, the best `num_beams` unfinished ones run on, and finished ones replace
    worse finished hypotheses (scores normalised by length ** length_penalty).
    Returns (sequences, sequences_scores, per-step scores or None, beam_indices).
    """
    device = sequences.device
    prompt_len = cur_len = prompt_length
    eos = torch.tensor(eos_token_ids, device=device) if eos_token_ids else None
    n_eos = len(eos_token_ids) if eos_token_ids else 0
    beams_to_keep = max(2, 1 + n_eos) * num_beams
    top_num_beam_mask = torch.cat(
        (torch.ones(num_beams, dtype=torch.bool), torch.zeros(beams_to_keep - num_beams, dtype=torch.bool))
    ).to(device)

    # transformers fills with `pad_token_id or eos_token_id[0]`: a pad id of 0 counts as unset there.
    fill = (pad_token_id or eos_token_ids[0]) if eos_token_ids else -1
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
        log_probs = _apply(processors, flat_running, cur_len, log_probs)
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
        finished_scores = topk_log_probs / ((cur_len + 1 - prompt_len) ** length_penalty)
        beams_in_batch_are_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & (early_stopping is True)
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
        if early_stopping == "never" and length_penalty > 0.0:
            best_hypothetical_length = max_length - prompt_len
        else:
            best_hypothetical_length = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / (best_hypothetical_length**length_penalty)
        worst_finished = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        is_early_stop_heuristic_unsatisfied = is_early_stop_heuristic_unsatisfied & torch.any(
            best_running > worst_finished, dim=-1, keepdim=True
        )
        improvement_possible = bool(is_early_stop_heuristic_unsatisfied.any())
        exists_open_beam = not (bool(is_sent_finished.all()) and early_stopping is True)
        valid_continuations = not bool(hits.all())
        if not (improvement_possible and exists_open_beam and valid_continuations):
            break
        if cache is not None:
            cache.reorder_cache(reorder)  # each running beam continues from the cache of the beam it extends

    # Best hypotheses first; crop to the longest one returned.
    sequences = finished_sequences[:, :num_return_sequences].reshape(batch_size * num_return_sequences, max_length)
    sequences_scores = beam_scores[:, :num_return_sequences].reshape(-1)
    beam_indices = beam_indices[:, :num_return_sequences].reshape(batch_size * num_return_sequences, -1)
    generated = int((beam_indices + 1).bool().sum(dim=1).max())
    return (sequences[:, : prompt_len + generated], sequences_scores,
            tuple(all_scores) if output_scores else None, beam_indices[:, :generated])


# ---------------------------------------------------------------------------
# generate


_MODEL_KWARGS = ("token_type_ids", "position_ids", "generator", "seed")


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def _decoder_prompt(model, decoder_input_ids, start: int, batch: int, device) -> torch.Tensor:
    """`[B, P]` decoder prompt: the start token alone, or `decoder_input_ids` with the start
    token put in front when no row begins with it (as transformers does)."""
    if decoder_input_ids is None:
        return torch.full((batch, 1), start, dtype=torch.long, device=device)
    if not isinstance(decoder_input_ids, torch.Tensor) or decoder_input_ids.dim() != 2:
        raise InputError(
            f"decoder_input_ids is {type(decoder_input_ids).__name__} of shape "
            f"{tuple(getattr(decoder_input_ids, 'shape', ()))}; expected a [{batch}, prompt length] tensor of ids"
        )
    check_input_ids(decoder_input_ids, model.config.decoder.vocab_size, name="decoder_input_ids")
    if decoder_input_ids.shape[0] != batch:
        raise InputError(
            f"decoder_input_ids has batch size {decoder_input_ids.shape[0]}; expected {batch} like input_ids"
        )
    prompt = decoder_input_ids.to(device=device, dtype=torch.long)
    if bool((prompt[:, 0] != start).all()):
        prompt = torch.cat([torch.full((batch, 1), start, dtype=torch.long, device=device), prompt], dim=1)
    return prompt


def generate(model, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
             decoder_input_ids=None, **kwargs):
    """Generate token ids for `input_ids` `[B, S]`: greedy, sampling or beam search.

    Options are `model.generation_config` (or `generation_config`) overridden by
    kwargs; `generator=` (a `torch.Generator`) or `seed=` make sampling reproducible.
    `decoder_input_ids` `[B, P]` is a decoder prompt (the start token is put in
    front when no row begins with it). Returns `[B * num_return_sequences, length]`
    ids, or an output object with `return_dict_in_generate=True`.
    """
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _MODEL_KWARGS}
    base = generation_config if generation_config is not None else model.generation_config
    if not isinstance(base, GenerationConfig):
        raise ConfigError(f"generation_config is a {type(base).__name__}; expected an encdec GenerationConfig")
    explicit_max_length = "max_length" in kwargs or base.max_length != GenerationConfig.defaults["max_length"]
    gc = base.update(**kwargs)

    cfg = model.config
    start = _first_set(gc.decoder_start_token_id, cfg.decoder_start_token_id, gc.bos_token_id, cfg.bos_token_id)
    if start is None:
        raise ConfigError(
            "no decoder_start_token_id (nor bos_token_id) in the generation config or the model config; "
            "expected the id the decoder starts from"
        )
    eos_ids = gc.eos_token_ids
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos_ids[0] if eos_ids else None)

    prompt = _decoder_prompt(model, decoder_input_ids, start, input_ids.shape[0], input_ids.device)
    prompt_length = prompt.shape[1]
    max_length, min_length = gc.lengths(prompt_length, explicit_max_length)
    limit = model._decoder_position_limit()
    if max_length - 1 > limit:
        raise InputError(
            f"max_length {max_length} needs {max_length - 1} decoder positions; the decoder's position table "
            f"covers {limit}, expected max_length <= {limit + 1}"
        )
    num_beams = gc.num_beams
    expand = max(num_beams, gc.num_return_sequences)
    if num_beams > 1 and gc.num_return_sequences > num_beams:
        raise ConfigError(
            f"num_return_sequences ({gc.num_return_sequences}) must be <= num_beams ({num_beams}) in beam search"
        )
    model._check_encoder_inputs(input_ids, attention_mask, model_kwargs.get("token_type_ids"),
                                model_kwargs.get("position_ids"))
    generator = model_kwargs.pop("generator", None)
    seed = model_kwargs.pop("seed", None)
    if generator is None and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(int(seed))

    decoder_cfg = cfg.decoder
    with torch.inference_mode():
        encoder_out = model._encode(input_ids, attention_mask, **model_kwargs)
        encoder_states = model._project(encoder_out.last_hidden_state)  # [B, S, H_dec], once per batch item
        dtype, device = encoder_states.dtype, encoder_states.device
        encoder_bias = _padding_bias(attention_mask, dtype)  # [B, 1, 1, S], or None without padding
        batch = input_ids.shape[0]
        rows = batch * expand
        cache = _KVCache.preallocate(
            decoder_cfg.num_hidden_layers, rows, decoder_cfg.num_attention_heads, max_length - 1,
            decoder_cfg.head_dim, dtype, device,
        )
        step = _Step(model.decoder, cache, encoder_states, encoder_bias)
        processors = build_logits_processors(gc, eos_ids, max_length, min_length, decoder_cfg.vocab_size, device)
        sequences = torch.full((rows, max_length), pad if pad is not None else 0, dtype=torch.long, device=device)
        sequences[:, :prompt_length] = prompt.repeat_interleave(expand, dim=0)

        with _packed_linear_weights(model.decoder):
            if num_beams == 1:
                sequences, scores = greedy_search(
                    step, processors, sequences, max_length, eos_ids, pad, gc.do_sample, generator, gc.output_scores,
                    prompt_length,
                )
                sequences_scores = beam_indices = None
            else:
                sequences, sequences_scores, scores, beam_indices = beam_search(
                    step, processors, sequences, batch, num_beams, max_length, eos_ids, pad, gc.length_penalty,
                    gc.early_stopping, gc.num_return_sequences, gc.do_sample, generator, gc.output_scores, cache,
                    prompt_length,
                )

    # Tensors made under inference mode cannot be changed in place outside it (say, to turn the ids into
    # labels); the results are copied out as ordinary tensors.
    sequences = sequences.clone()
    scores = tuple(s.clone() for s in scores) if scores is not None else None
    if not gc.return_dict_in_generate:
        return sequences
    if num_beams == 1:
        return GenerateEncoderDecoderOutput(sequences=sequences, scores=scores)
    return GenerateBeamEncoderDecoderOutput(
        sequences=sequences,
        sequences_scores=sequences_scores.clone() if gc.output_scores else None,
        scores=scores,
        beam_indices=beam_indices.clone(),
    )

