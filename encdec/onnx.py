"""Run an ONNX export (`encdec export DIR OUT --to onnx`) with numpy and onnxruntime only.

    from encdec.onnx import generate, load
    ids = generate("OUT", input_ids, attention_mask, num_beams=3, max_length=20)
    logits = load("OUT").forward(input_ids, attention_mask, decoder_input_ids)

The export's graphs (`encdec.export.onnx`): the encoder runs once; the first decoder step
feeds the whole decoder prompt to `decoder_model.onnx`, which returns the cache, and every
later step feeds one token per row to `decoder_with_past_model.onnx`. What a call means
(special tokens, lengths, processors, the length penalty) is the core's plan
(`encdec.generation.plan_generation`), and the greedy and beam loops are the PyTorch
port's (`encdec.pt.generation`) in numpy, so the ids are the ports'. Beam search runs
every beam as a row of the graphs (the encoder's states repeated per beam), as optimum does.

Not supported (ConfigError): sampling (`do_sample=True`), `output_scores` and
`return_dict_in_generate`. This module imports no framework and no transformers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from . import logits_processors
from .config import EncoderDecoderConfig, GenerationConfig
from .errors import ConfigError, ExportError, InputError, NonFiniteError
from .generation import (apply_processors, beam_candidates, build_processors, nan_message, plan_generation,
                         returned_beams)
from .inputs import check_encoder_inputs, check_ids

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
# generate's options the runner takes that are no generation option
_PORT_OPTIONS = ("providers",)


def build_logits_processors(specs: tuple) -> list:
    """The numpy processors (`encdec.logits_processors` on its `NumpyOps`) of a plan's `ProcessorSpec`s, in their
    order; called as the ports' are, `processor(sequences [N, max_length], cur_len, scores [N, V]) -> scores`."""
    return build_processors(specs, logits_processors.bind(logits_processors.NumpyOps))


# ---------------------------------------------------------------------------
# The export


