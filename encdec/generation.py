"""The framework-neutral half of `generate`, written once for the three ports; numpy only.

`plan_generation` turns a call of `generate` into plain data: the resolved
`GenerationConfig`, a hashable `GenerationPlan` (special tokens, lengths, search
kind, the logits processors to run and their options: what fixes the shapes and
the ops, so the key of a compiled function), the decoder prompt, the runtime
options of beam search, and the call's port-specific options. A port maps the plan
to its own tensors and loops; it decides nothing of this itself.

Semantics are transformers 5's: the start token is `decoder_start_token_id` (else
`bos_token_id`), from the generation config before the model config; pad falls back
to the first eos id; the start token goes in front of a decoder prompt none of whose
rows begins with it; lengths count the prompt (`GenerationConfig.lengths`); the
processors run in transformers' order, sampling warpers last.

Beam search, the same in every port (transformers 5's vectorized `_beam_search`): running
beams and finished hypotheses are each `num_beams` fixed-length rows per batch item;
each step keeps the best `beams_to_keep` continuations over all beams, the best
`num_beams` unfinished ones run on, and finished ones replace worse finished hypotheses
(scores divided by `length_penalty_table[n]` for n generated tokens). `beam_options`
are the inputs that change no shape (the table and the reading of `early_stopping`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .config import EncoderDecoderConfig, GenerationConfig
from .errors import ConfigError, InputError, NonFiniteError
from .inputs import check_ids

# Options of `generate` that are no generation option: each port reads those it knows.
PORT_OPTIONS = ("seed", "generator", "jit_compile", "token_type_ids", "position_ids", "prng_key", "params")

# The processors a plan may list, in the order they run.
PROCESSOR_NAMES = (
    "repetition_penalty", "no_repeat_ngram", "bad_words", "min_length", "forced_bos", "forced_eos",
    "temperature", "top_k", "top_p",
)


@dataclasses.dataclass(frozen=True)
class ProcessorSpec:
    """One logits processor as plain, hashable data: its name (one of PROCESSOR_NAMES) and options.

    Options by name (python ints, floats and tuples):

    * repetition_penalty: penalty (float > 0)
    * no_repeat_ngram: ngram_size (int > 0)
    * bad_words (left out when nothing is banned): vocab_size, single (banned token ids), groups (per prefix length p,
      ascending: (prefixes, tuple of G p-tuples; last, tuple of G ids))
    * min_length: min_length, eos_token_ids (tuple)
    * forced_bos: token_id
    * forced_eos: max_length, eos_token_ids (tuple)
    * temperature: temperature (float > 0)
    * top_k: top_k (already at least min_tokens_to_keep and at most the vocabulary), min_tokens_to_keep
    * top_p: top_p (in [0, 1)), min_tokens_to_keep
    """

    name: str
    options: tuple  # ((key, value), ...) sorted by key

    def __getitem__(self, key: str) -> Any:
        return dict(self.options)[key]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def arrays(self) -> dict[str, Any]:
        """The options as numpy values, for ports that feed them to a compiled function as inputs.

        ints -> int32 scalars, floats -> float32 scalars, id tuples -> int32 `[n]`; bad_words'
        `single` -> bool `[vocab_size]` (True = banned; None when there is none) and `groups` ->
        ((int32 `[G, p]` prefixes, int32 `[G]` last ids), ...).
        """
        out: dict[str, Any] = {}
        for key, value in self.options:
            if self.name == "bad_words" and key == "single":
                mask = None
                if value:
                    mask = np.zeros(self["vocab_size"], bool)
                    mask[list(value)] = True
                out[key] = mask
            elif self.name == "bad_words" and key == "groups":
                out[key] = tuple((np.array(p, np.int32), np.array(last, np.int32)) for p, last in value)
            elif isinstance(value, tuple):
                out[key] = np.array(value, np.int32)
            elif isinstance(value, bool):
                out[key] = np.bool_(value)
            elif isinstance(value, int):
                out[key] = np.int32(value)
            else:
                out[key] = np.float32(value)
        return out


# Each processor's class (`encdec.logits_processors`), by ProcessorSpec name.
PROCESSOR_CLASSES = {
    "repetition_penalty": "RepetitionPenaltyLogitsProcessor", "no_repeat_ngram": "NoRepeatNGramLogitsProcessor",
    "bad_words": "NoBadWordsLogitsProcessor", "min_length": "MinLengthLogitsProcessor",
    "forced_bos": "ForcedBOSTokenLogitsProcessor", "forced_eos": "ForcedEOSTokenLogitsProcessor",
    "temperature": "TemperatureLogitsWarper", "top_k": "TopKLogitsWarper", "top_p": "TopPLogitsWarper",
}


def build_processors(specs: Iterable[ProcessorSpec], lookup) -> list:
    """A port's processors for a plan's specs, in their order: `lookup(name)` is the port's class of a
    PROCESSOR_CLASSES name, called with the spec's options by name (bad words: its arrays)."""
    return [
        lookup(PROCESSOR_CLASSES[s.name])(**(s.arrays() if s.name == "bad_words" else s.as_dict()))
        for s in specs
    ]


