"""What the distributed tests of the three ports share: the tiny model, the global batches, and
running a worker script in a fresh interpreter (device counts and process groups are set before
the framework starts, which only a new process allows).

numpy and encdec's core only; the worker scripts import their framework themselves.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: tiny_models

from tiny_models import joined_config, random_batch, random_state  # noqa: E402

from encdec.conformance.distributed import shard_rows  # noqa: E402,F401  (the workers' row split)

GLOBAL_BATCH = 4
STEPS = 2
LEARNING_RATE = 0.5


def model_config(variant: str = "plain", pair: str = "bert2bert", seed: int = 3, vocab: int | None = None):
    """A tiny encoder-decoder without dropout, so that a training step is deterministic (`vocab`: both
    halves' vocabulary size, e.g. one that a mesh axis divides)."""
    config = joined_config(pair, seed, variant)
    for half in (config.encoder, config.decoder):
        if vocab is not None:
            half.vocab_size = vocab
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop",
                    "attn_pdrop"):
            if hasattr(half, key):
                setattr(half, key, 0.0)
    return config


def model_state(config) -> dict:
    return random_state(config, seed=5)


def batches(config, steps: int = STEPS, batch: int = GLOBAL_BATCH) -> list[dict]:
    """`steps` global batches (int64 numpy). Every label is a real token (no -100) and every row has
    as many of them, so the mean of the per-shard mean losses is the global batch's mean loss."""
    rng = np.random.default_rng(11)
    out = []
    for _ in range(steps):
        b = random_batch(config, rng, batch, src_len=7, tgt_len=5, padding="ragged")
        labels = rng.integers(4, config.decoder.vocab_size, b["labels"].shape)
        out.append(dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=labels))
    return out


def run_worker(script: str, *args: str, env: dict | None = None, timeout: int = 600) -> str:
    """Run tests/distributed/`script` with `args` in a fresh interpreter; its stdout, or a failure
    that shows its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited with {proc.returncode}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc.stdout


def max_abs_diff(a: dict, b: dict) -> dict:
    """Per name: max |a - b| (same names expected)."""
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    return {k: float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in a}


def grad_rel_diffs(a: dict, b: dict) -> dict:
    """Per name: the tolerance table's gradient measure, max |a - b| over the larger of max |a|, max |b|
    and GRAD_SCALE_FLOOR times the largest magnitude of all (for gradients, or the updates of a step)."""
    from encdec.conformance.tolerances import GRAD_SCALE_FLOOR

    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    largest = max(float(np.max(np.abs(v))) for v in list(a.values()) + list(b.values()))
    out = {}
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        scale = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))), GRAD_SCALE_FLOOR * largest)
        out[k] = float(np.max(np.abs(x - y))) / scale
    return out