class Runner:
    """A finished onnx export: three onnxruntime sessions, the model config and generation config."""

    def __init__(self, path: str | os.PathLike, providers: Optional[list] = None, session_options=None) -> None:
        import onnxruntime

        self.path = Path(path)
        for name in (ENCODER_FILE, DECODER_FILE, DECODER_WITH_PAST_FILE, "config.json"):
            if not (self.path / name).is_file():
                raise ExportError(f"{self.path}: no {name}; expected a folder written by encdec export --to onnx")
        self.config = EncoderDecoderConfig.from_pretrained(self.path)
        if (self.path / "generation_config.json").is_file():
            self.generation_config = GenerationConfig.from_pretrained(self.path)
        else:
            self.generation_config = GenerationConfig.from_model_config(self.config)
        providers = providers or ["CPUExecutionProvider"]

        def session(name):
            return onnxruntime.InferenceSession(os.fspath(self.path / name), session_options, providers=providers)

        self.encoder, self.decoder, self.decoder_with_past = (
            session(ENCODER_FILE), session(DECODER_FILE), session(DECODER_WITH_PAST_FILE))
        self._present = [o.name for o in self.decoder.get_outputs()][1:]
        self._past = [i.name for i in self.decoder_with_past.get_inputs() if i.name.startswith("past_key_values.")]
        self._present_with_past = [o.name for o in self.decoder_with_past.get_outputs()][1:]

    # ------------------------------------------------------------------ graphs

    def _encoder_inputs(self, input_ids, attention_mask):
        """int64 ids and mask `[B, S]` (mask all ones when None), checked as the ports check them."""
        ids = np.asarray(input_ids)
        mask = np.ones(ids.shape, np.int64) if attention_mask is None and ids.ndim == 2 else attention_mask
        check_encoder_inputs(self.config, ids, mask)
        return ids.astype(np.int64), np.asarray(mask).astype(np.int64)

    def encode(self, input_ids, attention_mask=None) -> np.ndarray:
        """The encoder's last hidden state `[B, S, H_enc]` (not projected)."""
        ids, mask = self._encoder_inputs(input_ids, attention_mask)
        return self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def _first_step(self, decoder_input_ids, encoder_attention_mask, encoder_hidden_states):
        """(logits `[N, T, V]`, cache {present name: array}) of a decoder prompt `[N, T]`."""
        outputs = self.decoder.run(None, {"input_ids": decoder_input_ids.astype(np.int64),
                                          "encoder_attention_mask": encoder_attention_mask,
                                          "encoder_hidden_states": encoder_hidden_states})
        return outputs[0], dict(zip(self._present, outputs[1:]))

    def _next_step(self, tokens, encoder_attention_mask, cache: dict):
        """(logits `[N, 1, V]`, cache) of one token per row `[N, 1]` after the cached ones."""
        feed = {"input_ids": tokens.astype(np.int64), "encoder_attention_mask": encoder_attention_mask}
        for name in self._past:
            feed[name] = cache[name.replace("past_key_values.", "present.", 1)]
        outputs = self.decoder_with_past.run(None, feed)
        cache = dict(cache)  # the encoder's keys/values stay those of the first step
        cache.update(zip(self._present_with_past, outputs[1:]))
        return outputs[0], cache

    def forward(self, input_ids, attention_mask, decoder_input_ids) -> np.ndarray:
        """Logits `[B, T, V]`, float32, of `decoder_input_ids` `[B, T]` (no decoder mask), as the ports' forward."""
        ids, mask = self._encoder_inputs(input_ids, attention_mask)
        decoder_ids = np.asarray(decoder_input_ids)
        if decoder_ids.ndim != 2 or decoder_ids.shape[0] != ids.shape[0]:
            raise InputError(f"decoder_input_ids has shape {decoder_ids.shape}; expected [{ids.shape[0]}, length]")
        decoder = self.config.decoder
        check_ids(decoder_ids, decoder.vocab_size, "decoder_input_ids", max_positions=decoder.max_positions)
        states = self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return self._first_step(decoder_ids, mask, states)[0].astype(np.float32)

    # ------------------------------------------------------------------ generate

    def generate(self, input_ids, attention_mask=None, generation_config: Optional[GenerationConfig] = None,
                 decoder_input_ids=None, **options) -> np.ndarray:
        """Token ids `[B * num_return_sequences, length]` (int64) for `input_ids` `[B, S]`: greedy or beam
        search, options as the ports' `generate` (the export's generation config overridden by them)."""
        ids, mask = self._encoder_inputs(input_ids, attention_mask)
        setup = plan_generation(self.config, generation_config, self.generation_config, options,
                                decoder_input_ids, ids.shape[0], port_options=_PORT_OPTIONS)
        plan = setup.plan
        if setup.port_options:
            raise ConfigError(f"{', '.join(setup.port_options)} cannot be given to generate; choose the "
                              "providers when loading the export (encdec.onnx.load(path, providers=...))")
        if plan.do_sample:
            raise ConfigError("do_sample=True: an onnx export's runner searches greedily or by beams only; "
                              "expected do_sample=False")
        if plan.return_dict_in_generate or plan.output_scores:
            raise ConfigError("return_dict_in_generate / output_scores: an onnx export's runner returns the ids "
                              "alone; expected both False")
        states = self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        # Every decoder row attends its batch item's encoder output: [B, ...] -> [B * rows_per_item, ...].
        states = np.repeat(states, plan.rows_per_item, axis=0)
        mask = np.repeat(mask, plan.rows_per_item, axis=0)
        rows = ids.shape[0] * plan.rows_per_item
        sequences = np.full((rows, plan.max_length), plan.fill_token_id, np.int64)
        sequences[:, :plan.prompt_length] = np.repeat(setup.prompt, plan.rows_per_item, axis=0)
        step = _Step(self, states, mask, plan.prompt_length)
        processors = build_logits_processors(plan.processors)
        eos_ids = list(plan.eos_token_ids)
        if not plan.is_beam_search:
            return greedy_search(step, processors, sequences, plan.max_length, eos_ids, plan.pad_token_id,
                                 plan.prompt_length)
        return beam_search(step, processors, sequences, ids.shape[0], plan.num_beams, plan.max_length, eos_ids,
                           plan.beam_fill_token_id, setup.length_penalty_table, setup.early_stopping_true,
                           setup.heuristic_at_max_length, plan.num_return_sequences, plan.prompt_length)


