"""Greedy decoding written on the port contract: the same loop for PyTorch, TensorFlow and Flax.

`encode` once, `init_cache` over its output (the cross-attention keys and values
computed there, once), then one `decode_step` per token, each returning
`(logits, cache)`: the loop every port's `generate(num_beams=1)` runs inside. The
script loads a checkpoint folder (any of the four formats) in the framework named,
decodes a few random inputs greedily, and checks the tokens against the port's own
`generate`.

    python examples/decode_loop.py --framework pt [--checkpoint tests/fixtures/hf/bert2bert] [--max-length 12]
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np

CLASSES = {"pt": "EncoderDecoderModel", "tf": "TFEncoderDecoderModel", "flax": "FlaxEncoderDecoderModel"}


def load(framework: str, checkpoint: str):
    import encdec

    return getattr(encdec, CLASSES[framework]).from_pretrained(checkpoint)


def to_port(framework: str):
    """numpy -> what the port's methods take (torch tensors for PyTorch; TF and Flax take numpy)."""
    if framework == "pt":
        import torch

        return torch.as_tensor
    return lambda array: array


def no_grad(framework: str):
    if framework == "pt":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def greedy(model, framework: str, ids: np.ndarray, mask: np.ndarray, max_length: int) -> np.ndarray:
    """Token ids `[B, <= max_length]`: the start token, then each step's argmax; pad after a row's eos."""
    gc = model.generation_config
    eos = gc.eos_token_id if isinstance(gc.eos_token_id, (list, tuple)) else [gc.eos_token_id]
    put = to_port(framework)
    batch = ids.shape[0]
    with no_grad(framework):
        encoded = model.encode(put(ids), attention_mask=put(mask))
        # max_length tokens, the start token included: max_length - 1 decode steps to cache.
        cache = model.init_cache(batch, max_length - 1, encoded, encoder_attention_mask=put(mask))
        tokens = np.full((batch, 1), gc.decoder_start_token_id, np.int64)
        done = np.zeros(batch, bool)
        while tokens.shape[1] < max_length and not done.all():
            logits, cache = model.decode_step(put(tokens[:, -1:]), cache)  # [B, 1] -> [B, 1, V]
            step = np.asarray(logits)[:, -1].argmax(-1)
            step = np.where(done, gc.pad_token_id, step)
            tokens = np.concatenate([tokens, step[:, None]], axis=1)
            done |= np.isin(step, eos)
    return tokens


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=sorted(CLASSES), default="pt")
    parser.add_argument("--checkpoint", default=os.path.join(here, os.pardir, "tests", "fixtures", "hf", "bert2bert"))
    parser.add_argument("--max-length", type=int, default=12)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--length", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    model = load(args.framework, args.checkpoint)
    vocab = model.config.encoder.vocab_size
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(4, vocab, (args.batch, args.length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, -2:] = 0  # one right-padded row

    ours = greedy(model, args.framework, ids, mask, args.max_length)
    put = to_port(args.framework)
    with no_grad(args.framework):
        out = model.generate(put(ids), attention_mask=put(mask), max_length=args.max_length, num_beams=1,
                             do_sample=False)
        expected = np.asarray(getattr(out, "sequences", out))  # Flax returns an output object
    print(ours)
    same = ours.shape == expected.shape and bool((ours == expected).all())
    print(f"{CLASSES[args.framework]}: the contract loop {'equals' if same else 'DIFFERS from'} generate()")
    if not same:
        print(expected)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