def apply_processors(processors, sequences, cur_len, scores):
    """`scores` through each processor in turn (every port calls one as `processor(sequences, cur_len, scores)`)."""
    for processor in processors:
        scores = processor(sequences, cur_len, scores)
    return scores


def _spec(name: str, **options: Any) -> ProcessorSpec:
    return ProcessorSpec(name, tuple(sorted(options.items())))


@dataclasses.dataclass(frozen=True)
class GenerationPlan:
    """What fixes the shapes and the ops of one generation (hashable: the key of a compiled function).

    Not in it: the batch size and source length (ports whose compiled function is
    shape-polymorphic key on the plan alone; others add the shapes), and the beam
    options that change neither shapes nor ops (`GenerationSetup.length_penalty_table`,
    `early_stopping_true`, `heuristic_at_max_length`).
    """

    start_token_id: int
    eos_token_ids: tuple  # () when generation stops only at max_length
    pad_token_id: Optional[int]  # the config's, else the first eos id, else None
    fill_token_id: int  # what the token buffer holds past the end: pad, or 0 without one
    beam_fill_token_id: int  # transformers' beam buffer fill: `pad or eos[0]` (a pad of 0 counts as unset), else -1
    prompt_length: int  # the decoder prompt's tokens, the start token included
    max_length: int  # tokens of a finished row, prompt included
    min_length: int  # no eos before this many tokens, prompt included
    num_beams: int
    num_return_sequences: int
    rows_per_item: int  # decoder rows per batch item: max(num_beams, num_return_sequences)
    beams_to_keep: int  # beam candidates per step: max(2, 1 + number of eos ids) * num_beams
    do_sample: bool
    output_scores: bool  # output_scores and return_dict_in_generate
    return_dict_in_generate: bool
    processors: tuple  # ProcessorSpec, in the order they run

    @property
    def is_beam_search(self) -> bool:
        return self.num_beams > 1

    @property
    def cache_length(self) -> int:
        """Self-attention cache positions a generation needs: every token but the last is fed once."""
        return self.max_length - 1

    def processor(self, name: str) -> Optional[ProcessorSpec]:
        """The processor `name` of the plan, or None when it does not run."""
        return next((p for p in self.processors if p.name == name), None)


@dataclasses.dataclass(frozen=True, eq=False)
class GenerationSetup:
    """Everything `plan_generation` resolved for one call of `generate`."""

    config: GenerationConfig  # the call's generation config (base updated by the call's options)
    plan: GenerationPlan
    prompt: np.ndarray  # int64 [B, P]: the decoder prompt, the start token first
    length_penalty_table: np.ndarray  # float32 [max_length + 1]: float32(max(n, 1) ** length_penalty)
    early_stopping_true: bool  # early_stopping is True
    heuristic_at_max_length: bool  # early_stopping == "never" and length_penalty > 0
    port_options: dict  # the call's options named in `port_options` (seed, generator, ...), as given
    explicit_max_length: bool  # max_length was set (by the call or the base config)


def beam_candidates(num_beams: int, eos_token_ids) -> int:
    """Beam candidates kept per step: `max(2, 1 + number of eos ids) * num_beams`, so that `num_beams`
    unfinished ones remain even when the best candidates of every beam end in an eos id."""
    return max(2, 1 + len(eos_token_ids or ())) * num_beams


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def _as_ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    return [int(value)]


_TOKEN_OPTIONS = ("decoder_start_token_id", "bos_token_id", "pad_token_id", "eos_token_id", "forced_bos_token_id",
                  "forced_eos_token_id")


