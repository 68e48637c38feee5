"""Where the time of one Flax generation goes: XLA's own per-operation trace, summed by kind.

Runs one warm `generate` (MiniLM shapes with random weights, input 64) under
`jax.profiler.trace` and reads the Perfetto trace it writes: every executed XLA
operation (a fusion, a dot, a copy) is an event with a duration. The events are
summed by name with the trailing number dropped (`transpose_copy_fusion.17` ->
`transpose_copy_fusion`), so each row is one kind of operation over the whole
generation: its total time and how many times it ran. The two threads may run
operations side by side, so the total can exceed the wall time.

    .venv/bin/python benchmarks/investigations/flax_profile.py [--beams 4] [--batch 4] [--max-length 64] [--top 15]

With the caches laid out `[B, L, H, D]` (the port before they went heads-first,
commit 8a3b4d2) a third of the operation time went to `transpose_copy_fusion`:
XLA copying every cache into the batched dot's layout on every step. To see it:

    git worktree add /tmp/encdec-8a3b4d2 8a3b4d2
    PYTHONPATH=/tmp/encdec-8a3b4d2 .venv/bin/python benchmarks/investigations/flax_profile.py
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings

# common.py is in benchmarks/, the scripts this one may import are here.
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
import common  # noqa: E402
import flax_bench  # noqa: E402


def operation_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """(total microseconds, count) per kind of XLA operation in the trace under `trace_dir`."""
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals, counts = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        # Complete events only; Python frames ("$file:line"), runtime bookkeeping and waits are not operations.
        if event.get("ph") != "X" or name.startswith(("$", "Thunk", "np.", "end: ")) or "Await" in name:
            continue
        if name.startswith(("PjitFunction", "ArrayImpl", "CommonPjRt")):
            continue
        kind = re.sub(r"\.\d+$", "", name)
        totals[kind] += event.get("dur", 0)
        counts[kind] += 1
    return totals, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    common.configure_environment(args.threads)
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import jax

    model = flax_bench.build(random_weights=True)
    ids, mask = flax_bench.inputs(args.batch, args.length)

    def run():
        return model.generate(ids, mask, num_beams=args.beams, max_length=args.max_length).sequences.block_until_ready()

    run()  # compile
    run()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
        totals, counts = operation_times(trace_dir)
    print(f"jax {jax.__version__}, {args.threads} threads; generate(beams={args.beams}, batch={args.batch}, "
          f"input {args.length}, max_length {args.max_length}): {wall * 1e3:.0f} ms wall under the profiler")
    print("| operation kind | total | runs |")
    print("|---|---|---|")
    for kind, micros in totals.most_common(args.top):
        print(f"| {kind} | {micros / 1e3:.1f} ms | {counts[kind]} |")
    print(f"| all operations | {sum(totals.values()) / 1e3:.1f} ms | {sum(counts.values())} |")


if __name__ == "__main__":
    main()