class _Step:
    """One decoder step: the tokens of `[N, max_length]` sequences up to `cur_len` that the cache does
    not hold yet -> `[N, V]` float32 logits of the next token (the prompt in the first step)."""

    def __init__(self, runner: Runner, states, mask, prompt_length: int) -> None:
        self.runner, self.states, self.mask = runner, states, mask
        self.prompt_length = prompt_length
        self.cache = None

    def __call__(self, sequences, cur_len: int):
        if self.cache is None:
            logits, self.cache = self.runner._first_step(sequences[:, :cur_len], self.mask, self.states)
        else:
            logits, self.cache = self.runner._next_step(sequences[:, cur_len - 1:cur_len], self.mask, self.cache)
        logits = logits[:, -1].astype(np.float32)
        if np.isnan(logits).any():
            raise NonFiniteError(nan_message(cur_len - self.prompt_length))
        return logits

    def reorder(self, rows) -> None:
        """Each running beam continues from the cache of the row `rows` `[N]` it extends. Beams never
        leave their batch item, whose cross-attention keys and values are the same for all its beams."""
        self.cache = {name: value[rows] if ".decoder." in name else value for name, value in self.cache.items()}


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _stable_topk(scores, k: int):
    """The k best along the last axis, equal scores in index order (lower first), as the ports keep them."""
    n = scores.shape[-1]
    flat = scores.reshape(-1, n)  # [rows, n]
    indices = np.empty((flat.shape[0], k), np.int64)
    for row, values in enumerate(flat):
        # Every score at least the k-th best is a candidate (its ties too); a stable sort of the
        # candidates, in index order, picks what a stable sort of the whole row would, without sorting it.
        kth = np.partition(values, n - k)[n - k]
        candidates = np.flatnonzero(values >= kth)
        indices[row] = candidates[np.argsort(-values[candidates], kind="stable")[:k]]
    indices = indices.reshape(scores.shape[:-1] + (k,))
    return np.take_along_axis(scores, indices, axis=-1), indices


def _gather_beams(array, beam_indices):
    """`[B, K, ...]` gathered along the beam axis by `[B, K']` indices -> `[B, K', ...]`."""
    return array[np.arange(array.shape[0])[:, None], beam_indices]


def greedy_search(step, processors, sequences, max_length: int, eos_token_ids, pad_token_id, prompt_length: int = 1):
    """Greedy decoding over a `[N, max_length]` buffer whose first `prompt_length` positions hold the prompt.
    Returns the sequences `[N, cur_len]`."""
    eos = np.asarray(eos_token_ids, np.int64) if eos_token_ids else None
    unfinished = np.ones(sequences.shape[0], bool)
    cur_len = prompt_length
    while True:
        scores = apply_processors(processors, sequences, cur_len, step(sequences, cur_len))
        next_tokens = np.argmax(scores, axis=-1)
        if eos is not None:
            next_tokens = np.where(unfinished, next_tokens, pad_token_id)  # finished rows are padded
        sequences[:, cur_len] = next_tokens
        cur_len += 1
        if eos is not None:
            unfinished &= ~np.isin(next_tokens, eos)
        if cur_len >= max_length or not unfinished.any():
            break
    return sequences[:, :cur_len]