def _check_token_ids(name: str, value, vocab_size: int) -> None:
    """ConfigError for an integer id (or list of them) outside `[0, vocab_size)`; other types are left to
    GenerationConfig's own checks."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for token in values:
        if isinstance(token, (int, np.integer)) and not isinstance(token, bool) and not 0 <= token < vocab_size:
            raise ConfigError(f"{name} is {token}; expected an id in [0, {vocab_size}) (the decoder's vocabulary)")


def resolve_generation_config(generation_config: Optional[GenerationConfig], model_generation_config: GenerationConfig,
                              options: Mapping[str, Any]) -> tuple[GenerationConfig, bool]:
    """(the call's config, whether max_length is explicit): `generation_config` (else the model's)
    updated by `options` (generation options only).

    ConfigError for a base that is no GenerationConfig or an unknown option.
    """
    base = generation_config if generation_config is not None else model_generation_config
    if not isinstance(base, GenerationConfig):
        raise ConfigError(f"generation_config is a {type(base).__name__}; expected an encdec GenerationConfig")
    explicit_max_length = "max_length" in options or base.max_length != GenerationConfig.defaults["max_length"]
    return base.update(**dict(options)), explicit_max_length


def start_token_id(config: EncoderDecoderConfig, gc: GenerationConfig) -> int:
    """The id the decoder starts from: decoder_start_token_id, else bos_token_id; the generation config's
    before the model config's. ConfigError when none is set."""
    start = _first_set(gc.decoder_start_token_id, config.decoder_start_token_id, gc.bos_token_id, config.bos_token_id)
    if start is None:
        raise ConfigError(
            "no decoder_start_token_id (nor bos_token_id) in the generation config or the model config; "
            "expected the id the decoder starts from"
        )
    return int(start)


def decoder_prompt(decoder_input_ids, start: int, batch_size: int, vocab_size: int) -> np.ndarray:
    """int64 `[B, P]`: the start token alone (`decoder_input_ids` None), or `decoder_input_ids`
    with the start token put in front when no row begins with it (as transformers does).

    InputError for a prompt that is not `[batch_size, P >= 1]` integer ids in `[0, vocab_size)`.
    """
    if decoder_input_ids is None:
        return np.full((batch_size, 1), start, np.int64)
    prompt = np.asarray(decoder_input_ids)
    if prompt.ndim != 2 or prompt.shape[0] != batch_size:
        raise InputError(
            f"decoder_input_ids has shape {prompt.shape}; expected [{batch_size}, prompt length] (batch size "
            f"{batch_size} like input_ids)"
        )
    check_ids(prompt, vocab_size, "decoder_input_ids")
    prompt = prompt.astype(np.int64)
    if bool(np.all(prompt[:, 0] != start)):
        prompt = np.concatenate([np.full((batch_size, 1), start, np.int64), prompt], axis=1)
    return prompt


def length_penalty_table(max_length: int, length_penalty: float) -> np.ndarray:
    """float32 `[max_length + 1]`: entry n is `max(n, 1) ** length_penalty`.

    The power is a Python float (float64), rounded to float32 once, as PyTorch rounds
    the Python number transformers divides a float32 score by; a beam hypothesis of n
    generated tokens scores `sum_logprobs / table[n]`.
    """
    return np.array([float(max(n, 1) ** length_penalty) for n in range(max_length + 1)], np.float32)


def bad_words_arrays(bad_words_ids, eos_token_ids: Iterable[int], vocab_size: int):
    """Host side of NoBadWords: (single-token mask bool `[V]` or None, ((prefixes int32 `[G, p]`,
    last ids int32 `[G]`), ...) by ascending prefix length p).

    As transformers, a banned sequence that is one eos token alone is ignored, and a
    repeated sequence counts once. `bad_words_ids` None, or nothing left to ban -> (None, ()). ConfigError
    unless it is a non-empty list of non-empty lists of ids in `[0, vocab_size)`.
    """
    spec = _bad_words_spec(bad_words_ids, list(eos_token_ids), vocab_size)
    if spec is None:
        return None, ()
    arrays = spec.arrays()
    return arrays["single"], arrays["groups"]


