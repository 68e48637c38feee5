"""Time encdec's TensorFlow generation on the MiniLM bert2bert: warm XLA against eager, first-call compile apart.

The model joins the MiniLM-L6-H384 checkpoint with itself (`from_encoder_decoder_pretrained`,
cross-attention and LM head drawn by `init_weights`, seed 0). Batch 4, input length 64,
max_length 32, greedy and 4 beams. For XLA (`generate(..., jit_compile=True)`, the default)
the first call (trace + compile + run) is reported on its own, then the second call over
the warm median (about 1: same shapes compile nothing; the port keeps its compiled functions
to itself, so their time is what shows a recompilation), then the median of warm runs.
Eager (`jit_compile=False`) runs the same loops op by op. The XLA and eager ids are
checked to be the same. With `--compare`, encdec's PyTorch port and transformers'
PyTorch model (same weights, same threads) run the same generations, ids checked too.

    .venv/bin/python benchmarks/investigations/tf_bench.py [--runs 7] [--eager-runs 3] [--threads 2] [--compare] [--random]
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
    from encdec.tf import TFEncoderDecoderModel

    return common.minilm_model(TFEncoderDecoderModel, random_weights)


inputs = common.minilm_inputs


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_generation_arguments(parser, runs=7)  # --runs: warm XLA runs
    parser.add_argument("--eager-runs", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also time encdec PyTorch and transformers PyTorch")
    args = parser.parse_args()
    common.configure_environment(args.threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = build(args.random)
    ids, mask = inputs(args.batch, args.length)
    cases = {"greedy": dict(num_beams=1), "beam4": dict(num_beams=4)}

    rows = []
    for name, options in cases.items():
        options = dict(options, max_length=args.max_length)
        xla = lambda: model.generate(ids, attention_mask=mask, **options).numpy()  # noqa: E731
        eager = lambda: model.generate(ids, attention_mask=mask, jit_compile=False, **options).numpy()  # noqa: E731
        first, xla_out = _timed(xla)
        second, _ = _timed(xla)
        warm = [_timed(xla)[0] for _ in range(args.runs)]
        _, eager_out = _timed(eager)  # the first eager call builds nothing; keep it out of the median anyway
        eager_times = [_timed(eager)[0] for _ in range(args.eager_runs)]
        rows.append(dict(
            case=name, first=first, second=second, xla=statistics.median(warm),
            best=min(warm), eager=statistics.median(eager_times), shape=xla_out.shape,
            same=np.array_equal(xla_out, eager_out),
        ))
    device = tf.config.list_logical_devices("GPU")
    where = f"GPU {device[0].name}" if device else f"CPU ({common.cpu_model()})"
    print(f"tensorflow {tf.__version__} on {where}, "
          f"{args.threads} threads, {'random' if args.random else 'MiniLM'} weights, batch {args.batch}, "
          f"input {args.length}, max_length {args.max_length}; warm: median of {args.runs} (XLA) / "
          f"{args.eager_runs} (eager) runs")
    header = (f"{'case':7s} {'1st call (trace+compile+run)':>29s} {'2nd call':>10s} {'2nd / warm':>11s} "
              f"{'XLA warm':>10s} {'XLA best':>10s} {'eager':>10s} {'eager/XLA':>10s}  same ids  output")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:7s} {r['first']:28.2f}s {r['second'] * 1e3:8.1f}ms {r['second'] / r['xla']:10.2f}x "
              f"{r['xla'] * 1e3:8.1f}ms {r['best'] * 1e3:8.1f}ms {r['eager'] * 1e3:8.1f}ms "
              f"{r['eager'] / r['xla']:9.1f}x  {str(r['same']):8s}  {r['shape']}")
    if args.compare:
        _compare(model, ids, mask, cases, args)


def _compare(model, ids, mask, cases, args) -> None:
    """encdec PyTorch and transformers PyTorch on the same weights: warm medians and same-ids check."""
    import numpy as np
    import torch
    import transformers

    hf, pt = common.torch_references(model.config, model.canonical_state(), args.threads)
    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
    print(f"\ntorch {torch.__version__}, transformers {transformers.__version__}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'case':7s} {'TF XLA':>10s} {'encdec pt':>10s} {'transformers':>13s} {'XLA/pt':>8s}  same ids")
    for name, options in cases.items():
        options = dict(options, max_length=args.max_length, **SPECIALS)
        times, outs = {}, {}
        for label, fn in (
            ("tf", lambda: model.generate(ids, attention_mask=mask, **options).numpy()),
            ("pt", lambda: pt.generate(t_ids, attention_mask=t_mask, **options)),
            ("hf", lambda: hf.generate(t_ids, attention_mask=t_mask, **options)),
        ):
            with torch.inference_mode():
                outs[label] = np.asarray(fn())
                times[label] = statistics.median(_timed(fn)[0] for _ in range(args.runs))
        same = np.array_equal(outs["tf"], outs["pt"]) and np.array_equal(outs["tf"], outs["hf"])
        print(f"{name:7s} {times['tf'] * 1e3:8.1f}ms {times['pt'] * 1e3:8.1f}ms {times['hf'] * 1e3:11.1f}ms "
              f"{times['tf'] / times['pt']:7.2f}x  {same}")


if __name__ == "__main__":
    main()
