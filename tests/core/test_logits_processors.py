"""encdec.logits_processors on numpy's ops, against references computed here one row and one token at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encdec import generation as G
from encdec import logits_processors as LP
from encdec.config import GenerationConfig

V, L, N = 11, 8, 4  # vocabulary, buffer length, rows
SPARE = V - 1  # the token the tests put in the unfilled part of a buffer, and nowhere else


class StrictOps(LP.NumpyOps):
    """`NumpyOps` holding the processors to the ops' contract, which numpy would let pass: no negative
    length (torch.arange raises), gathers in bounds and marks in `[0, vocab]` (TensorFlow's raise on the CPU)."""

    @staticmethod
    def arange(n):
        assert np.asarray(n) >= 0, n
        return np.arange(n)

    @staticmethod
    def take(x, positions):
        positions = np.asarray(positions)
        assert ((positions >= 0) & (positions < x.shape[1])).all(), positions
        return x[:, positions]

    @staticmethod
    def mark(ids, vocab):
        assert ((np.asarray(ids) >= 0) & (np.asarray(ids) <= vocab)).all(), ids
        return LP.NumpyOps.mark(ids, vocab)


def make(name, **options):
    return LP.bind(StrictOps)(name)(**options)


def buffers(seed, alphabet=V - 1):
    """(cur_len, `[N, L]` sequences filled up to cur_len with ids below `alphabet`, the rest SPARE, `[N, V]` scores)
    for every cur_len of a search; scores of both signs."""
    rng = np.random.default_rng(seed)
    for cur_len in range(1, L):
        sequences = rng.integers(0, alphabet, size=(N, L))
        sequences[:, cur_len:] = SPARE
        yield cur_len, sequences, (rng.normal(size=(N, V)) * 3).astype(np.float32)


def run(processor, sequences, cur_len, scores):
    before = scores.copy()
    out = processor(sequences, cur_len, scores)
    np.testing.assert_array_equal(scores, before)  # the input is not changed in place
    assert out.shape == scores.shape and out.dtype == np.float32
    return out


def banned(scores, tokens_per_row):
    """`scores` with -inf at each row's tokens."""
    out = scores.copy()
    for row, tokens in enumerate(tokens_per_row):
        out[row, list(tokens)] = -np.inf
    return out


@pytest.mark.parametrize("penalty", [1.5, 0.5])
def test_repetition_penalty_scales_the_tokens_of_the_filled_part(penalty):
    processor = make("RepetitionPenaltyLogitsProcessor", penalty=penalty)
    for cur_len, sequences, scores in buffers(0):
        expected = scores.copy()
        for row in range(N):
            for token in set(sequences[row, :cur_len].tolist()):
                s = scores[row, token]
                expected[row, token] = s * penalty if s < 0 else s / penalty
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)


def _ngram_bans(tokens, n):
    """The tokens that would repeat an n-gram of `tokens` (the filled part of one row)."""
    cur_len = len(tokens)
    if cur_len < n:
        return set()
    suffix = tokens[cur_len - n + 1:]
    return {tokens[s + n - 1] for s in range(cur_len - n + 1) if tokens[s:s + n - 1] == suffix}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_bans_what_would_repeat_an_ngram_of_the_filled_part(n):
    processor = make("NoRepeatNGramLogitsProcessor", ngram_size=n)
    hits = 0
    for seed in range(4):
        for cur_len, sequences, scores in buffers(seed, alphabet=3):  # few ids: many repeats
            bans = [_ngram_bans(sequences[row, :cur_len].tolist(), n) for row in range(N)]
            hits += sum(map(len, bans))
            np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), banned(scores, bans))
    assert hits  # the buffers do repeat n-grams


@pytest.mark.parametrize("n", [L + 1, L + 3])
def test_no_repeat_ngram_longer_than_the_buffer_bans_nothing(n):
    cur_len, sequences, scores = next(buffers(0))
    np.testing.assert_array_equal(make("NoRepeatNGramLogitsProcessor", ngram_size=n)(sequences, L - 1, scores), scores)


BAD_WORDS = [[3], [1, 2], [0, 1, 4], [2, 5], [2, 2, 6], [0] * L + [7], [0] * (L + 1) + [8], [9]]
EOS = (9,)  # [9] alone is an eos token: not banned, as in transformers


def _bad_word_bans(tokens):
    cur_len = len(tokens)
    bans = set()
    for word in BAD_WORDS:
        if word == [9]:
            continue
        prefix = word[:-1]
        if len(prefix) <= cur_len and tokens[cur_len - len(prefix):] == prefix:
            bans.add(word[-1])
    return bans


