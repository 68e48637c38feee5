"""transformers' logits processors, written once over a port's array ops; numpy only.

Semantics are transformers 5's (`generation/logits_process.py`). Each processor is
called as `processor(sequences, cur_len, scores)`: `sequences` is the whole
`[N, max_length]` token buffer of a search loop, `cur_len` how much of it is
filled (a python int in PyTorch and numpy; a scalar tensor in TF, traced under
Flax's jit) and `scores` the `[N, V]` float32 scores of the next token. Every
rule is a mask over fixed shapes (positions `arange(L) < cur_len`, not `[:cur_len]`),
so the same code runs eagerly, in a TF graph under XLA and under `jax.jit`, where
options such as the penalty, top-k, top-p, min length and eos ids may be traced too.

A processor gets the port's array ops as its first argument, `xp`, an object with:

* `asarray(value)`: a python or numpy value (ids, masks) as an array of the framework,
  on the device the search runs on;
* `arange(n)`: `[0, 1, ..., n - 1]`;
* `where(cond, x, y)`: elementwise select, broadcasting (a python scalar keeps the
  other operand's dtype);
* `take(x, positions)`: `x[:, positions]` for `[N, L]` `x` and int `positions` in `[0, L)`;
* `all(x)`: all along the last axis;
* `mark(ids, vocab)`: `[M, vocab]` bools, True at `(m, ids[m, j])` for `[M, J]` `ids` in
  `[0, vocab]`; an id equal to `vocab` (the spare column) marks nothing;
* `kth_largest(x, k)`: `[N, 1]`, the k-th largest score of each row of `[N, V]` `x`;
* `sort(x)`: (values, order) of each row in ascending order, both `[N, V]`;
* `unsort(x, order)`: `[N, V]` `x` in sorted order (as `sort` returned `order`) put back in
  vocabulary order;
* `softmax(x)`, `cumsum(x)`: along the last axis.

Each port keeps its own numerics inside them (which sort, which top-k). `NumpyOps`
is the numpy one (the ONNX runner's, `encdec.onnx`); `bind(xp)` is the `lookup` that
`encdec.generation.build_processors` and `loop_processors` take.
"""

from __future__ import annotations

import functools
import operator

import numpy as np

NEG_INF = float("-inf")


def _positions(xp, start, size: int):
    """`[size]` positions `start, start + 1, ...`; below 0 they read position 0 (what the caller masks)."""
    positions = start + xp.arange(size)
    return xp.where(positions < 0, 0, positions)


def _force(xp, scores, token_ids, when):
    """Where `when`, every score is -inf but those of `token_ids` `[E]`, which are 0."""
    allowed = xp.mark(token_ids[None, :], scores.shape[-1])  # [1, V]
    scores = xp.where(allowed & when, 0.0, scores)
    return xp.where(~allowed & when, NEG_INF, scores)


class RepetitionPenaltyLogitsProcessor:
    """Scores of tokens already in the sequence: divided by `penalty` if positive, multiplied if negative."""

    def __init__(self, xp, penalty) -> None:
        self.xp = xp
        self.penalty = penalty

    def __call__(self, sequences, cur_len, scores):
        xp = self.xp
        vocab = scores.shape[-1]
        # Unfilled positions point at the spare column past the vocabulary.
        filled = xp.arange(sequences.shape[1]) < cur_len  # [L]
        seen = xp.mark(xp.where(filled, sequences, vocab), vocab)  # [N, V]
        penalized = xp.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return xp.where(seen, penalized, scores)


class NoRepeatNGramLogitsProcessor:
    """Bans every token that would repeat an n-gram already in the sequence."""

    def __init__(self, xp, ngram_size: int) -> None:
        self.xp = xp
        self.ngram_size = int(ngram_size)

    def __call__(self, sequences, cur_len, scores):
        xp = self.xp
        n = self.ngram_size
        length = sequences.shape[1]
        if n > length:
            return scores
        vocab = scores.shape[-1]
        starts = xp.arange(length - n + 1)  # [W], window s = tokens s .. s + n - 1
        windows = xp.take(sequences, starts[:, None] + xp.arange(n)[None, :])  # [N, W, n]
        suffix = xp.take(sequences, _positions(xp, cur_len + 1 - n, n - 1))  # [N, n - 1]
        # Windows wholly inside the filled part whose first n - 1 tokens equal the current suffix
        # ban their last token; the suffix's own window is not complete yet, so it bans nothing,
        # and before n tokens exist no window is complete.
        complete = starts <= cur_len - n  # [W]
        matches = xp.all(windows[:, :, :-1] == suffix[:, None, :]) & complete  # [N, W]
        banned = xp.mark(xp.where(matches, windows[:, :, -1], vocab), vocab)
        return xp.where(banned, NEG_INF, scores)