def _bad_words_spec(bad_words_ids, eos_ids: list[int], vocab_size: int) -> Optional[ProcessorSpec]:
    if bad_words_ids is None:
        return None
    if not isinstance(bad_words_ids, (list, tuple)) or not bad_words_ids or not all(
        isinstance(seq, (list, tuple)) and seq
        and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < vocab_size for t in seq)
        for seq in bad_words_ids
    ):
        raise ConfigError(
            f"bad_words_ids is {bad_words_ids!r}; expected a non-empty list of non-empty lists of token ids "
            f"in [0, {vocab_size})"
        )
    words = list(dict.fromkeys(tuple(int(t) for t in seq) for seq in bad_words_ids))
    words = [w for w in words if not (len(w) == 1 and w[0] in eos_ids)]
    single = tuple(w[0] for w in words if len(w) == 1)
    by_prefix: dict[int, list[tuple[int, ...]]] = {}
    for w in words:
        if len(w) > 1:
            by_prefix.setdefault(len(w) - 1, []).append(w)
    groups = tuple(
        (tuple(w[:-1] for w in ws), tuple(w[-1] for w in ws)) for _, ws in sorted(by_prefix.items())
    )
    if not single and not groups:
        return None  # every banned sequence was an eos token alone: nothing to ban
    return _spec("bad_words", vocab_size=int(vocab_size), single=single, groups=groups)


def logits_processors(gc: GenerationConfig, eos_token_ids: Iterable[int], max_length: int, min_length: int,
                      vocab_size: int) -> tuple:
    """The processors `gc` asks for, as ProcessorSpecs in transformers' order (sampling warpers last).

    A processor that would change nothing is left out (repetition_penalty 1,
    temperature 1, top_k 0, top_p 1, min_length without eos ids). ConfigError for an
    option outside its range (repetition_penalty <= 0, no_repeat_ngram_size not a
    non-negative int, top_k < 0, top_p outside [0, 1], forced ids outside the vocabulary,
    malformed bad_words_ids).
    """
    eos_ids = tuple(int(t) for t in eos_token_ids)
    out = []
    penalty = gc.repetition_penalty
    if penalty is not None and penalty != 1.0:
        if not penalty > 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {penalty}")
        out.append(_spec("repetition_penalty", penalty=float(penalty)))
    ngram = gc.no_repeat_ngram_size
    if ngram:
        if not isinstance(ngram, (int, np.integer)) or isinstance(ngram, bool) or ngram < 0:
            raise ConfigError(f"no_repeat_ngram_size must be a non-negative int, got {ngram!r}")
        out.append(_spec("no_repeat_ngram", ngram_size=int(ngram)))
    bad = _bad_words_spec(gc.bad_words_ids, list(eos_ids), vocab_size)
    if bad is not None:
        out.append(bad)
    if min_length > 0 and eos_ids:
        out.append(_spec("min_length", min_length=int(min_length), eos_token_ids=eos_ids))
    _check_token_ids("forced_bos_token_id", gc.forced_bos_token_id, vocab_size)
    _check_token_ids("forced_eos_token_id", gc.forced_eos_token_id, vocab_size)
    if gc.forced_bos_token_id is not None:
        out.append(_spec("forced_bos", token_id=int(gc.forced_bos_token_id)))
    if gc.forced_eos_token_id is not None:
        out.append(_spec("forced_eos", max_length=int(max_length),
                         eos_token_ids=tuple(_as_ids(gc.forced_eos_token_id))))
    if gc.do_sample:
        # Beam sampling keeps one more token than there are eos tokens, so some beam can go on.
        keep = (len(eos_ids) + 1 if eos_ids else 2) if gc.num_beams > 1 else 1
        if gc.temperature is not None and gc.temperature != 1.0:
            if not gc.temperature > 0:
                raise ConfigError(f"temperature must be > 0 when sampling, got {gc.temperature}")
            out.append(_spec("temperature", temperature=float(gc.temperature)))
        top_k = gc.top_k
        if top_k is not None and top_k != 0:
            if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 0:
                raise ConfigError(f"top_k must be a non-negative int, got {top_k!r}")
            out.append(_spec("top_k", top_k=min(max(int(top_k), keep), int(vocab_size)), min_tokens_to_keep=keep))
        if gc.top_p is not None:
            top_p = float(gc.top_p)
            if not 0.0 <= top_p <= 1.0:
                raise ConfigError(f"top_p must be in [0, 1], got {gc.top_p}")
            if top_p < 1.0:
                out.append(_spec("top_p", top_p=top_p, min_tokens_to_keep=keep))
    return tuple(out)