def test_bad_words_ban_single_tokens_and_the_last_token_after_a_banned_prefix():
    single, groups = G.bad_words_arrays(BAD_WORDS, EOS, V)
    processor = make("NoBadWordsLogitsProcessor", single=single, groups=groups, vocab_size=V)
    hits = 0
    for seed in range(4):
        for cur_len, sequences, scores in buffers(seed, alphabet=3):
            bans = [_bad_word_bans(sequences[row, :cur_len].tolist()) for row in range(N)]
            hits += sum(len(b - {3}) for b in bans)
            np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), banned(scores, bans))
    assert hits  # prefixes were generated


def test_bad_words_without_single_bans():
    single, groups = G.bad_words_arrays([[1, 2]], EOS, V)
    assert single is None
    sequences = np.full((2, L), SPARE)
    sequences[:, :3] = [[0, 0, 1], [0, 1, 0]]
    scores = np.zeros((2, V), np.float32)
    scores[:, 5] = -0.0
    out = make("NoBadWordsLogitsProcessor", single=single, groups=groups)(sequences, 3, scores)
    np.testing.assert_array_equal(out, banned(scores, [{2}, set()]))
    # As transformers, a bias is added (0 where nothing is banned): a score of -0.0 comes out +0.0.
    assert not np.signbit(out[:, 5]).any()


def test_min_length_bans_eos_until_the_sequence_is_long_enough():
    processor = make("MinLengthLogitsProcessor", min_length=4, eos_token_ids=(2, 5))
    for cur_len, sequences, scores in buffers(0):
        expected = banned(scores, [{2, 5}] * N) if cur_len < 4 else scores
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)
    # The vocabulary size as an eos id (a compiled loop's placeholder for none) bans nothing.
    placeholder = make("MinLengthLogitsProcessor", min_length=4, eos_token_ids=np.array([V]))
    np.testing.assert_array_equal(placeholder(sequences, 1, scores), scores)


def _forced(scores, tokens):
    out = np.full_like(scores, -np.inf)
    out[:, list(tokens)] = 0
    return out


def test_forced_bos_forces_the_first_generated_token():
    processor = make("ForcedBOSTokenLogitsProcessor", token_id=4)
    for cur_len, sequences, scores in buffers(0):
        expected = _forced(scores, [4]) if cur_len == 1 else scores
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)


def test_forced_eos_forces_the_last_token():
    processor = make("ForcedEOSTokenLogitsProcessor", max_length=L, eos_token_ids=(2, 7))
    for cur_len, sequences, scores in buffers(0):
        expected = _forced(scores, [2, 7]) if cur_len == L - 1 else scores
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)


def test_temperature_divides_the_scores():
    cur_len, sequences, scores = next(buffers(0))
    out = run(make("TemperatureLogitsWarper", temperature=0.5), sequences, cur_len, scores)
    np.testing.assert_array_equal(out, [[float(s) * 2 for s in row] for row in scores])


@pytest.mark.parametrize("k", [1, 3, V])
def test_top_k_keeps_the_k_best_scores_and_their_ties(k):
    processor = make("TopKLogitsWarper", top_k=k, min_tokens_to_keep=1)
    for cur_len, sequences, scores in buffers(0):
        scores[0, :3] = scores[0].max() + 1  # three equal best scores: all kept, whatever k
        expected = scores.copy()
        for row in range(N):
            kth = sorted(scores[row].tolist(), reverse=True)[k - 1]
            expected[row][[s < kth for s in scores[row].tolist()]] = -np.inf
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)


def _top_p_keeps(row, top_p, min_tokens):
    """Token ids transformers keeps: those whose better tokens have less than `top_p` of the probability,
    and the `min_tokens` best."""
    probs = [math.exp(s) for s in row]
    probs = [p / sum(probs) for p in probs]
    best_first = sorted(range(len(row)), key=lambda t: -row[t])
    keep, mass = set(best_first[:min_tokens]), 0.0
    for token in best_first:
        if token not in keep:
            assert abs(mass - top_p) > 1e-4  # far from the threshold, where float32 sums could decide otherwise
            if mass < top_p:
                keep.add(token)
        mass += probs[token]
    return keep