class NoBadWordsLogitsProcessor:
    """Bans single tokens, and the last token of a banned sequence once its prefix has been generated."""

    def __init__(self, xp, single, groups, vocab_size=None) -> None:
        # The plan's arrays (`ProcessorSpec.arrays`): single-token bans (bool [V], or None), and per prefix
        # length p the banned sequences' prefixes [G, p] and last tokens [G]. `vocab_size` is the length
        # of `single`.
        self.xp = xp
        self.single = None if single is None else xp.asarray(single)
        self.groups = [(xp.asarray(prefixes), xp.asarray(last)) for prefixes, last in groups]

    def __call__(self, sequences, cur_len, scores):
        xp = self.xp
        vocab = scores.shape[-1]
        banned = [] if self.single is None else [self.single[None, :]]  # [1, V]
        for prefixes, last in self.groups:
            p = prefixes.shape[1]
            tail = xp.take(sequences, _positions(xp, cur_len - p, p))  # [N, p]
            matching = xp.all(tail[:, None, :] == prefixes[None]) & (cur_len >= p)  # [N, G]
            banned.append(xp.mark(xp.where(matching, last[None, :], vocab), vocab))
        banned = functools.reduce(operator.or_, banned)  # the plan leaves out a processor that bans nothing
        # transformers adds a bias, -inf where banned and 0 elsewhere: these two sums.
        return xp.where(banned, scores + NEG_INF, scores + 0.0)


class MinLengthLogitsProcessor:
    """No eos before the sequence (decoder start included) is `min_length` long."""

    def __init__(self, xp, min_length, eos_token_ids) -> None:
        # An eos id equal to the vocabulary size (a loop's placeholder for none) bans nothing.
        self.xp = xp
        self.min_length = min_length
        self.eos_token_ids = xp.asarray(eos_token_ids)

    def __call__(self, sequences, cur_len, scores):
        xp = self.xp
        is_eos = xp.mark(self.eos_token_ids[None, :], scores.shape[-1])  # [1, V]
        return xp.where(is_eos & (cur_len < self.min_length), NEG_INF, scores)


class ForcedBOSTokenLogitsProcessor:
    """The first generated token is `bos_token_id`."""

    def __init__(self, xp, token_id) -> None:
        self.xp = xp
        self.bos_token_id = xp.asarray([token_id])

    def __call__(self, sequences, cur_len, scores):
        return _force(self.xp, scores, self.bos_token_id, cur_len == 1)


class ForcedEOSTokenLogitsProcessor:
    """The last token (at `max_length - 1`) is an eos token."""

    def __init__(self, xp, max_length: int, eos_token_ids) -> None:
        self.xp = xp
        self.max_length = max_length
        self.eos_token_ids = xp.asarray(eos_token_ids)

    def __call__(self, sequences, cur_len, scores):
        return _force(self.xp, scores, self.eos_token_ids, cur_len == self.max_length - 1)


class TemperatureLogitsWarper:
    """Scores divided by `temperature`."""

    def __init__(self, xp, temperature) -> None:
        self.temperature = temperature

    def __call__(self, sequences, cur_len, scores):
        return scores / self.temperature


class TopKLogitsWarper:
    """Keeps the `top_k` best scores (at least `min_tokens_to_keep`)."""

    def __init__(self, xp, top_k, min_tokens_to_keep=1) -> None:
        # The plan's `top_k` already counts `min_tokens_to_keep` and is at most the vocabulary.
        self.xp = xp
        self.top_k = top_k

    def __call__(self, sequences, cur_len, scores):
        kth = self.xp.kth_largest(scores, self.top_k)  # [N, 1]
        return self.xp.where(scores < kth, NEG_INF, scores)


class TopPLogitsWarper:
    """Keeps the smallest set of best tokens whose probability reaches `top_p` (at least `min_tokens_to_keep`)."""

    def __init__(self, xp, top_p, min_tokens_to_keep=1) -> None:
        self.xp = xp
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, sequences, cur_len, scores):
        xp = self.xp
        vocab = scores.shape[-1]
        sorted_scores, order = xp.sort(scores)  # ascending: the low-probability tail first
        cumulative = xp.cumsum(xp.softmax(sorted_scores))
        remove = (cumulative <= 1 - self.top_p) & (xp.arange(vocab) < vocab - self.min_tokens_to_keep)
        return xp.where(xp.unsort(remove, order), NEG_INF, scores)


def bind(xp):
    """`build_processors`' `lookup` for processors running on the ops `xp`: a class name -> the class, `xp` bound."""
    return lambda name: functools.partial(globals()[name], xp)


class NumpyOps:
    """The ops in numpy (the ONNX runner's)."""

    @staticmethod
    def mark(ids, vocab: int):
        hit = np.zeros((ids.shape[0], vocab + 1), bool)
        np.put_along_axis(hit, ids, True, axis=1)
        return hit[:, :vocab]

    @staticmethod
    def sort(x):
        order = np.argsort(x, axis=-1, kind="stable")
        return np.take_along_axis(x, order, axis=-1), order

    @staticmethod
    def unsort(x, order):
        out = np.empty_like(x)
        np.put_along_axis(out, order, x, axis=-1)
        return out

    @staticmethod
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    asarray = staticmethod(np.asarray)
    arange = staticmethod(np.arange)
    where = staticmethod(np.where)
    take = staticmethod(lambda x, positions: x[:, positions])
    all = staticmethod(lambda x: np.all(x, axis=-1))
    kth_largest = staticmethod(lambda x, k: np.sort(x, axis=-1)[:, x.shape[-1] - k, None])
    cumsum = staticmethod(lambda x: np.cumsum(x, axis=-1))
