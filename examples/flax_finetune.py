"""Fine-tune a tiny bert2bert FlaxEncoderDecoderModel on a toy copy task, with optax.

The model learns to repeat its input: source `a b c`, target `a b c [EOS]`. After a
few hundred steps greedy generation copies held-out sequences. Runs on CPU in about
a minute:

    python examples/flax_finetune.py --steps 400 --save /tmp/copy-model
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from encdec.config import BertConfig, EncoderDecoderConfig  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel, make_train_step  # noqa: E402

PAD, START, EOS = 0, 1, 2
VOCAB = 24  # ids 3 .. 23 are the symbols to copy
MAX_LEN = 8


def make_batch(rng: np.random.Generator, size: int) -> dict:
    """Sources `[size, MAX_LEN]` right-padded, labels `[size, MAX_LEN + 1]` = source + eos, -100 after."""
    lengths = rng.integers(3, MAX_LEN + 1, size)
    ids = np.full((size, MAX_LEN), PAD, np.int32)
    labels = np.full((size, MAX_LEN + 1), -100, np.int32)
    for row, n in enumerate(lengths):
        tokens = rng.integers(3, VOCAB, n)
        ids[row, :n] = tokens
        labels[row, :n] = tokens
        labels[row, n] = EOS
    return {"input_ids": ids, "attention_mask": (ids != PAD).astype(np.int32), "labels": labels}


def exact_match(model: FlaxEncoderDecoderModel, batch: dict, params) -> float:
    out = np.asarray(model.generate(batch["input_ids"], batch["attention_mask"], params=params,
                                    max_length=MAX_LEN + 2, num_beams=1).sequences)
    hits = 0
    for row, labels in zip(out, batch["labels"]):
        want = [t for t in labels.tolist() if t != -100]
        got = row[1:1 + len(want)].tolist()
        hits += got == want
    return hits / len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="folder to save the fine-tuned model to (flax_model.msgpack)")
    args = parser.parse_args()

    arch = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=32, pad_token_id=PAD, hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.0)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        arch, arch, decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS
    )
    model = FlaxEncoderDecoderModel(config, seed=args.seed)
    warmup = min(50, max(1, args.steps // 4))  # optax needs the decay to outlast the warm-up
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate, warmup, args.steps, args.learning_rate / 10)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
    step = jax.jit(make_train_step(model, optimizer))

    rng = np.random.default_rng(args.seed)
    held_out = make_batch(np.random.default_rng(args.seed + 1), 64)
    params, opt_state = model.params, optimizer.init(model.params)
    key = jax.random.key(args.seed)
    print(f"exact match before training: {exact_match(model, held_out, params):.2f}")
    start = time.perf_counter()
    for i in range(1, args.steps + 1):
        key, dropout_rng = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, make_batch(rng, args.batch_size), dropout_rng)
        if i % 50 == 0 or i == 1:
            print(f"step {i:4d}  loss {float(loss):.4f}  ({time.perf_counter() - start:.1f}s)")
    accuracy = exact_match(model, held_out, params)
    print(f"exact match after {args.steps} steps: {accuracy:.2f}")
    model.params = params
    if args.save:
        model.save_pretrained(args.save)
        reloaded = FlaxEncoderDecoderModel.from_pretrained(args.save)
        print(f"saved to {args.save}; reloaded exact match: {exact_match(reloaded, held_out, reloaded.params):.2f}")


if __name__ == "__main__":
    main()
