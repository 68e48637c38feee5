"""Checkpoint conversion: wall time and peak memory against the checkpoint's size.

Draws a bert-base-sized bert2bert (hidden 768, 12 + 12 layers, vocab 30522,
about 250M parameters, ~1 GB in float32) with `init_weights`, saves it as
safetensors, then converts it to every other format and back, each conversion
in a fresh child process that reports its own peak RSS. Next to it, the time
and memory of transformers' `EncoderDecoderModel.from_pretrained` on the same
safetensors checkpoint (PyTorch; transformers 5 has no TF/Flax classes).

    python benchmarks/convert_bench.py --out benchmarks/convert_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

PEAK_RSS = textwrap.dedent(
    """
    def peak_rss():
        # VmHWM is this process image's own high-water mark; ru_maxrss would also count the
        # memory of the forked parent before exec.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource, sys
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    """
)

CHILD_CONVERT = PEAK_RSS + textwrap.dedent(
    """
    import json, sys, time
    from encdec.weights import convert_checkpoint
    src, dst, to = sys.argv[1:4]
    start = time.perf_counter()
    convert_checkpoint(src, dst, to, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss()}))
    """
)

CHILD_BASELINE = PEAK_RSS + textwrap.dedent(
    """
    import json
    import encdec.weights.convert  # everything a conversion imports, nothing loaded
    print(json.dumps({"peak_rss": peak_rss()}))
    """
)

CHILD_TRANSFORMERS = PEAK_RSS + textwrap.dedent(
    """
    import json, sys, time
    import torch
    from transformers import EncoderDecoderModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = EncoderDecoderModel.from_pretrained(sys.argv[1])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss()}))
    """
)


def _child(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="2", TRANSFORMERS_OFFLINE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _size(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, f))
        for f in os.listdir(directory)
        if not f.endswith(".json")
    )


def make_checkpoint(directory: str, layers: int, vocab: int, hidden: int) -> int:
    sys.path.insert(0, REPO)
    from encdec.config import BertConfig, EncoderDecoderConfig
    from encdec.weights import model_spec, save_state
    from encdec.weights.names import init_weights

    bert = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(bert, bert, decoder_start_token_id=101, pad_token_id=0)
    spec = model_spec(config)
    state = init_weights(config, seed=0)
    save_state(state, spec, directory, "safetensors")
    config.save_pretrained(directory)
    return spec.num_parameters()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--workdir", help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args(argv)

    work = args.workdir or tempfile.mkdtemp(prefix="encdec-convert-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        source = os.path.join(work, "safetensors")
        params = make_checkpoint(source, args.layers, args.vocab, args.hidden)
        size = _size(source)
        baseline = _child(CHILD_BASELINE)["peak_rss"]
        rows = []
        plan = [("safetensors", "pt"), ("safetensors", "tf"), ("safetensors", "flax"),
                ("pt", "safetensors"), ("tf", "safetensors"), ("flax", "safetensors")]
        for src, dst in plan:
            src_dir = os.path.join(work, src)
            out_dir = os.path.join(work, dst if src == "safetensors" else f"{src}-to-{dst}")
            result = _child(CHILD_CONVERT, src_dir, out_dir, dst)
            rows.append(
                dict(
                    what=f"encdec convert {src} -> {dst}",
                    seconds=result["seconds"],
                    peak_rss=result["peak_rss"],
                    peak_over_size=result["peak_rss"] / size,
                    extra_over_size=(result["peak_rss"] - baseline) / size,
                    output_bytes=_size(out_dir),
                )
            )
            if src != "safetensors":
                shutil.rmtree(out_dir)
        if not args.skip_transformers:
            result = _child(CHILD_TRANSFORMERS, source)
            rows.append(
                dict(
                    what="transformers EncoderDecoderModel.from_pretrained (safetensors)",
                    seconds=result["seconds"],
                    peak_rss=result["peak_rss"],
                    peak_over_size=result["peak_rss"] / size,
                    extra_over_size=None,
                    output_bytes=None,
                )
            )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    report = dict(
        parameters=params,
        checkpoint_bytes=size,
        import_only_rss=baseline,
        cpu_count=os.cpu_count(),
        python=sys.version.split()[0],
        rows=rows,
    )
    print(f"bert2bert, {params / 1e6:.1f}M parameters, safetensors checkpoint {size / 1e9:.3f} GB")
    print(f"peak RSS of a child that only imports encdec's converter: {baseline / 1e6:.0f} MB")
    print(f"{'':62} {'seconds':>8} {'peak RSS':>10} {'peak/size':>9}")
    for row in rows:
        print(f"{row['what']:62} {row['seconds']:8.2f} {row['peak_rss'] / 1e6:8.0f} MB {row['peak_over_size']:9.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