@pytest.mark.parametrize("top_p, min_tokens", [(0.7, 1), (0.3, 1), (0.05, 3), (0.0, 1), (0.95, 2)])
def test_top_p_keeps_the_best_tokens_until_their_probability_reaches_top_p(top_p, min_tokens):
    processor = make("TopPLogitsWarper", top_p=top_p, min_tokens_to_keep=min_tokens)
    for cur_len, sequences, scores in buffers(3):
        keeps = [_top_p_keeps(row.tolist(), top_p, min_tokens) for row in scores]
        expected = banned(scores, [set(range(V)) - keep for keep in keeps])
        np.testing.assert_array_equal(run(processor, sequences, cur_len, scores), expected)


def test_top_p_by_hand():
    scores = np.log(np.array([[0.05, 0.5, 0.15, 0.3]], np.float32))
    sequences = np.zeros((1, 2), np.int64)
    out = make("TopPLogitsWarper", top_p=0.7, min_tokens_to_keep=1)(sequences, 1, scores)
    np.testing.assert_array_equal(out, [[-np.inf, scores[0, 1], -np.inf, scores[0, 3]]])
    # Four tokens of probability 0.25 (exact in float32): two of them reach top_p 0.5, and two are kept.
    out = make("TopPLogitsWarper", top_p=0.5, min_tokens_to_keep=1)(sequences, 1, np.zeros((1, 4), np.float32))
    assert np.isfinite(out).sum() == 2


class _Traced(np.ndarray):
    """A 0-d array with no truth value: as a traced value under jit, it cannot steer Python."""

    def __bool__(self):
        raise TypeError("a traced value has no truth value")


def _traced(value):
    return np.asarray(value).view(_Traced)


def test_no_processor_branches_on_cur_len_or_on_an_option():
    """Under XLA and jit `cur_len` and most options are traced: every rule is a mask, never a Python `if`."""
    single, groups = G.bad_words_arrays(BAD_WORDS, EOS, V)
    made = [
        ("RepetitionPenaltyLogitsProcessor", dict(penalty=1.5), dict(penalty=_traced(np.float32(1.5)))),
        ("NoRepeatNGramLogitsProcessor", dict(ngram_size=2), dict(ngram_size=2)),
        ("NoBadWordsLogitsProcessor", dict(single=single, groups=groups), dict(single=single, groups=groups)),
        ("MinLengthLogitsProcessor", dict(min_length=4, eos_token_ids=(2,)),
         dict(min_length=_traced(4), eos_token_ids=np.array([2]))),
        ("ForcedBOSTokenLogitsProcessor", dict(token_id=4), dict(token_id=_traced(4))),
        ("ForcedEOSTokenLogitsProcessor", dict(max_length=L, eos_token_ids=(2,)),
         dict(max_length=L, eos_token_ids=np.array([2]))),
        ("TemperatureLogitsWarper", dict(temperature=0.5), dict(temperature=_traced(np.float32(0.5)))),
        ("TopKLogitsWarper", dict(top_k=3), dict(top_k=_traced(3))),
        ("TopPLogitsWarper", dict(top_p=0.7, min_tokens_to_keep=1),
         dict(top_p=_traced(0.7), min_tokens_to_keep=_traced(1))),
    ]
    for name, plain, traced in made:
        for cur_len, sequences, scores in buffers(1, alphabet=3):
            expected = make(name, **plain)(sequences, cur_len, scores)
            np.testing.assert_array_equal(np.asarray(make(name, **traced)(sequences, _traced(cur_len), scores)),
                                          expected, err_msg=name)


def test_a_plans_processors_are_built_with_their_options_by_name_and_run_in_order():
    gc = GenerationConfig(repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[3], [1, 2]],
                          forced_bos_token_id=4, forced_eos_token_id=7, do_sample=True, temperature=0.5,
                          top_k=5, top_p=0.9)
    specs = G.logits_processors(gc, EOS, L, 3, V)
    processors = G.build_processors(specs, LP.bind(LP.NumpyOps))
    assert [type(p).__name__ for p in processors] == [G.PROCESSOR_CLASSES[s.name] for s in specs]
    assert len(processors) == 9
    for cur_len, sequences, scores in buffers(2, alphabet=3):
        expected = scores
        for spec in specs:
            options = spec.arrays() if spec.name == "bad_words" else spec.as_dict()  # the single bans as a mask
            expected = make(G.PROCESSOR_CLASSES[spec.name], **options)(sequences, cur_len, expected)
        np.testing.assert_array_equal(G.apply_processors(processors, sequences, cur_len, scores), expected)