def plan_generation(config: EncoderDecoderConfig, generation_config: Optional[GenerationConfig],
                    model_generation_config: GenerationConfig, options: Mapping[str, Any], decoder_input_ids,
                    batch_size: int, *, port_options: Iterable[str] = PORT_OPTIONS) -> GenerationSetup:
    """Resolve one call of `generate(input_ids, attention_mask, generation_config, decoder_input_ids, **options)`.

    `options` are the call's keyword options (not changed); those named in
    `port_options` are returned in `GenerationSetup.port_options`, the rest update
    the generation config. `batch_size` is input_ids' first dimension. The encoder
    inputs are not checked here (`encdec.inputs.check_encoder_inputs`).

    Raises ConfigError: no start token; start, pad or an eos id outside the decoder
    vocabulary; num_return_sequences > num_beams in beam search; an unknown or
    out-of-range option. InputError: a malformed decoder prompt; max_length not
    above the prompt length, or needing more decoder positions than the position
    table covers.
    """
    port_keys = tuple(port_options)
    port = {k: v for k, v in options.items() if k in port_keys}
    gen_options = {k: v for k, v in options.items() if k not in port_keys}
    vocab = config.decoder.vocab_size
    # The call's token ids first, so that a negative id gets the same message as one past the vocabulary.
    for name in _TOKEN_OPTIONS:
        if name in gen_options:
            _check_token_ids(name, gen_options[name], vocab)
    gc, explicit_max_length = resolve_generation_config(generation_config, model_generation_config, gen_options)

    start = start_token_id(config, gc)
    eos_ids = tuple(_as_ids(gc.eos_token_id))
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos_ids[0] if eos_ids else None)
    _check_token_ids("decoder_start_token_id", start, vocab)
    _check_token_ids("eos_token_id", list(eos_ids), vocab)
    _check_token_ids("pad_token_id", pad, vocab)
    pad = None if pad is None else int(pad)

    prompt = decoder_prompt(decoder_input_ids, start, int(batch_size), vocab)
    prompt_length = prompt.shape[1]
    max_length, min_length = gc.lengths(prompt_length, explicit_max_length)
    limit = config.decoder.max_positions
    if max_length - 1 > limit:
        raise InputError(
            f"max_length {max_length} needs {max_length - 1} decoder positions; the decoder's position table "
            f"covers {limit}, expected max_length <= {limit + 1}"
        )
    num_beams = int(gc.num_beams)
    returned = int(gc.num_return_sequences)
    if num_beams > 1 and returned > num_beams:
        raise ConfigError(f"num_return_sequences ({returned}) must be <= num_beams ({num_beams}) in beam search")

    plan = GenerationPlan(
        start_token_id=start,
        eos_token_ids=eos_ids,
        pad_token_id=pad,
        fill_token_id=pad if pad is not None else 0,
        # transformers fills beams with `pad_token_id or eos_token_id[0]`: a pad id of 0 counts as unset there.
        beam_fill_token_id=(pad or eos_ids[0]) if eos_ids else -1,
        prompt_length=int(prompt_length),
        max_length=int(max_length),
        min_length=int(min_length),
        num_beams=num_beams,
        num_return_sequences=returned,
        rows_per_item=max(num_beams, returned),
        beams_to_keep=beam_candidates(num_beams, eos_ids),
        do_sample=bool(gc.do_sample),
        output_scores=bool(gc.output_scores and gc.return_dict_in_generate),
        return_dict_in_generate=bool(gc.return_dict_in_generate),
        processors=logits_processors(gc, eos_ids, max_length, min_length, vocab),
    )
    return GenerationSetup(
        config=gc,
        plan=plan,
        prompt=prompt,
        length_penalty_table=length_penalty_table(int(max_length), gc.length_penalty),
        early_stopping_true=gc.early_stopping is True,
        heuristic_at_max_length=bool(gc.early_stopping == "never" and gc.length_penalty > 0.0),
        port_options=port,
        explicit_max_length=explicit_max_length,
    )


# ---------------------------------------------------------------------------
# What the ports share around their search loops: the key and traced inputs of a compiled
# loop, and the host-side end of generate (numpy in, numpy out).


