"""Time the routes of `encdec.pt.fast_linear.linear` against `F.linear` on the CPU, float32.

For each weight shape (a MiniLM / BERT-base layer, and the vocabulary projection)
and row count (decode steps: 1-16 rows; forward passes: 64-2048), the median of
several runs of:

* `F.linear(x, W, b)` (what `nn.Linear` and transformers run),
* `linear(x, W, b)` (encdec without a packed weight: oneDNN from 8 rows),
* `linear(x, W, b, packed)` (encdec while generating: oneDNN's packed layout,
  `W @ [x, x]^T` for one row),

under `torch.inference_mode`, and the largest difference from `F.linear`. A
decoder's weights do not fit in the CPU's caches, so every timed call multiplies
by a fresh copy of the weight read from memory: each run goes once through
copies totalling at least `--stream-mb` and the time is per copy.

    .venv/bin/python benchmarks/investigations/linear_bench.py [--threads 2] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

# common.py is in benchmarks/, the scripts this one may import are here.
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
from common import median_ms  # noqa: E402

SHAPES = {
    "minilm layer 384x384": (384, 384),
    "minilm ffn 1536x384": (1536, 384),
    "minilm head 30522x384": (30522, 384),
    "base ffn 3072x768": (3072, 768),
    "base head 30522x768": (30522, 768),
}
DECODE_ROWS = (1, 2, 4, 8, 16)
FORWARD_ROWS = (64, 512, 2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--stream-mb", type=float, default=256.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from encdec.pt.fast_linear import linear, onednn_available, pack

    print(f"torch {torch.__version__}, {args.threads} threads; oneDNN linear available: {onednn_available()}")
    print("| weight | rows | F.linear | encdec | encdec packed | encdec / F.linear | packed / F.linear | max |Δ| |")
    print("|---|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for name, (out_features, in_features) in SHAPES.items():
        copies = max(1, int(args.stream_mb * 2**20 // (out_features * in_features * 4)))
        weights = [torch.randn(out_features, in_features, generator=generator) * in_features**-0.5
                   for _ in range(copies)]
        bias = torch.randn(out_features, generator=generator)
        packs = [pack(w) if onednn_available() else None for w in weights]
        for rows in DECODE_ROWS + FORWARD_ROWS:
            x = torch.randn(rows, in_features, generator=generator)
            n = copies if rows <= 64 else 1
            runs = args.runs if rows <= 64 else max(3, args.runs // 3)

            def each(fn):
                return lambda: [fn(weights[i], packs[i]) for i in range(n)]

            with torch.inference_mode():
                t_ref = median_ms(each(lambda w, p: F.linear(x, w, bias)), runs) / n
                t_plain = median_ms(each(lambda w, p: linear(x, w, bias)), runs) / n
                t_packed = median_ms(each(lambda w, p: linear(x, w, bias, p)), runs) / n
                reference = F.linear(x, weights[0], bias)
                diff = max(float((linear(x, weights[0], bias, p) - reference).abs().max()) for p in (None, packs[0]))
            print(f"| {name} | {rows} | {t_ref:.3f} ms | {t_plain:.3f} ms | {t_packed:.3f} ms | "
                  f"{t_plain / t_ref:.2f}x | {t_packed / t_ref:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
