"""Trials on why the TF port's XLA greedy generation is slow at batch 1.

At batch 1 XLA compiles the decode loop's vocabulary product (a row times the
tied [V, hidden] word-embedding table, as a plain `einsum`) into a transpose of
the whole table on every step followed by a reduction; from two rows on it
stays a dot (docs/performance.md). Each trial replaces the BERT decoder's LM head
(`compute_logits`, on this one model instance) with the same head computing the
vocabulary product another way, and times warm greedy generation (MiniLM
bert2bert, input 64, max_length 32):

* `base`: the port as it is (a single row goes as two, as `pad_single`);
* `einsum`: the plain `einsum` of the row with the table, as the port did first;
* `pad`: one zero row added, the extra output sliced off;
* `reduce`: `reduce_sum(table * row)` over the hidden axis;
* `matvec`: `tf.linalg.matvec(table, row)`;
* `pad_single`: only when there is a single row, the sequence axis padded to two.

    .venv/bin/python benchmarks/investigations/tf_batch1_trials.py [--batch 1] [--runs 5] [--trials base,pad_single,...]

Each trial runs in a fresh process (XLA compiles each formulation anew) and
prints its warm median and the first generated ids (the same in every trial).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

TRIALS = ("base", "einsum", "pad", "pad_single", "reduce", "matvec")


def run_trial(trial: str, batch: int, runs: int, threads: int) -> None:
    # common.py is in benchmarks/, tf_bench.py here.
    sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
    import keras
    import tensorflow as tf

    import tf_bench
    from common import median_ms

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = tf_bench.build(False)
    decoder = model.get_decoder()  # TFBertLMHeadModel: compute_logits(h) = cls.predictions(h)
    head = decoder.cls.predictions
    if not isinstance(head.decoder, keras.layers.Embedding):
        raise SystemExit("the trials need a decoder whose LM head is tied to its word embeddings")

    def project(hidden_states, table):
        if trial == "einsum":
            return tf.einsum("bsh,vh->bsv", hidden_states, table)
        if trial == "pad":
            padded = tf.pad(hidden_states, [[0, 1], [0, 0], [0, 0]])  # [B + 1, 1, H]
            return tf.einsum("bsh,vh->bsv", padded, table)[:-1]
        if trial == "pad_single":
            # one row only: pad the sequence axis to two, [1, 1, H] -> [1, 2, H]; others unchanged
            shape = tf.shape(hidden_states)
            extra = tf.cast(shape[0] * shape[1] == 1, tf.int32)
            padded = tf.pad(hidden_states, [[0, 0], [0, extra], [0, 0]])
            return tf.einsum("bsh,vh->bsv", padded, table)[:, : shape[1]]
        if trial == "reduce":
            return tf.reduce_sum(table[None, None] * hidden_states[:, :, None, :], axis=-1)  # [B, 1, V]
        if trial == "matvec":
            return tf.linalg.matvec(table, hidden_states)  # [B, 1, V]
        raise AssertionError(trial)

    def compute_logits(hidden_states):
        # The LM head of TFBertLMPredictionHead with the vocabulary product of the trial:
        # transform [B, S, H], times the tied table [V, H], plus the bias [V].
        return project(head.transform(hidden_states), head.decoder.embeddings) + head.bias

    if trial != "base":
        # An instance attribute, set past Keras' attribute tracking: the decoder's forward
        # calls self.compute_logits for every decode step.
        object.__setattr__(decoder, "compute_logits", compute_logits)
    ids, mask = tf_bench.inputs(batch, 64)

    def generate():
        return model.generate(ids, attention_mask=mask, max_length=32, num_beams=1).numpy()

    warm = median_ms(generate, runs)
    out = generate()
    print(f"| {trial} | {batch} | {warm:.0f} ms | {out[0, :8].tolist()} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", default=",".join(TRIALS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single trial, in this process
    args = parser.parse_args()
    if args.one:
        run_trial(args.one, args.batch, args.runs, args.threads)
        return
    print("| trial | batch | warm median | first ids |")
    print("|---|---|---|---|")
    for trial in args.trials.split(","):
        if trial not in TRIALS:
            raise SystemExit(f"unknown trial {trial!r}; expected one of {TRIALS}")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--one", trial, "--batch", str(args.batch),
                        "--runs", str(args.runs), "--threads", str(args.threads)], check=True,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