@dataclasses.dataclass(frozen=True)
class StaticPlan:
    """What decides shapes or which code runs in a loop compiled with static shapes: the key of its cache.

    Static (a change compiles a new loop): shapes (batch, input length, decoder prompt
    length, max_length, num_beams; num_return_sequences when sampling without beams),
    do_sample, output_scores, the number of eos ids (0 and 1 share a compilation), and
    which processors exist (repetition penalty, n-gram size, the bad words' lengths,
    forced bos/eos). Everything else is an input of the loop (`loop_options`, and the
    port's random key), so changing it compiles nothing: eos/pad/start ids, min_length,
    length_penalty, early_stopping, num_return_sequences of a beam search, temperature,
    top_k, top_p, the penalty, the forced ids, the bad words' ids.
    """

    batch: int
    source_length: int
    has_token_types: bool
    prompt_length: int
    max_length: int
    num_beams: int
    expand: int  # rows per batch item: num_beams, or num_return_sequences without beams
    do_sample: bool
    output_scores: bool
    eos_slots: int  # length of the eos id array (at least 1, padded with the vocabulary size)
    beams_to_keep: int
    processors: tuple  # (name, structure) per processor that runs: only what fixes shapes and ops


def processor_structure(spec: ProcessorSpec):
    """The part of a processor's options that fixes shapes and ops (None for one whose options are all
    values): the n-gram size, whether bad words ban single tokens and their (count, prefix length)
    groups, the number of forced eos ids."""
    if spec.name == "no_repeat_ngram":
        return spec["ngram_size"]
    if spec.name == "bad_words":
        return bool(spec["single"]), tuple((len(last), len(prefixes[0])) for prefixes, last in spec["groups"])
    if spec.name == "forced_eos":
        return len(spec["eos_token_ids"])
    return None


# Processors a compiled loop keys on; min_length and the sampling warpers always run there (their values
# may be no-ops), so they are not part of its key.
_KEYED_PROCESSORS = ("repetition_penalty", "no_repeat_ngram", "bad_words", "forced_bos", "forced_eos")


def static_plan(plan: GenerationPlan, batch: int, source_length: int, has_token_types: bool) -> StaticPlan:
    """The compiled loop's key for a plan and the input shapes."""
    return StaticPlan(
        batch=batch,
        source_length=source_length,
        has_token_types=has_token_types,
        prompt_length=plan.prompt_length,
        max_length=plan.max_length,
        num_beams=plan.num_beams,
        expand=plan.rows_per_item,
        do_sample=plan.do_sample,
        output_scores=plan.output_scores,
        eos_slots=max(1, len(plan.eos_token_ids)),
        beams_to_keep=plan.beams_to_keep,
        processors=tuple((s.name, processor_structure(s)) for s in plan.processors if s.name in _KEYED_PROCESSORS),
    )


def beam_options(setup: GenerationSetup) -> tuple:
    """The beam search options that change no shape or op, as numpy (inputs of a compiled loop): the
    length-penalty table, whether early_stopping is True, whether the heuristic looks at max_length."""
    return setup.length_penalty_table, np.bool_(setup.early_stopping_true), np.bool_(setup.heuristic_at_max_length)


def loop_options(setup: GenerationSetup, vocab: int) -> dict:
    """The plan's values a compiled loop reads as inputs (numpy). Processors the plan leaves out that
    such a loop always runs get values that change nothing: min length 0; when sampling, temperature
    1, top-k the whole vocabulary, top-p 1."""
    plan = setup.plan
    arrays = {spec.name: spec.arrays() for spec in plan.processors}
    sampling = {**arrays.get("top_p", {}), **arrays.get("top_k", {})}
    single = arrays.get("bad_words", {}).get("single")
    return dict(
        # No eos id: one slot holding the vocabulary size, an id no token has.
        eos_token_ids=np.asarray(plan.eos_token_ids or (vocab,), np.int32),
        pad_token_id=np.int32(plan.fill_token_id),
        output_fill=np.int32(plan.beam_fill_token_id),
        min_length=np.int32(plan.min_length),
        **dict(zip(("length_penalty_table", "early_stopping_true", "heuristic_at_max_length"), beam_options(setup))),
        repetition_penalty=arrays.get("repetition_penalty", {}).get("penalty", np.float32(1.0)),
        temperature=arrays.get("temperature", {}).get("temperature", np.float32(1.0)),
        top_k=sampling.get("top_k", np.int32(vocab)),
        top_p=sampling.get("top_p", np.float32(1.0)),
        min_tokens_to_keep=sampling.get("min_tokens_to_keep", np.int32(1)),
        forced_bos_token_id=arrays.get("forced_bos", {}).get("token_id", np.int32(0)),
        forced_eos_token_ids=arrays.get("forced_eos", {}).get("eos_token_ids", np.zeros(0, np.int32)),
        bad_words_single=np.zeros(1, bool) if single is None else single,
        bad_words_groups=arrays.get("bad_words", {}).get("groups", ()),
    )


