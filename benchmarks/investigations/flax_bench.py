"""Time encdec's Flax generation (jit, warm) on the MiniLM bert2bert, first-call compile apart.

The model joins the MiniLM-L6-H384 checkpoint with itself (`from_encoder_decoder_pretrained`,
cross-attention and LM head drawn by `init_weights`, seed 0). Batch 4, input length 64,
max_length 32, greedy and 4 beams: the first call (trace + XLA compile + run) is reported
on its own, then the median of warm runs, and the number of compilations the second call
made (0: same shapes compile nothing). With `--compare`, encdec's PyTorch port and
transformers' PyTorch model (same weights, same threads) run the same generations, and
the ids are checked to be the same.

    .venv/bin/python benchmarks/investigations/flax_bench.py [--runs 9] [--threads 2] [--compare] [--random]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings

# common.py is in benchmarks/, the scripts this one may import are here.
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
import common  # noqa: E402

SPECIALS = common.MINILM_SPECIALS


def build(random_weights: bool):
    from encdec.flax import FlaxEncoderDecoderModel

    return common.minilm_model(FlaxEncoderDecoderModel, random_weights, seed=0)


inputs = common.minilm_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_generation_arguments(parser)
    parser.add_argument("--compare", action="store_true", help="also time encdec PyTorch and transformers PyTorch")
    args = parser.parse_args()
    common.configure_environment(args.threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    import jax
    import jax.monitoring

    compiles = [0]

    def count_compiles(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles[0] += 1

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    model = build(args.random)
    ids, mask = inputs(args.batch, args.length)
    cases = {"greedy": dict(num_beams=1), "beam4": dict(num_beams=4)}

    rows = []
    for name, options in cases.items():
        options = dict(options, max_length=args.max_length)
        run = lambda: model.generate(ids, mask, **options).sequences.block_until_ready()  # noqa: E731
        start = time.perf_counter()
        first_out = run()
        first = time.perf_counter() - start
        before = compiles[0]
        start = time.perf_counter()
        run()
        second = time.perf_counter() - start
        second_compiles = compiles[0] - before
        warm = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run()
            warm.append(time.perf_counter() - start)
        rows.append(dict(case=name, first=first, second=second, compiles=second_compiles,
                         median=statistics.median(warm), best=min(warm), shape=tuple(first_out.shape)))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({common.cpu_model()}), XLA threads {args.threads}, "
          f"{'random' if args.random else 'MiniLM'} weights, batch {args.batch}, input {args.length}, "
          f"max_length {args.max_length}, median of {args.runs} warm runs")
    header = f"{'case':8s} {'first call (compile+run)':>25s} {'second call':>12s} {'compiles on 2nd':>16s} " \
             f"{'warm median':>12s} {'warm best':>10s}  output"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:8s} {r['first']:24.2f}s {r['second'] * 1e3:10.1f}ms {r['compiles']:16d} "
              f"{r['median'] * 1e3:10.1f}ms {r['best'] * 1e3:8.1f}ms  {r['shape']}")
    if args.compare:
        _compare(model, ids, mask, cases, args)


def _compare(model, ids, mask, cases, args) -> None:
    """encdec PyTorch and transformers PyTorch on the same weights: warm medians and same-ids check."""
    import numpy as np
    import torch
    import transformers

    hf, pt = common.torch_references(model.config, model.canonical_state(), args.threads)
    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
    print(f"\ntorch {torch.__version__}, transformers {transformers.__version__}, torch threads {torch.get_num_threads()}")
    print(f"{'case':8s} {'flax jit':>10s} {'encdec pt':>10s} {'transformers':>13s} {'flax/pt':>8s}  same ids")
    for name, options in cases.items():
        options = dict(options, max_length=args.max_length, **SPECIALS)
        flax_out = np.asarray(model.generate(ids, mask, **options).sequences)
        times = {}
        outs = {}
        for label, fn in (
            ("flax", lambda: model.generate(ids, mask, **options).sequences.block_until_ready()),
            ("pt", lambda: pt.generate(t_ids, attention_mask=t_mask, **options)),
            ("hf", lambda: hf.generate(t_ids, attention_mask=t_mask, **options)),
        ):
            with torch.inference_mode():
                outs[label] = np.asarray(fn())
                samples = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - start)
            times[label] = statistics.median(samples)
        same = all(o.shape == flax_out.shape and (o == flax_out).all() for o in outs.values())
        print(f"{name:8s} {times['flax'] * 1e3:8.1f}ms {times['pt'] * 1e3:8.1f}ms {times['hf'] * 1e3:11.1f}ms "
              f"{times['flax'] / times['pt']:8.2f}  {same}")


if __name__ == "__main__":
    main()
