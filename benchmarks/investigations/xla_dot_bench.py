"""Time a decode step's matrix products under XLA (jax.jit) and in encdec's PyTorch port, on the CPU.

A MiniLM decoder step multiplies a few rows (batch x beams) by every weight of
the decoder: 6 layers of four 384x384 products (self-attention q/k/v/o), two for
cross-attention (q/o), the 384x1536 and 1536x384 feed-forward, then the
30522x384 vocabulary projection. This times those products, each weight a
distinct array (as in a model: they do not fit in the CPU's caches), as

* `jax.jit` of `x @ kernel` (kernels `[in, out]`, as the Flax port stores them;
  XLA's CPU dot is what the Flax and TF XLA generation loops run),
* `F.linear` (what transformers' PyTorch classes run),
* encdec's PyTorch `fast_linear.linear` on oneDNN-packed weights (what its generation runs),

for 1, 4 and 16 rows: the median of several runs of the whole set, in ms.

    .venv/bin/python benchmarks/investigations/xla_dot_bench.py [--threads 2] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import sys

# common.py is in benchmarks/, the scripts this one may import are here.
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
from common import median_ms  # noqa: E402

H, FFN, VOCAB, LAYERS = 384, 1536, 30522, 6
ROWS = (1, 4, 16)


def layer_shapes() -> list[tuple[int, int]]:
    """(in, out) of every dense layer of a MiniLM decoder."""
    return [(H, H)] * 6 * LAYERS + [(H, FFN), (FFN, H)] * LAYERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}")

    import jax
    import numpy as np
    import torch
    import torch.nn.functional as F

    from encdec.pt.fast_linear import linear, onednn_available, pack

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal((i, o), dtype=np.float32) * np.float32(i**-0.5) for i, o in layer_shapes()]
    embedding = rng.standard_normal((VOCAB, H), dtype=np.float32) * np.float32(0.02)
    jax_kernels = [jax.device_put(k) for k in kernels]
    jax_embedding = jax.device_put(embedding)
    weights = [torch.from_numpy(np.ascontiguousarray(k.T)) for k in kernels]  # torch's [out, in]
    head = torch.from_numpy(embedding)
    packed = [pack(w) for w in weights] if onednn_available() else [None] * len(weights)
    head_packed = pack(head) if onednn_available() else None

    @jax.jit
    def xla_layers(x, x_ffn, kernels):
        return [(x if k.shape[0] == H else x_ffn) @ k for k in kernels]

    @jax.jit
    def xla_head(x, embedding):
        return x @ embedding.T

    print(f"jax {jax.__version__}, torch {torch.__version__}, {args.threads} threads; "
          f"{len(kernels)} layer weights ({sum(k.size for k in kernels) * 4 / 2**20:.0f} MiB) + the "
          f"{VOCAB}x{H} head ({embedding.size * 4 / 2**20:.0f} MiB)")
    print("| rows | products | XLA (jax.jit) | F.linear | encdec PT packed | XLA / encdec PT |")
    print("|---|---|---|---|---|---|")
    for rows in ROWS:
        x = rng.standard_normal((rows, H), dtype=np.float32)
        x_ffn = rng.standard_normal((rows, FFN), dtype=np.float32)
        tx, tx_ffn = torch.from_numpy(x), torch.from_numpy(x_ffn)

        def inputs_for(w):
            return tx if w.shape[1] == H else tx_ffn

        with torch.inference_mode():
            cases = {
                "layers": (
                    lambda: jax.block_until_ready(xla_layers(x, x_ffn, jax_kernels)),
                    lambda: [F.linear(inputs_for(w), w) for w in weights],
                    lambda: [linear(inputs_for(w), w, None, p) for w, p in zip(weights, packed)],
                ),
                "head": (
                    lambda: jax.block_until_ready(xla_head(x, jax_embedding)),
                    lambda: F.linear(tx, head),
                    lambda: linear(tx, head, None, head_packed),
                ),
            }
            for name, (xla, plain, ours) in cases.items():
                t_xla, t_plain, t_ours = (median_ms(fn, args.runs) for fn in (xla, plain, ours))
                print(f"| {rows} | {name} | {t_xla:.2f} ms | {t_plain:.2f} ms | {t_ours:.2f} ms | "
                      f"{t_xla / t_ours:.2f}x |")


if __name__ == "__main__":
    main()