def loop_processors(static: StaticPlan, opts: Mapping[str, Any], lookup) -> list:
    """The processors of a loop compiled with static shapes, in the plan's order: those its key lists,
    min length always and, when sampling, the three warpers always (their `loop_options` values may be
    no-ops), so changing a value compiles nothing. `lookup` is `build_processors`'s; each class is called
    with its options by name, read from `opts` (the loop's inputs, as its own values) and the key."""
    keyed = dict(static.processors)
    options = {
        "repetition_penalty": lambda: dict(penalty=opts["repetition_penalty"]),
        "no_repeat_ngram": lambda: dict(ngram_size=keyed["no_repeat_ngram"]),
        # The loop's single-token mask is a placeholder when the key says there are no single-token bans.
        "bad_words": lambda: dict(single=opts["bad_words_single"] if keyed["bad_words"][0] else None,
                                  groups=opts["bad_words_groups"]),
        # Without eos ids (or with min_length <= 1) this bans nothing, as transformers' absent processor.
        "min_length": lambda: dict(min_length=opts["min_length"], eos_token_ids=opts["eos_token_ids"]),
        "forced_bos": lambda: dict(token_id=opts["forced_bos_token_id"]),
        "forced_eos": lambda: dict(max_length=static.max_length, eos_token_ids=opts["forced_eos_token_ids"]),
        "temperature": lambda: dict(temperature=opts["temperature"]),
        # `loop_options`' top_k already counts min_tokens_to_keep and is at most the vocabulary.
        "top_k": lambda: dict(top_k=opts["top_k"]),
        "top_p": lambda: dict(top_p=opts["top_p"], min_tokens_to_keep=opts["min_tokens_to_keep"]),
    }
    runs = set(keyed) | {"min_length"} | ({"temperature", "top_k", "top_p"} if static.do_sample else set())
    return [lookup(PROCESSOR_CLASSES[name])(**options[name]()) for name in PROCESSOR_NAMES if name in runs]


def nan_message(step) -> str:
    """The NonFiniteError text for logits that held a NaN at generation step `step`."""
    return (f"the scores became NaN at step {step}; check the weights for non-finite values "
            "(encdec inspect lists them)")


def check_nan_step(nan_step) -> None:
    """NonFiniteError when a search loop recorded a step whose logits held a NaN (`nan_step` >= 0; -1 if none)."""
    if int(nan_step) >= 0:
        raise NonFiniteError(nan_message(int(nan_step)))


def returned_beams(num_return_sequences: int, prompt_length: int, sequences, beam_scores, beam_indices,
                   crop: bool = True) -> tuple:
    """The best `num_return_sequences` finished hypotheses of each batch item, flattened, best first.

    sequences `[B, K, L]`, beam_scores `[B, K]`, beam_indices `[B, K, L - P]` (-1 past each one's
    end) -> (sequences `[B * r, P + n]`, scores `[B * r]`, beam indices `[B * r, n]`), n the steps of
    the longest returned hypothesis; with `crop=False` (fixed shapes) n = L - P.
    """
    r = num_return_sequences
    rows = sequences.shape[0] * r
    beam_indices = beam_indices[:, :r].reshape(rows, -1)
    generated = int(np.max(np.sum(beam_indices != -1, axis=1))) if crop else beam_indices.shape[1]
    return (sequences[:, :r].reshape(rows, -1)[:, : prompt_length + generated], beam_scores[:, :r].reshape(-1),
            beam_indices[:, :generated])


def generate_outputs(plan: GenerationPlan, gc: GenerationConfig, classes: tuple, sequences, scores=None,
                     sequences_scores=None, beam_indices=None, plain=None):
    """What `generate` returns, from its results as the port's tensors.

    `classes` are the port's (greedy/sampling, beam) output containers, used with
    `return_dict_in_generate`; otherwise `plain(sequences, sequences_scores)` (the ids alone by default).
    """
    if not plan.return_dict_in_generate:
        return sequences if plain is None else plain(sequences, sequences_scores)
    if not plan.is_beam_search:
        return classes[0](sequences=sequences, scores=scores)
    return classes[1](sequences=sequences, sequences_scores=sequences_scores if gc.output_scores else None,
                      scores=scores, beam_indices=beam_indices)