def beam_search(step, processors, sequences, batch_size: int, num_beams: int, max_length: int, eos_token_ids,
                fill: int, penalties, early_stopping_true: bool, heuristic_at_max_length: bool,
                num_return_sequences: int = 1, prompt_length: int = 1):
    """transformers 5's vectorized beam search, step for step, as `encdec.pt.generation.beam_search`.
    Returns the sequences `[B * num_return_sequences, length]`."""
    prompt_len = cur_len = prompt_length
    eos = np.asarray(eos_token_ids, np.int64) if eos_token_ids else None
    beams_to_keep = beam_candidates(num_beams, eos_token_ids)
    top_num_beam_mask = np.arange(beams_to_keep) < num_beams
    penalties = np.asarray(penalties, np.float32)  # [max_length + 1]
    big = np.float32(-1.0e9)

    running_sequences = np.full((batch_size, num_beams, max_length), fill, np.int64)
    running_sequences[:, :, :cur_len] = sequences[:, :cur_len].reshape(batch_size, num_beams, cur_len)
    finished_sequences = running_sequences.copy()
    running_beam_scores = np.zeros((batch_size, num_beams), np.float32)
    running_beam_scores[:, 1:] = big  # only the first beam's tokens count at the first step
    beam_scores = np.full((batch_size, num_beams), big, np.float32)
    is_sent_finished = np.zeros((batch_size, num_beams), bool)
    heuristic_unsatisfied = np.ones((batch_size, 1), bool)
    running_beam_indices = np.full((batch_size, num_beams, max_length - cur_len), -1, np.int32)
    beam_indices = running_beam_indices.copy()
    batch_offset = np.arange(batch_size)[:, None] * num_beams  # [B, 1]

    while True:
        flat_running = running_sequences.reshape(batch_size * num_beams, max_length)
        logits = step(flat_running, cur_len)  # [B * beams, V]
        vocab = logits.shape[-1]
        log_probs = apply_processors(processors, flat_running, cur_len, _log_softmax(logits)).astype(np.float32)
        log_probs = (log_probs.reshape(batch_size, num_beams, vocab) + running_beam_scores[:, :, None])
        log_probs = log_probs.reshape(batch_size, num_beams * vocab)

        # a. the best `beams_to_keep` continuations over all beams
        topk_log_probs, topk_indices = _stable_topk(log_probs, beams_to_keep)
        topk_current_beam_indices = topk_indices // vocab  # [B, K]
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_current_beam_indices)
        topk_running_sequences = _gather_beams(running_sequences, topk_current_beam_indices)
        topk_running_sequences[:, :, cur_len] = topk_indices % vocab
        topk_running_beam_indices[:, :, cur_len - prompt_len] = topk_current_beam_indices + batch_offset

        # b. which continuations end here (eos, or the length limit)
        hits = np.full(topk_log_probs.shape, cur_len + 1 >= max_length)
        if eos is not None:
            hits = hits | np.isin(topk_running_sequences[:, :, cur_len], eos)

        # c. the best unfinished ones run on
        topk_running_log_probs = topk_log_probs + hits.astype(np.float32) * big
        next_topk = _stable_topk(topk_running_log_probs, num_beams)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # d. finished ones among the top `num_beams` replace worse finished hypotheses
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / penalties[cur_len + 1 - prompt_len]
        full = is_sent_finished.all(axis=-1, keepdims=True) & early_stopping_true
        finished_scores = finished_scores + full.astype(np.float32) * big
        finished_scores = finished_scores + (~heuristic_unsatisfied).astype(np.float32) * big
        finished_scores = finished_scores + (~just_finished).astype(np.float32) * big
        merged_scores = np.concatenate((beam_scores, finished_scores), axis=1)
        keep = _stable_topk(merged_scores, num_beams)[1]
        finished_sequences = _gather_beams(np.concatenate((finished_sequences, topk_running_sequences), 1), keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(np.concatenate((beam_indices, topk_running_beam_indices), 1), keep)
        is_sent_finished = _gather_beams(np.concatenate((is_sent_finished, just_finished), 1), keep)

        # e. can anything still change?
        reorder = running_beam_indices[..., cur_len - prompt_len].reshape(-1)
        cur_len += 1
        best_length = max_length - prompt_len if heuristic_at_max_length else cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / penalties[best_length]
        worst_finished = np.where(is_sent_finished, beam_scores.min(axis=1, keepdims=True), big)
        heuristic_unsatisfied = heuristic_unsatisfied & (best_running > worst_finished).any(axis=-1, keepdims=True)
        improvement_possible = bool(heuristic_unsatisfied.any())
        exists_open_beam = not (bool(is_sent_finished.all()) and early_stopping_true)
        if not (improvement_possible and exists_open_beam and not bool(hits.all())):
            break
        step.reorder(reorder)

    return returned_beams(num_return_sequences, prompt_len, finished_sequences, beam_scores, beam_indices)[0]


# ---------------------------------------------------------------------------


def load(path: str | os.PathLike, providers: Optional[list] = None, session_options=None) -> Runner:
    """The runner of the onnx export at `path` (onnxruntime `providers`, default the CPU's, and
    `session_options`, an `onnxruntime.SessionOptions`, e.g. its thread counts)."""
    return Runner(path, providers, session_options)


def generate(path_or_model, input_ids, attention_mask=None, **options) -> np.ndarray:
    """`load(path_or_model).generate(input_ids, attention_mask, **options)`; a Runner is used as it is."""
    runner = path_or_model if isinstance(path_or_model, Runner) else load(path_or_model)
    return runner.generate(input_ids, attention_mask, **options)
